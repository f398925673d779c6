"""Shared measurement helpers for `launch/benchmark.py`: timing jitted calls and peak memory.

On a shared CPU wall time depends on what else runs, so every timing also reports the process CPU
time per call (all threads: the work this process did) and the load average around it.
"""

from __future__ import annotations

import os
import resource
import statistics
import time
from typing import Any, Callable

import jax

from mofgseg_jax.train.host_memory import allocator_info


def device_info() -> dict[str, Any]:
    """Kind and count of the devices this process sees, the jax version, the host's cores and the
    XLA flags in force (they change what is measured, e.g. GPU autotuning off)."""
    devices = jax.devices()
    return {"device_kind": devices[0].device_kind, "device_count": len(devices),
            "platform": devices[0].platform, "jax_version": jax.__version__, "host_cpus": os.cpu_count(),
            "xla_flags": os.environ.get("XLA_FLAGS", ""), **allocator_info()}


def load_average() -> float:
    """1-minute load average (runnable processes); compare with host_cpus to judge contention."""
    return round(os.getloadavg()[0], 2)


def peak_memory_bytes() -> dict[str, Any]:
    """Peak host RSS of this process; on accelerators also the device allocator's peak."""
    out: dict[str, Any] = {"peak_host_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}
    stats = jax.devices()[0].memory_stats() or {}
    if "peak_bytes_in_use" in stats:
        out["peak_device_mb"] = stats["peak_bytes_in_use"] / 2**20
    return out


def _p90(sorted_times: list[float]) -> float:
    return sorted_times[min(len(sorted_times) - 1, int(round(0.9 * (len(sorted_times) - 1))))]


def time_calls(fn: Callable[[], Any], *, warmup: int = 2, iters: int = 10) -> dict[str, float]:
    """Times `fn()` (blocking on its result): first call as compile time, then median/p90.

    `fn` takes no arguments; close over inputs. The first call's time includes tracing and
    compilation, so it is reported separately and never mixed into the steady-state numbers.
    Also reports the median process CPU time per call (`cpu_median_s`, all threads).
    """
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        jax.block_until_ready(fn())
    times, cpu = [], []
    load_before = load_average()
    for _ in range(iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        jax.block_until_ready(fn())
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    times.sort()
    return {"compile_s": compile_s, "median_s": statistics.median(times), "p90_s": _p90(times),
            "min_s": times[0], "cpu_median_s": statistics.median(cpu), "timed_iters": iters,
            "load_avg": [load_before, load_average()]}


def time_host(fn: Callable[[], Any], *, iters: int = 3) -> dict[str, float]:
    """Median/p90 wall time (and median process CPU time) of a plain host function (references)."""
    times, cpu = [], []
    load_before = load_average()
    for _ in range(iters):
        start, cpu_start = time.perf_counter(), time.process_time()
        fn()
        times.append(time.perf_counter() - start)
        cpu.append(time.process_time() - cpu_start)
    times.sort()
    return {"median_s": statistics.median(times), "p90_s": _p90(times), "min_s": times[0],
            "cpu_median_s": statistics.median(cpu), "timed_iters": iters,
            "load_avg": [load_before, load_average()]}


def model_config(args: Any):
    """The base config with the benchmark's common flags applied (--smoke, --dtype, --backbone,
    --classes); callers add what is particular to their part."""
    from configs.common import apply_variant, base_config  # noqa: PLC0415

    c = base_config()
    if args.smoke:
        c = apply_variant(c, "smoke")
    c.dtype = args.dtype
    c.model.backbone = args.backbone
    c.model.num_classes = args.classes
    return c
