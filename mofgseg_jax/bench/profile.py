"""Where a jitted step spends its time: a `jax.profiler` trace and the costliest XLA ops in it.

`trace_steps` records a few calls with `jax.profiler.trace(create_perfetto_trace=True)` (open the
`.trace.json.gz` in https://ui.perfetto.dev, or the directory in TensorBoard's profile plugin);
`top_ops` sums the trace's per-op events and names each op by the model code it came from (the
`op_name` metadata XLA keeps), e.g. `transpose(jvp(MOFGSeg))/boundary/block1/conv` = the backward
pass of the boundary module's first conv.
"""

from __future__ import annotations

import collections
import glob
import gzip
import json
import os
import re
from typing import Any, Callable

import jax

# Trace events that are runtime bookkeeping rather than XLA ops (executor, Python frames, waits).
_NOT_OPS = ("$", "ThunkExecutor", "SlinkyThreadPool", "PjitFunction")


def trace_steps(step: Callable[[], Any], trace_dir: str, *, steps: int = 3) -> str:
    """Runs `step()` `steps` times under the profiler; returns the Perfetto trace file written."""
    os.makedirs(trace_dir, exist_ok=True)
    before = set(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True))
    with jax.profiler.trace(trace_dir, create_perfetto_trace=True):
        for _ in range(steps):
            jax.block_until_ready(step())
    written = set(glob.glob(os.path.join(trace_dir, "**", "*.trace.json.gz"), recursive=True)) - before
    if not written:
        raise RuntimeError(f"{trace_dir}: the profiler wrote no Perfetto trace")
    return max(written, key=os.path.getmtime)


def _op_sources(compiled: Any) -> dict[str, str]:
    """HLO instruction name -> the `op_name` metadata (model code path) of the optimised program."""
    sources = {}
    for line in compiled.as_text().splitlines():
        name = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        meta = re.search(r'op_name="([^"]+)"', line)
        if name and meta:
            sources[name.group(1)] = meta.group(1)
    return sources


def top_ops(trace_file: str, compiled: Any = None, *, steps: int = 1, count: int = 15) -> list[dict[str, Any]]:
    """The `count` ops with the most total time per step in a Perfetto trace, with their source."""
    with gzip.open(trace_file) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event.get("name", "$").startswith(_NOT_OPS):
            total[event["name"]] += event.get("dur", 0)  # microseconds
            calls[event["name"]] += 1
    sources = _op_sources(compiled) if compiled is not None else {}
    return [{"op": name, "ms": round(us / steps / 1000, 2), "calls": calls[name] // steps,
             "source": sources.get(name, "")[-160:]}
            for name, us in total.most_common(count)]
