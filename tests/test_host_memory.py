"""Returning freed heap memory to the OS after a compilation lowers the resident set (glibc)."""

import ctypes.util

import pytest

from mofgseg_jax.train.host_memory import release_free_memory


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20


@pytest.mark.skipif(not ctypes.util.find_library("c"), reason="needs glibc")
def test_release_returns_freed_small_allocations_to_the_os():
    # Many small blocks (below glibc's mmap threshold) live on the heap and stay resident after free.
    blocks = [bytearray(64 * 1024) for _ in range(4000)]  # ~250 MB
    for b in blocks:
        b[::4096] = b"\x01" * len(b[::4096])  # touch every page
    del blocks
    before = _rss_mb()
    assert release_free_memory()
    assert _rss_mb() < before - 100
