"""Step benchmark (issue 8): the full semi step and the supervised step vs Hugging Face SegFormer.

    python launch/benchmark.py step                      # MiT-B0, crop 256, 2+2 images, 14 classes
    python launch/benchmark.py step --backbone b5 --crop 513 --dtype bfloat16 --no-reference
    python launch/benchmark.py step --modes semi --profile /tmp/trace   # + a trace and the top ops

Times `parallel.step` (shard_map under jit over every device, state donated) on synthetic uint8
batches, blocking on the results: compile time, median/p90 over `--iters` steps after warm-up,
images/s, XLA's FLOPs per step, host peak RSS after our compiles. The reference, measured in the
same run, is Hugging Face `SegformerForSemanticSegmentation` forward + backward + SGD step on the
labelled batch at the same size (PyTorch is a test-only dependency: skipped when absent). Every
mode and the reference are timed in `--rounds` alternating rounds, and each `<mode>_vs_hf` ratio is
the median of the per-round ratios, so that a slow phase of a shared machine cannot fall on one side;
`<mode>_vs_hf_ci90` is a bootstrap interval of it over the rounds (how far one run can be trusted).

`--compare KEY=VALUE[,KEY=VALUE]` (repeatable) also builds each mode with those config overrides
in the same process and times it in the same rounds: `<mode>[<overrides>]_step` and its paired ratio
to the plain mode, `<mode>[<overrides>]_vs_<mode>` (with `_ci90`). Separate processes of the same
code differ by 5-10% as a whole on a shared 2-core CPU (`semi`), so an A/B of an option belongs in one:

    python launch/benchmark.py step --modes sup --compare model.conv3x3=xla --compare model.eam_mid_dim=64

Modes: `semi` (the full step: teacher forward, student forwards on labelled and perturbed unlabelled,
all four losses, update, EMA), `sup` (MOFGSeg on labelled images: cross-entropy + boundary Dice, the
`:sup` variant) and `segformer` (the same step with the boundary weight 0, `:sup,no_boundary`:
encoder, decoder and cross-entropy only — the work the Hugging Face reference does, so its ratio
compares frameworks; it is also the published supervised baseline, whose `train_baseline_sup.py`
trains on cross-entropy alone and discards the boundary module's output).
"""

from __future__ import annotations

import argparse
import ast
import re
import time
from typing import Any

import jax
import numpy as np

from mofgseg_jax import cli
from mofgseg_jax.bench.common import (log, model_config, paired_ratio, paired_ratio_interval, peak_memory_bytes,
                                      time_interleaved, xla_flops)
from mofgseg_jax.bench.profile import time_by_module, top_ops, trace_steps
from mofgseg_jax.errors import InputError
from mofgseg_jax.models.conv import CONV3X3_ALGORITHMS
from mofgseg_jax.models.mit import PRESETS
from mofgseg_jax.train.host_memory import trimming_free_memory

MODES = ("semi", "sup", "segformer")

# Dense peak FLOP/s per device, for MFU where the device is known (vendor datasheet numbers). float32
# convs/matmuls run as TF32 on these GPUs at XLA's default precision, so f32 is measured against the
# dense TF32 peak.
PEAK_FLOPS = {("H100", "bfloat16"): 989e12, ("H100", "float32"): 494e12,
              ("H200", "bfloat16"): 989e12, ("H200", "float32"): 494e12,
              ("A100", "bfloat16"): 312e12, ("A100", "float32"): 156e12}
# The Hugging Face reference's SegformerConfig arguments per preset, from the one preset table.
HF_PRESETS = {name: dict(hidden_sizes=list(p.dims), depths=list(p.depths), decoder_hidden_size=p.decoder_dim,
                         num_attention_heads=list(p.num_heads), sr_ratios=list(p.sr_ratios),
                         mlp_ratios=[p.mlp_ratio] * len(p.dims))
              for name, p in PRESETS.items()}


