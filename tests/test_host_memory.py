"""The host allocator: returning freed heap memory to the OS after a compilation lowers the resident
set; the launchers re-execute with malloc on transparent huge pages when that changes anything."""

import ctypes.util
import os
import subprocess
import sys
import threading
import time

import pytest

from mofgseg_jax.train import host_memory
from mofgseg_jax.train.host_memory import release_free_memory, trimming_free_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


def _allocate_and_free_small_blocks() -> bytearray:
    """Frees ~250 MB of small blocks (below glibc's mmap threshold) and returns the last one: alive on
    top of the heap, it keeps glibc from shrinking the heap by itself, so the freed pages stay resident."""
    blocks = [bytearray(64 * 1024) for _ in range(4000)]
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    return blocks[-1]


@pytest.mark.skipif(not ctypes.util.find_library("c"), reason="needs glibc")
def test_release_returns_freed_small_allocations_to_the_os():
    top = _allocate_and_free_small_blocks()  # noqa: F841 (kept alive on purpose)
    before = _rss_mb()
    assert release_free_memory()
    assert _rss_mb() < before - 100


@pytest.mark.skipif(not ctypes.util.find_library("c"), reason="needs glibc")
def test_trimming_returns_memory_while_the_block_runs_and_stops_its_thread():
    top = _allocate_and_free_small_blocks()  # noqa: F841 (kept alive on purpose)
    before = _rss_mb()
    with trimming_free_memory(interval_s=0.01) as available:
        time.sleep(0.3)  # stands in for a compile: the helper thread trims meanwhile
        during = _rss_mb()
    assert available and during < before - 100
    assert not any(t.name == "malloc-trim" for t in threading.enumerate())


@pytest.mark.parametrize("environ, thp, glibc, wanted", [
    ({}, "madvise", (2, 36), "glibc.malloc.hugetlb=1"),
    ({"GLIBC_TUNABLES": "glibc.malloc.arena_max=2"}, "madvise", (2, 35),
     "glibc.malloc.arena_max=2:glibc.malloc.hugetlb=1"),
    ({}, "always", (2, 36), None),  # the kernel gives huge pages already
    ({}, "never", (2, 36), None),
    ({}, None, (2, 36), None),  # no THP file (not Linux)
    ({}, "madvise", (2, 34), None),  # the tunable is new in glibc 2.35
    ({}, "madvise", None, None),  # not glibc (musl)
    ({"GLIBC_TUNABLES": "glibc.malloc.hugetlb=0"}, "madvise", (2, 36), None),  # the user's choice
    ({"MOFGSEG_HUGE_PAGES": "0"}, "madvise", (2, 36), None),  # opted out
])
def test_huge_page_environment_only_when_it_changes_something(environ, thp, glibc, wanted):
    env = host_memory.huge_page_environment({"PATH": "/bin", **environ}, thp, glibc)
    if wanted is None:
        assert env is None
    else:
        assert env == {"PATH": "/bin", **environ, "GLIBC_TUNABLES": wanted}


def test_reexec_runs_the_same_program_once_with_the_tunable(tmp_path):
    """A launcher calling it first thing: its second incarnation has the tunable and does not loop."""
    script = tmp_path / "launcher.py"
    script.write_text(
        "import os, sys\n"
        "print('start', os.environ.get('GLIBC_TUNABLES'), sys.argv[1:], flush=True)\n"
        "from mofgseg_jax.train.host_memory import reexec_with_huge_page_malloc\n"
        "reexec_with_huge_page_malloc()\n"
        "print('ran', flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k not in ("GLIBC_TUNABLES", "MOFGSEG_HUGE_PAGES")}
    env["PYTHONPATH"] = os.pathsep.join([os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                                         env.get("PYTHONPATH", "")])
    out = subprocess.run([sys.executable, str(script), "--x", "1"], env=env, capture_output=True,
                         text=True, check=True).stdout.splitlines()
    changes = host_memory.huge_page_environment(env, host_memory._thp_mode(), host_memory._glibc_version())
    if changes is None:  # nothing to gain on this machine: it just runs
        assert out == ["start None ['--x', '1']", "ran"]
    else:
        assert out == ["start None ['--x', '1']", "start glibc.malloc.hugetlb=1 ['--x', '1']", "ran"]
    opted_out = subprocess.run([sys.executable, str(script)], env={**env, "MOFGSEG_HUGE_PAGES": "0"},
                               capture_output=True, text=True, check=True).stdout.splitlines()
    assert opted_out == ["start None []", "ran"]
