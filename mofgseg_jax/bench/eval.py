"""Evaluation benchmark (issue 8): throughput of `train/evaluate.py`'s jitted eval step.

    python launch/benchmark.py eval                                # MiT-B0, sliding window, pad 512
    python launch/benchmark.py eval --backbone b5 --pad 1024 --crop 513 --batch 2 --dtype bfloat16
    python launch/benchmark.py eval --backbone b5 --pad 620x2026 --mode original   # TAS500, unpadded

Times `make_eval_step` (shard_map under jit over every device) on a synthetic padded validation batch
(random images of `--height` x `--width` inside a `--pad` canvas, `N` for a square or `HxW` as
`data.eval_pad_size`; 14 classes): compile time, median/p90 over `--iters` calls after warm-up,
images/s, XLA FLOPs per image (for the sliding window: XLA's count of one window's forward times the
windows run, as XLA counts a loop's body once).
`--models 2` scores the student and the teacher in one call, as training's validation does.
"""

from __future__ import annotations

import argparse
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mofgseg_jax import cli
from mofgseg_jax.bench.common import canvas_arg, model_config, time_calls, xla_flops


def _parse(argv: list[str]) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="benchmark.py eval", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--backbone", default="b0")
    p.add_argument("--classes", type=int, default=14)
    p.add_argument("--mode", default="sliding_window", choices=("original", "center_crop", "sliding_window"))
    p.add_argument("--crop", type=int, default=256, help="window / centre-crop size")
    p.add_argument("--pad", type=canvas_arg, default=(512, 512),
                   help="validation canvas (data.eval_pad_size): N (square) or HxW, e.g. 620x2026")
    p.add_argument("--height", type=int, default=0, help="image height inside the canvas (0 = pad)")
    p.add_argument("--width", type=int, default=0, help="image width inside the canvas (0 = pad)")
    p.add_argument("--batch", type=int, default=1, help="global evaluation batch (rounded up to the devices)")
    p.add_argument("--models", type=int, default=2, choices=(1, 2), help="1 = student, 2 = student + teacher")
    p.add_argument("--dtype", default="float32", choices=("float32", "bfloat16"))
    p.add_argument("--smoke", action="store_true", help="the config's tiny ':smoke' model (tests, seconds)")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    return p.parse_args(argv)


def run(argv: list[str]) -> dict[str, Any]:
    from mofgseg_jax.models import build_model
    from mofgseg_jax.train import evaluate as ev
    from mofgseg_jax.train.parallel import make_mesh
    from mofgseg_jax.train.state import init_variables

    args = _parse(argv)
    c = model_config(args)
    model = build_model(c.model)
    start = time.perf_counter()
    variables = jax.block_until_ready(init_variables(model, jax.random.key(0), (1, args.crop, args.crop, 3)))
    init_s = time.perf_counter() - start
    mesh = make_mesh()
    batch_size = ev.local_batch_size(args.batch, len(mesh.local_devices))
    ph, pw = args.pad
    h, w = args.height or ph, args.width or pw
    rs = np.random.RandomState(0)
    host = {"image": rs.randint(0, 256, (batch_size, ph, pw, 3)).astype(np.uint8),
            "label": rs.randint(0, args.classes, (batch_size, ph, pw)).astype(np.uint8),
            "height": np.full((batch_size,), h, np.int32), "width": np.full((batch_size,), w, np.int32),
            "valid": np.ones((batch_size,), bool)}
    sharding = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    batch = {k: jax.make_array_from_process_local_data(sharding, v) for k, v in host.items()}
    step = ev.make_eval_step(model, mesh, mode=args.mode, crop_size=args.crop, num_classes=args.classes,
                             stride_ratio=float(c.eval.window_stride_ratio))
    variables_list = tuple([variables] * args.models)
    start = time.perf_counter()
    compiled = step.lower(variables_list, batch).compile()
    compile_s = time.perf_counter() - start
    flops, windows = xla_flops(compiled), None
    if flops and args.mode == "sliding_window":
        # XLA counts the window loop's body once, so count the forwards: one per window that starts
        # inside the images (the others are skipped) and model, each on this device's share.
        origins = ev.window_origins(ph, pw, args.crop, float(c.eval.window_stride_ratio))
        windows = sum(1 for r, col in origins if r < h and col < w)
        window = jax.ShapeDtypeStruct((batch_size // len(mesh.local_devices), args.crop, args.crop, 3), jnp.float32)
        forward = xla_flops(jax.jit(ev.logits_fn_for(model, variables)).lower(window).compile())
        flops = forward and forward * windows * args.models
    if flops:
        flops *= jax.device_count()  # the per-device program runs on every device
    timing = time_calls(lambda: step(variables_list, batch), warmup=args.warmup, iters=args.iters)
    timing["first_call_s"] = timing.pop("compile_s")
    out: dict[str, Any] = {
        "config": {"backbone": args.backbone, "classes": args.classes, "mode": args.mode, "crop": args.crop,
                   "pad": ph if ph == pw else [ph, pw], "image_hw": [h, w], "batch": batch_size, "models": args.models,
                   "dtype": args.dtype, "smoke": bool(args.smoke)},
        "init_s": init_s, "compile_s": compile_s, **timing,
        "images_per_s": batch_size / timing["median_s"],
        "model_images_per_s": batch_size * args.models / timing["median_s"]}
    if windows is not None:
        out["windows_per_image"] = windows
    if flops:
        out["flops_per_call"] = flops
        out["flops_per_image_per_model"] = flops / (batch_size * args.models)
        out["achieved_gflops_per_s"] = flops / timing["median_s"] / 1e9
    return out
