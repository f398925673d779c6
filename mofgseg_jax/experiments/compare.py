"""Supervised-only vs the full method (and ablations) on one labelled split, over several seeds.

Each (variant, seed) is one ordinary training run, `launch/train.py --config <file>:<variant>`, in
its own subprocess (a crash, a leak or an XLA cache of one run cannot touch the next; an
interrupted comparison resumes: finished runs are reused, unfinished ones resume from their
checkpoints). All variants of a seed share the config's labelled split, the number of steps, the
learning rate and the seed (network initialisation and data order); they differ only in the variant.

Results are read back from each run's TensorBoard events (the last evaluation, which must be at the
final step) and written to `--out`:
  results.json   every run (student/teacher mIoU, per-class IoU, wall seconds) + mean/std per variant
  results.md     the same as Markdown tables
  comparison.png mIoU bars (mean +- std over seeds) and image | ground truth | supervised | semi rows
"""

from __future__ import annotations

import dataclasses
import glob
import json
import os
import shutil
import struct
import subprocess
import sys
import time
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from mofgseg_jax.errors import InputError

VARIANTS = ("sup", "semi", "no_contrast", "no_boundary")
LABELS = {"sup": "supervised only", "semi": "full method (semi)", "no_contrast": "semi, no contrastive loss",
          "no_boundary": "semi, no boundary module"}
NETWORKS = ("student", "teacher")
RUN_RECORD = "compare_run.json"  # in each workdir: the run's wall time and command, kept for reuse
REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


@dataclasses.dataclass(frozen=True)
class Run:
    """One training run of the comparison."""

    variant: str
    seed: int
    workdir: str


def plan_runs(variants: Sequence[str], seeds: Sequence[int], runs_dir: str) -> list[Run]:
    """Seed-major order: every variant of seed 0 first, so a partial comparison is already paired."""
    for v in variants:
        if v not in VARIANTS:
            raise InputError(f"--variants: unknown variant {v!r}; choose from {', '.join(VARIANTS)}")
    return [Run(v, int(s), os.path.join(runs_dir, f"{v}_seed{s}")) for s in seeds for v in variants]


def refuse_overrides_of_variant_keys(overrides: Mapping[str, str], variant_configs: Mapping[str, Any],
                                     default_config: Any) -> None:
    """Raises ValueError when an override sets a key that one of the variants changes.

    Overrides are applied after the variant (`--config=<file>:no_boundary --config.X=...`), so e.g.
    `--set loss.boundary_weight=0.1` would silently switch the boundary module back on in the
    `no_boundary` run and the ablation would compare nothing. variant_configs: {variant: its config};
    default_config: the config without a variant (ConfigDicts or nested dicts).
    """
    from flax import traverse_util  # noqa: PLC0415 (only this check needs it)

    def flat(config):
        return traverse_util.flatten_dict(config.to_dict() if hasattr(config, "to_dict") else config, sep=".")

    default = flat(default_config)
    for variant, config in variant_configs.items():
        changed = {k for k, v in flat(config).items() if default.get(k, object()) != v}
        for key in overrides:
            if key in changed:
                raise InputError(f"--set {key}: the variant {variant!r} sets this key itself; overriding it "
                                 f"would undo that variant (set it in the config file instead)")


def train_command(config_file: str, run: Run, *, steps: int, overrides: Mapping[str, str] = (),
                  base_variant: str = "", python: str = sys.executable) -> list[str]:
    """The `launch/train.py` command line of `run` (overrides: dotted config key -> value string;
    base_variant: added to the run's variant, e.g. 'smoke')."""
    variant = ",".join(filter(None, [run.variant, base_variant]))
    cmd = [python, os.path.join(REPO_ROOT, "launch", "train.py"), f"--config={config_file}:{variant}",
           f"--workdir={run.workdir}", f"--config.seed={run.seed}"]
    if steps > 0:
        cmd.append(f"--config.train.num_steps={steps}")
    cmd += [f"--config.{k}={v}" for k, v in dict(overrides).items()]
    return cmd


