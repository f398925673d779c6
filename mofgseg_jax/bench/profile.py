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


def _op_sources(compiled: Any) -> tuple[dict[str, str], dict[str, str]]:
    """HLO instruction name -> (the `op_name` metadata (model code path), the op's shapes) of the
    optimised program.

    A fusion often carries no metadata of its own (XLA:CPU's YNNPACK fusions never do); it is named
    by the first op inside the computation it calls. The shapes read e.g. `f32[64,16]
    fusion(f32[64,32], f32[32,16])`: the result, the op and its operands, layouts dropped (the HLO
    text names operands without shapes, so they are looked up by name), which tells apart the calls
    of one model module.
    """
    sources, calls, computation_source, shapes, operands = {}, {}, {}, {}, {}
    computation = None
    for line in compiled.as_text().splitlines():
        header = re.match(r"\s*(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if header and " = " not in line:
            computation = header.group(1)
            continue
        named = re.match(r"\s*(?:ROOT )?%?([\w.\-]+) = ", line)
        if not named:
            continue
        name = named.group(1)
        # Tuple-shaped results (loops, multi-output fusions) have spaces in their shape: no signature.
        instruction = re.match(r"(\S+) ([\w\-]+)\(([^)]*)\)", line[named.end():])
        if instruction:
            shape, opcode, args = instruction.groups()
            shapes[name] = re.sub(r"\{[^}]*\}", "", shape)
            operands[name] = (opcode, re.findall(r"%([\w.\-]+)", args))
        meta = re.search(r'op_name="([^"]+)"', line)
        called = re.search(r"calls=%?([\w.\-]+)", line)
        if meta:
            sources[name] = meta.group(1)
            if computation is not None:
                computation_source.setdefault(computation, meta.group(1))
        elif called:
            calls[name] = called.group(1)
    for name, callee in calls.items():
        if callee in computation_source:
            sources[name] = computation_source[callee]
    signatures = {name: f"{shapes[name]} {opcode}({', '.join(shapes.get(arg, '?') for arg in args)})"
                  for name, (opcode, args) in operands.items()}
    return sources, signatures


def _op_times(trace_file: str) -> tuple[collections.Counter, collections.Counter]:
    """Total microseconds and number of executions of each XLA op in a Perfetto trace."""
    with gzip.open(trace_file) as f:
        events = json.load(f)
    events = events["traceEvents"] if isinstance(events, dict) else events
    total: collections.Counter = collections.Counter()
    calls: collections.Counter = collections.Counter()
    for event in events:
        if event.get("ph") == "X" and not event.get("name", "$").startswith(_NOT_OPS):
            total[event["name"]] += event.get("dur", 0)
            calls[event["name"]] += 1
    return total, calls


def top_ops(trace_file: str, compiled: Any = None, *, steps: int = 1, count: int = 15) -> list[dict[str, Any]]:
    """The `count` ops with the most total time per step in a Perfetto trace, with their source."""
    total, calls = _op_times(trace_file)
    sources, shapes = _op_sources(compiled) if compiled is not None else ({}, {})
    return [{"op": name, "ms": round(us / steps / 1000, 2), "calls": calls[name] // steps,
             "source": sources.get(name, "")[-160:], "shapes": shapes.get(name, "")[:240]}
            for name, us in total.most_common(count)]


def module_of(source: str, depth: int = 2) -> str:
    """`jit(body)/transpose(jvp(MOFGSeg))/boundary/block1/conv/...` -> `backward boundary/block1`.

    The pass is `backward` under `transpose(...)` (autodiff's transpose = the backward pass); the
    module path is the first `depth` names after the outermost Flax module. Code outside any module
    (losses, the optimiser, EMA) keeps its first `depth` jax-level names below the jitted function.
    """
    if not source:
        return "(no source)"
    direction = "backward" if "transpose(" in source else "forward"
    parts = [re.sub(r"^(?:[\w.]+\()+|\)+$", "", part) for part in source.split("/")]  # jvp(X) -> X
    module = next((i for i, part in enumerate(parts) if part[:1].isupper()), None)
    path = parts[module + 1:module + 1 + depth] if module is not None else [p for p in parts[1:] if p][:depth]
    return f"{direction} {'/'.join(path)}"


def time_by_module(trace_file: str, compiled: Any, *, steps: int = 1, depth: int = 2,
                   count: int = 20) -> list[dict[str, Any]]:
    """Per-step time summed by pass and model module (see `module_of`), costliest first."""
    total, calls = _op_times(trace_file)
    sources, _ = _op_sources(compiled)
    by_module: collections.Counter = collections.Counter()
    ops: collections.Counter = collections.Counter()
    for name, us in total.items():
        key = module_of(sources.get(name, ""), depth)
        by_module[key] += us
        ops[key] += calls[name]
    return [{"module": key, "ms": round(us / steps / 1000, 2), "op_calls": ops[key] // steps}
            for key, us in by_module.most_common(count)]
