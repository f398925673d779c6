"""The host allocator: freed heap memory handed back to the OS during and after XLA compilations, and
malloc on transparent huge pages for the launchers (`reexec_with_huge_page_malloc`). glibc only; a
no-op elsewhere.

Compiling a train step is the most memory-hungry moment on the host (LLVM's working set reaches
~1.5 GB for a MiT-B0 semi step). glibc keeps freed memory in its arenas, one per compiler thread,
so the step's own buffers, allocated next, land on top of it and the process peak is compile + run.
`malloc_trim` returns it: at MiT-B0 crop 256 the benchmark's peak RSS drops from 2.9 to 2.1 GB.
Trimming *while* the compiler runs also lowers the compile's own peak, whose arenas otherwise hold
memory one thread freed while another allocates afresh: compile alone 1.95-2.17 -> 1.79 GB (two
runs each), compile time unchanged.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import os
import sys
import threading
from typing import Iterator, Mapping


@functools.lru_cache(maxsize=1)
def _libc():
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def release_free_memory() -> bool:
    """Returns freed heap pages to the OS; True when glibc's `malloc_trim` was available."""
    libc = _libc()
    if libc is None:
        return False
    libc.malloc_trim(0)
    return True


@contextlib.contextmanager
def trimming_free_memory(interval_s: float = 0.2) -> Iterator[bool]:
    """Runs `malloc_trim` every `interval_s` on a helper thread while the block runs, and once at
    its end. Meant for a call that compiles (XLA releases the GIL while it compiles). Yields whether
    glibc's `malloc_trim` is available (False: the block runs without it)."""
    libc = _libc()
    if libc is None:
        yield False
        return
    stop = threading.Event()

    def trim_until_stopped():
        while not stop.wait(interval_s):
            libc.malloc_trim(0)

    thread = threading.Thread(target=trim_until_stopped, name="malloc-trim", daemon=True)
    thread.start()
    try:
        yield True
    finally:
        stop.set()
        thread.join()
        release_free_memory()


# glibc >= 2.35: malloc asks the kernel for transparent huge pages (madvise) on the memory it maps.
HUGE_PAGE_TUNABLE = "glibc.malloc.hugetlb=1"
_OPT_OUT = "MOFGSEG_HUGE_PAGES"
_THP_MODE_FILE = "/sys/kernel/mm/transparent_hugepage/enabled"


def _thp_mode() -> str | None:
    """The kernel's transparent-huge-page mode ('always', 'madvise', 'never'), None if unknown."""
    try:
        with open(_THP_MODE_FILE) as f:
            text = f.read()
    except OSError:
        return None
    start, end = text.find("["), text.find("]")
    return text[start + 1:end] if 0 <= start < end else None


def _glibc_version() -> tuple[int, int] | None:
    libc = _libc()
    if libc is None or not hasattr(libc, "gnu_get_libc_version"):
        return None
    libc.gnu_get_libc_version.restype = ctypes.c_char_p
    major, minor = libc.gnu_get_libc_version().decode().split(".")[:2]
    return int(major), int(minor)


def huge_page_environment(environ: Mapping[str, str], thp_mode: str | None,
                          glibc_version: tuple[int, int] | None) -> dict[str, str] | None:
    """The environment to re-execute with so that malloc uses transparent huge pages, or None when
    that would change nothing: not glibc >= 2.35, the kernel's mode is not 'madvise' ('always'
    already gives them, 'never' forbids them), the tunable is already set, or the user opted out
    with MOFGSEG_HUGE_PAGES=0."""
    if environ.get(_OPT_OUT, "1") == "0" or thp_mode != "madvise":
        return None
    if glibc_version is None or glibc_version < (2, 35):
        return None
    tunables = environ.get("GLIBC_TUNABLES", "")
    if "glibc.malloc.hugetlb" in tunables:
        return None
    return {**environ, "GLIBC_TUNABLES": ":".join(filter(None, (tunables, HUGE_PAGE_TUNABLE)))}


def reexec_with_huge_page_malloc() -> None:
    """Re-executes this program (same interpreter and arguments) with malloc on transparent huge
    pages, when that changes anything (see `huge_page_environment`); call it first thing in a
    launcher's `__main__`. glibc reads its tunables only at process start, hence the re-exec.

    Why: on CPU each step allocates XLA's temporaries afresh (hundreds of MB, beyond glibc's mmap
    threshold), so with 4 KB pages every step page-faults all of them in again and the kernel zeroes
    them: ~61k faults and ~100 ms of system time per MiT-B0 sup step, ~112k per semi step. With huge
    pages (2-core CPU, crop 256, 2+2 images) the sup step goes 0.26 -> 0.23 s and the semi step
    0.67 -> 0.53 s; fewer TLB misses help the arithmetic too.
    """
    env = huge_page_environment(os.environ, _thp_mode(), _glibc_version())
    if env is None:
        return
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.orig_argv[1:]], env)


def allocator_info() -> dict[str, str | None]:
    """What a benchmark should record about the host allocator: the kernel's transparent-huge-page
    mode and the glibc tunables this process started with."""
    return {"transparent_huge_pages": _thp_mode(), "glibc_tunables": os.environ.get("GLIBC_TUNABLES")}