def _parse(argv: list[str]) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="benchmark.py step", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="b0")
    p.add_argument("--crop", type=int, default=256)
    p.add_argument("--batch-labeled", type=int, default=2, help="global labelled batch")
    p.add_argument("--batch-unlabeled", type=int, default=2, help="global unlabelled batch")
    p.add_argument("--classes", type=int, default=14)
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--rep-at-stride4", action=argparse.BooleanOptionalAction, default=None,
                   help="contrastive loss on stride-4 features (default: configs/common.py)")
    p.add_argument("--remat", action=argparse.BooleanOptionalAction, default=None,
                   help="rematerialise the transformer blocks (default: configs/common.py)")
    p.add_argument("--eam-mid-dim", type=int, default=None,
                   help="width of the boundary module's 3x3 convs (default: configs/common.py, the published 256)")
    p.add_argument("--conv3x3", default=None, choices=CONV3X3_ALGORITHMS,
                   help="the boundary module's 3x3 conv algorithm (default: configs/common.py, 'auto')")
    p.add_argument("--modes", default="semi,sup,segformer", help="comma-separated: " + ", ".join(MODES))
    p.add_argument("--iters", type=int, default=30,
                   help="timed steps of each mode and of the reference (30: 3 per round, whose median is "
                        "steadier than one step's time on a noisy host)")
    p.add_argument("--rounds", type=int, default=10,
                   help="alternating rounds the timed steps are split into (all modes and the reference "
                        "in each), so that a slow phase of a shared machine hits them alike")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-reference", action="store_true", help="skip the Hugging Face reference")
    p.add_argument("--smoke", action="store_true", help="the config's tiny ':smoke' model (tests, seconds)")
    p.add_argument("--hf-device", default="cpu", choices=("cpu", "cuda"),
                   help="where the reference runs; on 'cuda' it uses TF32 matmuls (XLA's default for f32 on "
                        "these GPUs) and bf16 autocast under --dtype bfloat16, so both sides do the same math")
    p.add_argument("--hf-threads", type=int, default=0,
                   help="torch threads for the reference (0 = torch's default); 1 is steadier on a busy machine")
    p.add_argument("--profile", default="",
                   help="directory: also write a jax.profiler (Perfetto) trace of 3 steps per mode there, "
                        "and report the costliest XLA ops")
    p.add_argument("--compare", action="append", default=[], metavar="KEY=VALUE[,KEY=VALUE]",
                   help="also time each mode with these config overrides (e.g. model.conv3x3=xla), in the "
                        "same process and rounds, with its paired ratio to the mode; repeatable")
    p.add_argument("--peak-flops", type=float, default=0.0,
                   help="peak FLOP/s per device for MFU when the device is not in the built-in table")
    return p.parse_args(argv)


def _override(config, assignment: str) -> None:
    """Applies one `KEY=VALUE` of `--compare` (dotted key; the value a Python literal, else a string),
    with a one-line error for an unknown key or a value of the wrong type."""
    key, sep, raw = assignment.partition("=")
    if not sep or not key:
        raise InputError(f"--compare: {assignment!r} is not KEY=VALUE")
    *parents, leaf = key.split(".")
    node = config
    for name in parents:
        node = node.get(name) if hasattr(node, "get") else None
    if node is None or not hasattr(node, "get") or leaf not in node:
        raise InputError(f"--compare: unknown config key {key!r}")
    try:
        value = ast.literal_eval(raw)
    except (ValueError, SyntaxError):
        value = raw
    try:
        setattr(node, leaf, value)
    except TypeError as e:
        raise InputError(f"--compare: {key}={raw}: {e}") from None