# ----------------------------------------------------------------------------------------------
# Reading results back from TensorBoard event files (tensorboardX protos; no TensorFlow).


def _records(path: str) -> Iterable[bytes]:
    """Payloads of a TFRecord file (length u64, crc u32, data, crc u32); stops at a torn tail."""
    with open(path, "rb") as f:
        while True:
            header = f.read(12)
            if len(header) < 12:
                return
            (length,) = struct.unpack("<Q", header[:8])
            data = f.read(length)
            if len(data) < length or len(f.read(4)) < 4:
                return
            yield data


def read_scalars(workdir: str) -> dict[str, list[tuple[int, float]]]:
    """{tag: [(step, value), ...]} from every `events.out.tfevents.*` file in `workdir` (in step order;
    a step logged again after a resume keeps its latest value)."""
    from tensorboardX.proto import event_pb2  # noqa: PLC0415

    out: dict[str, dict[int, float]] = {}
    for path in sorted(glob.glob(os.path.join(workdir, "events.out.tfevents.*")), key=os.path.getmtime):
        for record in _records(path):
            event = event_pb2.Event.FromString(record)
            for value in event.summary.value:
                if value.HasField("simple_value"):
                    out.setdefault(value.tag, {})[int(event.step)] = float(value.simple_value)
    return {tag: sorted(d.items()) for tag, d in out.items()}


def run_result(workdir: str, steps: int | None = None) -> dict[str, Any] | None:
    """The last evaluation of a run: {'step', 'student_miou', 'teacher_miou', 'student_iou' {class: IoU},
    'teacher_iou', 'confident_ratio' (last logged), ...}; None when it has no evaluation at `steps`."""
    if not os.path.isdir(workdir):
        return None
    scalars = read_scalars(workdir)
    curve = scalars.get("eval/student/mIoU")
    if not curve or (steps is not None and curve[-1][0] != steps):
        return None
    step = curve[-1][0]
    # The learning curve: on the demo, when a run leaves its early plateau decides its result.
    result: dict[str, Any] = {"step": step, "student_curve": [[s, v] for s, v in curve]}
    for net in NETWORKS:
        result[f"{net}_miou"] = dict(scalars[f"eval/{net}/mIoU"])[step]
        prefix = f"eval/{net}/IoU/"
        result[f"{net}_iou"] = {t[len(prefix):]: dict(v)[step] for t, v in scalars.items()
                                if t.startswith(prefix) and step in dict(v)}
    for tag in ("confident_ratio", "unsupervised_loss", "contrastive_loss", "boundary_loss", "supervised_loss"):
        curve = scalars.get(f"train/{tag}")
        if curve:
            result[f"last_{tag}"] = curve[-1][1]
    return result


# ----------------------------------------------------------------------------------------------
# Running


class _Training:
    """One training subprocess: its output goes to `log_path`; optionally pinned to one CPU core."""

    def __init__(self, cmd: Sequence[str], log_path: str, env: Mapping[str, str] | None, core: int | None):
        os.makedirs(os.path.dirname(os.path.abspath(log_path)), exist_ok=True)
        self.cmd, self.log_path, self.core = list(cmd), log_path, core
        self.start = time.perf_counter()
        self._log = open(log_path, "w")
        self.proc = subprocess.Popen(self.cmd, stdout=self._log, stderr=subprocess.STDOUT,
                                     env=dict(env or os.environ))
        if core is not None:
            # Pinned from here rather than in a preexec_fn (unsafe beside threads): Popen returns once
            # the child has exec'd, long before its interpreter starts a thread or XLA sizes its thread
            # pool from the affinity, and threads inherit it. Why pin: a run on one core is one XLA
            # thread, the setting the README's table was trained in (summation order moves results).
            try:
                os.sched_setaffinity(self.proc.pid, {core})
            except ProcessLookupError:
                pass  # it has exited already; finish() reports how

    def finish(self) -> float:
        """Waits for the process; returns its wall seconds; raises with the log's tail if it failed."""
        code = self.proc.wait()
        seconds = time.perf_counter() - self.start
        self._log.close()
        if code != 0:
            with open(self.log_path, errors="replace") as f:
                tail = f.read()[-3000:]
            raise RuntimeError(f"training run failed (exit {code}): {' '.join(self.cmd)}\n--- {self.log_path} "
                               f"(tail) ---\n{tail}")
        return seconds

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait()
        self._log.close()


