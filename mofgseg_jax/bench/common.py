"""Shared measurement helpers for `launch/benchmark.py`: timing jitted calls and peak memory.

On a shared CPU wall time depends on what else runs, so every timing also reports the process CPU
time per call (all threads: the work this process did) and the load average around it.
"""

from __future__ import annotations

import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import jax
import numpy as np

from mofgseg_jax.train.host_memory import allocator_info


def canvas_arg(text: str) -> tuple[int, int]:
    """argparse type of a validation canvas (`data.eval_pad_size`): '512' -> (512, 512), '620x2026'
    (height x width) -> (620, 2026)."""
    import argparse  # noqa: PLC0415

    from mofgseg_jax.data.transforms import canvas_hw  # noqa: PLC0415

    try:
        parts = [int(t) for t in text.lower().replace(",", "x").split("x")]
        return canvas_hw(parts[0] if len(parts) == 1 else tuple(parts), key="canvas")
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: expected N (a square) or HxW (height x width), "
                                         f"positive ints") from None


def code_version() -> str | None:
    """`git describe` of the checkout this package runs from (`-dirty` with local changes), or None
    outside a git checkout: which code a benchmark JSON measured."""
    try:
        out = subprocess.run(["git", "describe", "--always", "--dirty"], cwd=Path(__file__).resolve().parent,
                             capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() or None


# The vector extensions that decide XLA:CPU's and PyTorch's kernels, widest first.
_SIMD_FLAGS = ("amx_bf16", "avx512_bf16", "avx512f", "avx2")


def host_cpu(cpuinfo: str = "/proc/cpuinfo", caches: str = "/sys/devices/system/cpu/cpu0/cache") -> dict[str, Any]:
    """The host CPU as far as the guest can tell: model name, family/model numbers (a VM may mask
    the name, and "AMD EPYC" has been more than one generation here), the SIMD extensions it
    reports and its per-core L2 and shared L3 sizes. Ratios to the PyTorch reference differ between
    such hosts, so two benchmark JSONs compare only where these agree. Empty where unreadable."""
    info: dict[str, Any] = {}
    try:
        first = Path(cpuinfo).read_text().split("\n\n")[0]
    except OSError:
        return info
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in first.splitlines() if ":" in line)}
    for key, name in (("model name", "model_name"), ("cpu family", "family"), ("model", "model")):
        if key in fields:
            info[name] = fields[key]
    flags = set(fields.get("flags", "").split())
    info["simd"] = [f for f in _SIMD_FLAGS if f in flags]
    for index in sorted(Path(caches).glob("index*")):
        try:
            level, kind, size = ((index / f).read_text().strip() for f in ("level", "type", "size"))
        except OSError:
            continue
        if kind == "Unified":
            info[f"l{level}_cache"] = size
    return info


def device_info() -> dict[str, Any]:
    """Kind and count of the devices this process sees, the jax version, the host's cores and CPU,
    the XLA flags in force (they change what is measured, e.g. GPU autotuning off), the persistent
    compilation cache if one is set (a hit makes `compile_s` a load time) and the code version."""
    devices = jax.devices()
    return {"device_kind": devices[0].device_kind, "device_count": len(devices),
            "platform": devices[0].platform, "jax_version": jax.__version__, "host_cpus": os.cpu_count(),
            "host_cpu": host_cpu(), "xla_flags": os.environ.get("XLA_FLAGS", ""),
            "compilation_cache_dir": os.environ.get("JAX_COMPILATION_CACHE_DIR", ""),
            "code_version": code_version(), **allocator_info()}


def log(message: str) -> None:
    """A progress line on stderr (stdout carries the benchmark's JSON)."""
    print(f"# {message}", file=sys.stderr, flush=True)


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


# Per timed call: process CPU time (all threads), its system part, minor page faults.
_Usage = tuple[float, float, int]


def _summary(times: list[float], usage: list[_Usage], load_before: float) -> dict[str, Any]:
    times = sorted(times)
    total, system, faults = zip(*usage)
    return {"median_s": statistics.median(times), "p90_s": _p90(times), "min_s": times[0],
            "cpu_median_s": statistics.median(total), "sys_median_s": statistics.median(system),
            "minor_faults_median": statistics.median(faults), "timed_iters": len(times),
            "load_avg": [load_before, load_average()]}


def _timed(fn: Callable[[], Any], iters: int, times: list[float], usage: list[_Usage]) -> None:
    """Appends the wall time of `iters` blocking calls of `fn`, and each call's `_Usage`.

    Why system time and faults: on CPU, the kernel's share (zeroing fresh pages for a step's
    temporaries) is part of the step's cost, and it tells a code change from a slow phase of the
    machine."""
    for _ in range(iters):
        before = resource.getrusage(resource.RUSAGE_SELF)
        start = time.perf_counter()
        jax.block_until_ready(fn())  # a no-op on host results (references)
        times.append(time.perf_counter() - start)
        after = resource.getrusage(resource.RUSAGE_SELF)
        system = after.ru_stime - before.ru_stime
        usage.append((after.ru_utime - before.ru_utime + system, system, after.ru_minflt - before.ru_minflt))


