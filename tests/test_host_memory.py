"""Returning freed heap memory to the OS after a compilation lowers the resident set (glibc)."""

import ctypes.util
import threading
import time

import pytest

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
