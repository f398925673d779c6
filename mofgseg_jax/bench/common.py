"""Shared measurement helpers for `launch/benchmark.py`: timing jitted calls and peak memory."""

from __future__ import annotations

import resource
import statistics
import time
from typing import Any, Callable

import jax


def device_info() -> dict[str, Any]:
    """Kind and count of the devices this process sees."""
    devices = jax.devices()
    return {"device_kind": devices[0].device_kind, "device_count": len(devices),
            "platform": devices[0].platform}


def peak_memory_bytes() -> dict[str, Any]:
    """Peak host RSS of this process; on accelerators also the device allocator's peak."""
    out: dict[str, Any] = {"peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def time_calls(fn: Callable[[], Any], *, warmup: int = 2, iters: int = 10) -> dict[str, float]:
    """Times `fn()` (blocking on its result): first call as compile time, then median/p90.

    `fn` takes no arguments; close over inputs. The first call's time includes tracing and
    compilation, so it is reported separately and never mixed into the steady-state numbers.
    """
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        jax.block_until_ready(fn())
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
    times.sort()
    return {"compile_s": compile_s, "median_s": statistics.median(times),
            "p90_s": times[min(len(times) - 1, int(round(0.9 * (len(times) - 1))))],
            "timed_iters": iters}


def time_host(fn: Callable[[], Any], *, iters: int = 3) -> dict[str, float]:
    """Median wall time of a plain host function (references: NumPy loops, PIL, PyTorch)."""
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return {"median_s": statistics.median(times), "timed_iters": iters}