def execute(cmd: Sequence[str], log_path: str, *, env: Mapping[str, str] | None = None) -> float:
    """Runs `cmd` with stdout+stderr to `log_path`; returns wall seconds; raises with the log's tail."""
    return _Training(cmd, log_path, env, None).finish()


def execute_side_by_side(jobs: Sequence[tuple[Sequence[str], str]], cores: Sequence[int], *,
                         env: Mapping[str, str] | None = None, on_start=lambda i, core: None,
                         on_finish=lambda i, wall_s: None, poll_s: float = 1.0) -> None:
    """Runs the jobs `(cmd, log_path)` in order, at most one per listed CPU core at a time, each
    pinned to its core. When one fails, the others are stopped (their runs resume from their
    checkpoints next time) and its error is raised. on_start(job index, core) and on_finish(job
    index, wall seconds) are called as each job starts and succeeds."""
    if len(set(cores)) != len(cores) or not cores:
        raise ValueError(f"cores {list(cores)}: expected distinct CPU core numbers")
    running: dict[int, _Training] = {}  # job index -> its process
    pending = list(range(len(jobs)))
    try:
        while pending or running:
            busy = {t.core for t in running.values()}
            for core in [c for c in cores if c not in busy]:
                if pending:
                    i = pending.pop(0)
                    on_start(i, core)
                    running[i] = _Training(*jobs[i], env, core)
            done = [i for i, t in running.items() if t.proc.poll() is not None]
            for i in done:
                on_finish(i, running.pop(i).finish())
            if not done:
                time.sleep(poll_s)
    except BaseException:
        for t in running.values():
            t.stop()
        raise