def time_calls(fn: Callable[[], Any], *, warmup: int = 2, iters: int = 10) -> dict[str, float]:
    """Times `fn()` (blocking on its result): first call as compile time, then median/p90.

    `fn` takes no arguments; close over inputs. The first call's time includes tracing and
    compilation, so it is reported separately and never mixed into the steady-state numbers.
    Also reports the median process CPU time per call (`cpu_median_s`, all threads), its system part
    (`sys_median_s`) and the median minor page faults per call (`minor_faults_median`).
    """
    start = time.perf_counter()
    jax.block_until_ready(fn())
    compile_s = time.perf_counter() - start
    for _ in range(max(warmup - 1, 0)):
        jax.block_until_ready(fn())
    times: list[float] = []
    usage: list[_Usage] = []
    load_before = load_average()
    _timed(fn, iters, times, usage)
    return {"compile_s": compile_s, **_summary(times, usage, load_before)}


def time_host(fn: Callable[[], Any], *, iters: int = 3) -> dict[str, float]:
    """Median/p90 wall time (and median process CPU time) of a plain host function (references)."""
    times: list[float] = []
    usage: list[_Usage] = []
    load_before = load_average()
    _timed(fn, iters, times, usage)
    return _summary(times, usage, load_before)


def time_interleaved(calls: dict[str, Callable[[], Any]], *, rounds: int, iters: int | dict[str, int],
                     untimed: int = 0, progress: str | None = None) -> dict[str, dict[str, Any]]:
    """Times several warmed-up calls in alternating rounds: each round runs every call `iters` times
    (a per-name dict allowed), after `untimed` untimed calls. With `progress`, logs each round done.

    Why rounds: a shared machine has slow phases of a minute or more; timing one side after the
    other puts a phase on one side only and skews their ratio. Per call, the summary of all its
    timed calls (as `time_host`) plus `round_median_s`, its median in each round, for `paired_ratio`.
    """
    per_name = {name: iters if isinstance(iters, int) else iters[name] for name in calls}
    times: dict[str, list[float]] = {name: [] for name in calls}
    usage: dict[str, list[_Usage]] = {name: [] for name in calls}
    round_medians: dict[str, list[float]] = {name: [] for name in calls}
    load_before = load_average()
    for done in range(1, rounds + 1):
        for name, fn in calls.items():
            for _ in range(untimed):
                jax.block_until_ready(fn())
            before = len(times[name])
            _timed(fn, per_name[name], times[name], usage[name])
            round_medians[name].append(statistics.median(times[name][before:]))
        if progress:
            log(f"{progress}: round {done}/{rounds}")
    return {name: {**_summary(times[name], usage[name], load_before), "rounds": rounds,
                   "round_median_s": round_medians[name]} for name in calls}


def _round_ratios(numerator: dict[str, Any], denominator: dict[str, Any]) -> np.ndarray:
    return np.array(numerator["round_median_s"]) / np.array(denominator["round_median_s"])


def paired_ratio(numerator: dict[str, Any], denominator: dict[str, Any]) -> float:
    """Median over rounds of the ratio of two `time_interleaved` results' round medians: each ratio
    compares calls made seconds apart, so a slow phase of the machine cancels out."""
    return float(np.median(_round_ratios(numerator, denominator)))


def paired_ratio_interval(numerator: dict[str, Any], denominator: dict[str, Any], *, level: float = 0.9,
                          resamples: int = 4000, seed: int = 0) -> list[float]:
    """`[low, high]`: a percentile-bootstrap interval (rounds resampled with replacement) of
    `paired_ratio`, at `level`.

    Why: on a noisy 2-core host one step varies by 20-40% between rounds, so the median of 10
    per-round ratios is itself uncertain; the interval says how far one run's ratio can be trusted
    before it is compared with a target or another run. It covers the noise between rounds, not the
    state of a whole process, which can move every step of it by 5-10% (so an A/B belongs in one
    process: `step --compare`). Deterministic (`seed`): a JSON's interval follows from its rounds.
    """
    ratios = _round_ratios(numerator, denominator)
    picks = np.random.default_rng(seed).integers(0, len(ratios), size=(resamples, len(ratios)))
    medians = np.median(ratios[picks], axis=1)
    tail = (1.0 - level) / 2 * 100
    return [float(v) for v in np.percentile(medians, [tail, 100 - tail])]


def xla_flops(compiled: Any) -> float | None:
    """FLOPs of one call of a compiled (per-device) program by XLA's cost analysis, or None where the
    backend has none. XLA counts a loop's body once, whatever its trip count: callers whose program
    loops over its main work (the sliding-window evaluation) count that work themselves."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # noqa: BLE001 (cost analysis is optional per backend)
        return None
    cost = cost[0] if isinstance(cost, (list, tuple)) else cost
    return float((cost or {}).get("flops", 0.0)) or None


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
