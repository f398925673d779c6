"""Hand freed heap memory back to the OS after XLA compilations (glibc only; a no-op elsewhere).

Compiling a train step is the most memory-hungry moment on the host (LLVM's working set reaches
~1 GB for a MiT-B0 semi step). glibc keeps that freed memory in its arenas, so the step's own
buffers, allocated next, land on top of it and the process peak is compile + run. `malloc_trim`
returns it: at MiT-B0 crop 256 the benchmark's peak RSS drops from 2.9 to 2.1 GB.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools


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