def compile_cache_env(cache_dir: str) -> dict[str, str]:
    """The environment with a persistent XLA compilation cache in `cache_dir`: the seeds of a variant
    run the same programs, so only the first seed pays for compilation."""
    env = dict(os.environ)
    if cache_dir:
        env.update(JAX_COMPILATION_CACHE_DIR=os.path.abspath(cache_dir), JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
                   JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def run_all(config_file: str, runs: Sequence[Run], *, steps: int, overrides: Mapping[str, str] = (),
            rerun: bool = False, base_variant: str = "", cache_dir: str = "", train_missing: bool = True,
            cores: Sequence[int] = (), echo=print) -> list[dict[str, Any]]:
    """Trains every run not already finished (a finished run: evaluated at `steps`); returns their results
    [{'variant', 'seed', 'workdir', 'wall_s' (None when reused without a record), 'reused', **run_result}].
    cache_dir: persistent compilation cache shared by the runs ('' = none).
    train_missing: False = only collect finished runs, leaving the others out (a partial summary).
    cores: train one run per listed CPU core side by side, each pinned to its core (() = one run at a
    time on every core)."""
    env = compile_cache_env(cache_dir)
    to_train: list[tuple[int, Run, list[str]]] = []  # (position in runs, run, command)
    found: dict[int, dict[str, Any]] = {}  # position in runs -> its result (reused or just trained)
    for i, run in enumerate(runs):
        if rerun and os.path.isdir(run.workdir):
            shutil.rmtree(run.workdir)
        result = run_result(run.workdir, steps)
        if result is not None:
            found[i] = result
            echo(f"[{i + 1}/{len(runs)}] {run.variant} seed {run.seed}: reusing the finished run in {run.workdir}")
        elif not train_missing:
            echo(f"[{i + 1}/{len(runs)}] {run.variant} seed {run.seed}: not finished, left out")
        else:
            cmd = train_command(config_file, run, steps=steps, overrides=overrides, base_variant=base_variant)
            to_train.append((i, run, cmd))

    walls: dict[int, float] = {}  # position in runs -> wall seconds of its training

    def started(k: int, core: int | None) -> None:
        i, run, cmd = to_train[k]
        where = "" if core is None else f" (CPU core {core})"
        echo(f"[{i + 1}/{len(runs)}] {run.variant} seed {run.seed}{where}: {' '.join(cmd)}")

    def finished(k: int, wall: float) -> None:
        i, run, cmd = to_train[k]
        result = run_result(run.workdir, steps)
        if result is None:
            raise RuntimeError(f"{run.workdir}: the run finished without an evaluation at step {steps}; "
                               f"see {run.workdir}.log")
        found[i], walls[i] = result, wall
        with open(os.path.join(run.workdir, RUN_RECORD), "w") as f:
            json.dump({"wall_s": wall, "command": cmd}, f)
        echo(f"    {run.variant} seed {run.seed}: student mIoU {result['student_miou']:.2f}, "
             f"teacher mIoU {result['teacher_miou']:.2f} ({wall:.0f} s)")

    if cores:
        execute_side_by_side([(cmd, run.workdir + ".log") for _, run, cmd in to_train], cores, env=env,
                             on_start=started, on_finish=finished)
    else:
        for k, (_, run, cmd) in enumerate(to_train):
            started(k, None)
            finished(k, execute(cmd, run.workdir + ".log", env=env))

    results = []
    for i, run in enumerate(runs):
        if i not in found:
            continue  # left out (train_missing=False)
        wall = walls.get(i)
        record = os.path.join(run.workdir, RUN_RECORD)
        if wall is None and os.path.exists(record):
            with open(record) as f:
                wall = json.load(f).get("wall_s")
        results.append({"variant": run.variant, "seed": run.seed, "workdir": run.workdir, "wall_s": wall,
                        "reused": i not in walls, **found[i]})
    return results


# ----------------------------------------------------------------------------------------------
# Summaries


def mean_std(values: Sequence[float]) -> tuple[float, float]:
    """(mean, sample standard deviation with ddof=1; 0 for a single value)."""
    a = np.asarray(values, np.float64)
    return float(a.mean()), float(a.std(ddof=1)) if a.size > 1 else 0.0


def summarize(results: Sequence[Mapping[str, Any]], variants: Sequence[str]) -> dict[str, Any]:
    """{variant: {'seeds', 'student': {'mean','std','values'}, 'teacher': ...}} plus, when both `sup`
    and `semi` ran, 'gap_semi_minus_sup': per network the mean and std of the per-seed differences."""
    summary: dict[str, Any] = {}
    for v in variants:
        rows = sorted((r for r in results if r["variant"] == v), key=lambda r: r["seed"])
        if not rows:
            continue
        entry: dict[str, Any] = {"seeds": [r["seed"] for r in rows]}
        for net in NETWORKS:
            values = [float(r[f"{net}_miou"]) for r in rows]
            m, s = mean_std(values)
            entry[net] = {"mean": m, "std": s, "values": values}
        summary[v] = entry
    if "sup" in summary and "semi" in summary:
        paired = sorted(set(summary["sup"]["seeds"]) & set(summary["semi"]["seeds"]))
        by = {(r["variant"], r["seed"]): r for r in results}
        gap = {"seeds": paired}
        for net in NETWORKS:
            diffs = [by[("semi", s)][f"{net}_miou"] - by[("sup", s)][f"{net}_miou"] for s in paired]
            m, s = mean_std(diffs)
            gap[net] = {"mean": m, "std": s, "values": diffs}
        summary["gap_semi_minus_sup"] = gap
    return summary


def markdown(summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]], meta: Mapping[str, Any]) -> str:
    """Markdown: a mean +- std table per variant, a per-seed table, the student's mIoU at every
    evaluation, and how it was produced."""
    variants = [v for v in VARIANTS if v in summary]
    lines = [f"# {meta.get('title', 'Comparison')}", ""]
    lines += ["| variant | student mIoU | teacher mIoU | seeds |", "|---|---|---|---|"]
    for v in variants:
        e = summary[v]
        lines.append(f"| {LABELS[v]} (`:{v}`) | {e['student']['mean']:.2f} ± {e['student']['std']:.2f} | "
                     f"{e['teacher']['mean']:.2f} ± {e['teacher']['std']:.2f} | {len(e['seeds'])} |")
    gap = summary.get("gap_semi_minus_sup")
    if gap:
        lines.append(f"| **semi − sup** (paired by seed) | **{gap['student']['mean']:+.2f}** ± {gap['student']['std']:.2f} | "
                     f"**{gap['teacher']['mean']:+.2f}** ± {gap['teacher']['std']:.2f} | {len(gap['seeds'])} |")
    lines += ["", "Per seed (student / teacher mIoU, wall time of the run):", ""]
    seeds = sorted({r["seed"] for r in results})
    lines += ["| variant | " + " | ".join(f"seed {s}" for s in seeds) + " |", "|---|" + "---|" * len(seeds)]
    by = {(r["variant"], r["seed"]): r for r in results}
    for v in variants:
        cells = []
        for s in seeds:
            r = by.get((v, s))
            if r is None:
                cells.append("—")
            else:
                wall = f", {r['wall_s'] / 60:.1f} min" if r.get("wall_s") else ""
                cells.append(f"{r['student_miou']:.2f} / {r['teacher_miou']:.2f}{wall}")
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    lines += ["", "mean ± sample standard deviation (ddof = 1) over seeds; mIoU in percent on the "
              "validation split at the final step (not the best checkpoint)."]
    for key in ("command", "steps", "config", "machine", "total_wall_min", "git_commit"):
        if key in meta:
            lines.append(f"- {key}: `{meta[key]}`")
    lines += _curve_table(variants, seeds, by)
    return "\n".join(lines) + "\n"