def _config(args: argparse.Namespace, mode: str, overrides: str = ""):
    c = model_config(args)
    if args.rep_at_stride4 is not None:
        c.model.rep_at_stride4 = bool(args.rep_at_stride4)
    if args.remat is not None:
        c.model.remat = bool(args.remat)
    if args.eam_mid_dim is not None:
        c.model.eam_mid_dim = int(args.eam_mid_dim)
    if args.conv3x3 is not None:
        c.model.conv3x3 = args.conv3x3
    c.data.crop_size = args.crop
    c.data.batch_size_labeled = args.batch_labeled
    c.data.batch_size_unlabeled = args.batch_unlabeled
    c.train.mode = "sup" if mode == "segformer" else mode
    if mode == "segformer":
        c.loss.boundary_weight = 0.0  # the EAM is then never run; rep head output unused (dead code)
    c.train.num_steps = 1000
    for assignment in filter(None, overrides.split(",")):
        _override(c, assignment)
    return c


def _batch(args: argparse.Namespace, seed: int = 0) -> dict[str, Any]:
    rs = np.random.RandomState(seed)
    bl, bu, s = args.batch_labeled, args.batch_unlabeled, args.crop
    label = rs.randint(0, args.classes, (bl, s // 16, s // 16)).astype(np.uint8).repeat(16, 1).repeat(16, 2)
    pad = ((0, 0), (0, s - label.shape[1]), (0, s - label.shape[2]))
    inside = np.pad(np.ones_like(label), pad)  # as the pipeline's crop padding: 0 there
    label = np.pad(label, pad, constant_values=255)
    return {"labeled": {"image": rs.randint(0, 256, (bl, s, s, 3)).astype(np.uint8), "label": label,
                        "inside": inside},
            "unlabeled": {"image": rs.randint(0, 256, (bu, s, s, 3)).astype(np.uint8)}}


def prepare_ours(args: argparse.Namespace, mode: str, overrides: str = ""):
    """Builds and compiles one mode's step (with `--compare`-style `overrides`) and warms it up:
    `(call, compiled, info)`, where `call()` runs one step (state donated and replaced) and `info`
    holds compile time, memory and FLOPs."""
    from mofgseg_jax.models import build_model
    from mofgseg_jax.train import parallel
    from mofgseg_jax.train.state import create_train_state, init_variables
    from mofgseg_jax.config_checks import reads_unlabelled
    from mofgseg_jax.train.step import AXIS, make_train_step, wants_inside_map

    config = _config(args, mode, overrides)
    log(f"step: building and compiling {mode}{f' [{overrides}]' if overrides else ''} "
        f"(MiT-{args.backbone}, crop {args.crop}, {args.dtype})")
    model = build_model(config.model, bn_axis_name=AXIS)
    start = time.perf_counter()
    variables = jax.block_until_ready(init_variables(model, jax.random.key(0), (1, args.crop, args.crop, 3)))
    init_s = time.perf_counter() - start
    state = create_train_state(config, model, None, (1, args.crop, args.crop, 3), variables=variables)
    par = parallel.make_parallel(config, make_train_step(config, model))
    host_batch = _batch(args)
    if not wants_inside_map(config):  # the batches training would feed this config
        del host_batch["labeled"]["inside"]
    if not reads_unlabelled(config):
        host_batch = {"labeled": host_batch["labeled"]}
    batch = par.put_batch(host_batch)
    rng = jax.random.key(0)
    holder = {"state": par.put_state(state)}
    del state, variables  # the device copy is what training keeps; free the host one
    start = time.perf_counter()
    with trimming_free_memory():  # as the training loop's first step
        compiled = par.step.lower(holder["state"], batch, rng).compile()  # trace + lower + XLA compile
    compile_s = time.perf_counter() - start
    log(f"step: {mode} compiled in {compile_s:.1f} s")
    rss_after_compile = peak_memory_bytes()["peak_host_rss_mb"]
    try:
        mem = compiled.memory_analysis()
        xla_memory = {"temp_mb": mem.temp_size_in_bytes / 2**20, "argument_mb": mem.argument_size_in_bytes / 2**20,
                      "output_mb": mem.output_size_in_bytes / 2**20}
    except Exception:  # noqa: BLE001 (memory analysis is optional per backend)
        xla_memory = None
    # XLA counts the contrastive loss's chunk loop once: its two mat-vecs over the gathered keys
    # (~1.9 GFLOP per MiT-B0 `semi` step, ~5% of it) are missing from the count.
    flops = xla_flops(compiled)

    def one():
        holder["state"], metrics = par.step(holder["state"], batch, rng)
        return metrics

    start = time.perf_counter()
    jax.block_until_ready(one())  # reuses the executable compiled above (jit shares the compile cache)
    first_call_s = time.perf_counter() - start
    for _ in range(max(args.warmup - 1, 0)):
        jax.block_until_ready(one())
    images = args.batch_labeled + (args.batch_unlabeled if mode == "semi" else 0)
    info: dict[str, Any] = {"compile_s": compile_s, "first_call_s": first_call_s, "init_s": init_s,
                            "images_per_step": images, "xla_memory": xla_memory,
                            "peak_rss_after_compile_mb": rss_after_compile}
    if flops:
        # `flops` is the per-device program; the step runs it on every device.
        info["flops_per_step"] = flops * jax.device_count()
        info["flops_per_image"] = info["flops_per_step"] / images
    return one, compiled, info


def _finish_ours(args: argparse.Namespace, name: str, one, compiled, info: dict[str, Any],
                 timing: dict[str, Any]) -> dict[str, Any]:
    """The prepared step's report: its timings with images/s and MFU, optional profile, final loss."""
    out = {**info, **timing, "images_per_s": info["images_per_step"] / timing["median_s"]}
    if "flops_per_step" in info:
        total = info["flops_per_step"]
        kind = jax.devices()[0].device_kind
        peak = args.peak_flops or next((v for (device, dt), v in PEAK_FLOPS.items()
                                         if device in kind and dt == args.dtype), None)
        out["mfu"] = total / timing["median_s"] / (peak * jax.device_count()) if peak else None
        out["achieved_gflops_per_s"] = total / timing["median_s"] / 1e9
    if args.profile:
        trace_dir = f"{args.profile.rstrip('/')}/{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}"
        trace = trace_steps(one, trace_dir, steps=3)
        out["profile"] = {"trace_dir": trace_dir,
                          "by_module_ms_per_step": time_by_module(trace, compiled, steps=3),
                          "top_ops_ms_per_step": top_ops(trace, compiled, steps=3)}
    out["final_loss"] = float(jax.device_get(one()["loss"]))
    return out


def prepare_hf(args: argparse.Namespace):
    """The Hugging Face reference step, warmed up: `(call, info, device_peak)`, where `device_peak()`
    reports its GPU memory peak; None without torch/transformers."""
    try:
        import torch
        from transformers import SegformerConfig, SegformerForSemanticSegmentation
    except ImportError:
        return None
    cfg = SegformerConfig(**HF_PRESETS[args.backbone], num_labels=args.classes, semantic_loss_ignore_index=255)
    if args.hf_threads:
        torch.set_num_threads(args.hf_threads)
    torch.manual_seed(0)
    device = torch.device(args.hf_device)
    cuda = device.type == "cuda"
    if cuda:
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
        torch.backends.cudnn.benchmark = True
    net = SegformerForSemanticSegmentation(cfg).train().to(device)
    opt = torch.optim.SGD(net.parameters(), lr=0.005, momentum=0.9, weight_decay=1e-4)
    b = _batch(args)["labeled"]
    x = torch.from_numpy(b["image"]).permute(0, 3, 1, 2).float().div(255.0).to(device)
    y = torch.from_numpy(b["label"].astype(np.int64)).to(device)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=cuda and args.dtype == "bfloat16")

    def step():
        opt.zero_grad(set_to_none=True)
        with autocast:
            loss = net(pixel_values=x, labels=y).loss
        loss.backward()
        opt.step()
        if cuda:
            torch.cuda.synchronize()  # time the work, not the kernel launches

    for _ in range(3 if cuda else 1):
        step()  # warm-up (allocator, lazy init, cuDNN autotuning)
    info = {"images_per_step": args.batch_labeled, "torch_threads": torch.get_num_threads(),
            "device": torch.cuda.get_device_name(device) if cuda else "cpu"}

    def device_peak() -> dict[str, float]:  # on CPU the process RSS is shared with our steps
        return {"peak_device_mb": torch.cuda.max_memory_allocated(device) / 2**20} if cuda else {}

    return step, info, device_peak


def _ratio_report(key: str, numerator: dict[str, Any], denominator: dict[str, Any]) -> dict[str, Any]:
    """`{key: paired ratio, key_ci90: its 90% interval}` of two `time_interleaved` results."""
    return {key: paired_ratio(numerator, denominator),
            f"{key}_ci90": paired_ratio_interval(numerator, denominator)}


def run(argv: list[str]) -> dict[str, Any]:
    args = _parse(argv)
    effective = _config(args, "semi")
    result: dict[str, Any] = {"config": {"backbone": args.backbone, "crop": args.crop,
                                         "batch_labeled": args.batch_labeled,
                                         "batch_unlabeled": args.batch_unlabeled, "classes": args.classes,
                                         "dtype": args.dtype, "rep_at_stride4": bool(effective.model.rep_at_stride4),
                                         "remat": bool(effective.model.remat),
                                         "eam_mid_dim": int(effective.model.eam_mid_dim),
                                         "conv3x3": str(effective.model.conv3x3), "smoke": bool(args.smoke)}}
    modes = [m for m in args.modes.split(",") if m]
    for mode in modes:
        if mode not in MODES:
            raise InputError(f"--modes: unknown mode {mode!r} ({', '.join(MODES)})")
    variants = {mode: (mode, "") for mode in modes}  # name -> (mode, --compare overrides)
    for overrides in args.compare:
        variants.update({f"{mode}[{overrides}]": (mode, overrides) for mode in modes})
    for mode, overrides in variants.values():
        _config(args, mode, overrides)  # a bad --compare fails here, before anything compiles
    # semi first: its compile sets the peak
    prepared = {name: prepare_ours(args, mode, overrides) for name, (mode, overrides) in variants.items()}
    result["ours_peak"] = peak_memory_bytes()
    calls = {name: call for name, (call, _, _) in prepared.items()}
    hf = None if args.no_reference else prepare_hf(args)
    if hf is not None:
        calls["hf_reference"] = hf[0]  # (call, info, device_peak)
    # All steps in alternating rounds, so a slow phase of a shared machine hits them alike. One
    # untimed step each per round: the first `semi` step after other programs ran takes up to 0.2 s
    # longer on CPU (its temporaries' memory is fetched afresh), which training, running one
    # program over and over, never pays.
    rounds = max(min(args.rounds, args.iters), 1)
    timings = time_interleaved(calls, rounds=rounds, iters=-(-args.iters // rounds), untimed=1,
                               progress="step: timing " + ", ".join(calls))
    for name, (call, compiled, info) in prepared.items():
        result[f"{name}_step"] = _finish_ours(args, name, call, compiled, info, timings[name])
    for name, (mode, overrides) in variants.items():
        if overrides:  # the A/B: paired by round with the plain mode, in the same process
            result.update(_ratio_report(f"{name}_vs_{mode}", timings[name], timings[mode]))
    result["peak_after"] = peak_memory_bytes()
    if args.no_reference:
        return result
    if hf is None:
        result["hf_reference"] = "skipped: torch/transformers not installed"
        return result
    _, hf_info, hf_device_peak = hf
    hf_timing, hf_info = timings["hf_reference"], {**hf_info, **hf_device_peak()}
    result["hf_reference"] = {**hf_info, **hf_timing,
                              "images_per_s": hf_info["images_per_step"] / hf_timing["median_s"]}
    for name in variants:
        # Paired per round (see `paired_ratio`); the CPU-time ratio is robust to other load too.
        result.update(_ratio_report(f"{name}_vs_hf", timings[name], hf_timing))
        result[f"{name}_vs_hf_cpu"] = timings[name]["cpu_median_s"] / hf_timing["cpu_median_s"]
    return result