def _curve_table(variants: Sequence[str], seeds: Sequence[int], by: Mapping[tuple[str, int], Any]) -> list[str]:
    """Markdown lines: student mIoU at each evaluation step, a row per variant, seeds joined by ' / '."""
    curves = {key: dict((int(s), v) for s, v in r.get("student_curve", ())) for key, r in by.items()}
    steps = sorted({s for c in curves.values() for s in c})
    if not steps:
        return []
    lines = ["", "Student mIoU at each evaluation (seeds " + " / ".join(map(str, seeds)) + "):", "",
             "| variant | " + " | ".join(map(str, steps)) + " |", "|---|" + "---|" * len(steps)]
    for v in variants:
        cells = [" / ".join(f"{curves[(v, seed)][s]:.1f}" if s in curves.get((v, seed), {}) else "—"
                            for seed in seeds) for s in steps]
        lines.append(f"| `{v}` | " + " | ".join(cells) + " |")
    return lines


def write_results(out: str, summary: Mapping[str, Any], results: Sequence[Mapping[str, Any]],
                  meta: Mapping[str, Any]) -> tuple[str, str]:
    """Writes `out/results.json` and `out/results.md`; returns their paths."""
    os.makedirs(out, exist_ok=True)
    json_path, md_path = os.path.join(out, "results.json"), os.path.join(out, "results.md")
    with open(json_path, "w") as f:
        json.dump({"meta": dict(meta), "summary": dict(summary), "runs": list(results)}, f, indent=2)
    with open(md_path, "w") as f:
        f.write(markdown(summary, results, meta))
    return json_path, md_path
