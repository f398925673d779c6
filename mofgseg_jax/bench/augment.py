"""Benchmark: on-device `perturb_unlabeled` vs the published per-sample PIL round trip.

  python launch/benchmark.py augment [--size 256] [--batch_sizes 2,4] [--mix_mode cutout]

Both sides start from the same float [0, 1] images, int pseudo-labels and confidences and return
arrays of the same kind. The reference is what the published code does per sample on the host:
to PIL, random rescale (BILINEAR / NEAREST) + reflect pad + random crop, cutout, ColorJitter through
`ImageEnhance` (brightness, contrast, colour) and an HSV hue shift in random order, `ImageFilter`
Gaussian blur, flip, back to arrays. (The published loop does two such round trips per step, with
the mixing in between on tensors; one round trip here makes the reference, if anything, faster.)
"""

from __future__ import annotations

import argparse
import functools
import random
from typing import Any

import jax
import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from mofgseg_jax import cli
from mofgseg_jax.augment import perturb_unlabeled
from mofgseg_jax.bench.common import time_calls, time_interleaved

IGNORE = 255
# The published cutout zeroes the normalised tensor; its next PIL round trip (x * 255, truncated to
# uint8) makes that the ImageNet mean colour.
CUTOUT_FILL_U8 = (123, 116, 103)


def _pil_hue(img: Image.Image, shift: float) -> Image.Image:
    # torchvision's PIL `adjust_hue`: uint8 hue channel shifted with wrap-around.
    h, s, v = img.convert("HSV").split()
    np_h = np.asarray(h, np.uint8) + np.uint8(int(shift * 255) % 256)
    return Image.merge("HSV", (Image.fromarray(np_h.astype(np.uint8)), s, v)).convert("RGB")


def pil_perturb_sample(rng: random.Random, image01: np.ndarray, label: np.ndarray, conf: np.ndarray
                       ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One sample through the published PIL transform. image01 `[H, W, 3]`, label/conf `[H, W]`."""
    height, width = label.shape
    img = Image.fromarray((image01 * 255.0).round().astype(np.uint8))
    lbl = Image.fromarray(label.astype(np.uint8))
    cf = Image.fromarray(conf.astype(np.float32))
    # Random rescale, pad right/bottom (reflect / 255 / 0), random crop.
    s = rng.uniform(0.5, 2.0)
    sh, sw = int(height * s), int(width * s)
    img = np.asarray(img.resize((sw, sh), Image.BILINEAR))
    lbl = np.asarray(lbl.resize((sw, sh), Image.NEAREST))
    cf = np.asarray(cf.resize((sw, sh), Image.NEAREST))
    if sh < height or sw < width:
        pad = ((0, max(height - sh, 0)), (0, max(width - sw, 0)))
        img = np.pad(img, pad + ((0, 0),), mode="reflect")
        lbl = np.pad(lbl, pad, constant_values=IGNORE)
        cf = np.pad(cf, pad, constant_values=0.0)
    y0 = rng.randint(0, img.shape[0] - height)
    x0 = rng.randint(0, img.shape[1] - width)
    img = img[y0:y0 + height, x0:x0 + width].copy()
    lbl = lbl[y0:y0 + height, x0:x0 + width].copy()
    cf = cf[y0:y0 + height, x0:x0 + width].copy()
    # Cutout (published generate_cutout_mask).
    w = rng.randrange(width // 2 + 1, width)
    h = int(round(height * width / 2 / w))
    cx, cy = rng.randint(0, width - w), rng.randint(0, height - h)
    img[cy:cy + h, cx:cx + w] = CUTOUT_FILL_U8
    lbl[cy:cy + h, cx:cx + w] = IGNORE
    cf[cy:cy + h, cx:cx + w] = 0
    out = Image.fromarray(img)
    if rng.random() < 0.8:
        ops = [lambda x, f=rng.uniform(0.75, 1.25): ImageEnhance.Brightness(x).enhance(f),
               lambda x, f=rng.uniform(0.75, 1.25): ImageEnhance.Contrast(x).enhance(f),
               lambda x, f=rng.uniform(0.75, 1.25): ImageEnhance.Color(x).enhance(f),
               lambda x, f=rng.uniform(-0.25, 0.25): _pil_hue(x, f)]
        rng.shuffle(ops)
        for op in ops:
            out = op(out)
    if rng.random() < 0.5:
        out = out.filter(ImageFilter.GaussianBlur(radius=rng.uniform(0.15, 1.15)))
    out_img = np.asarray(out, np.float32) / 255.0
    if rng.random() < 0.5:
        out_img, lbl, cf = out_img[:, ::-1], lbl[:, ::-1], cf[:, ::-1]
    return np.ascontiguousarray(out_img), lbl.astype(np.int32), np.ascontiguousarray(cf)


def run(argv: list[str]) -> dict[str, Any]:
    parser = cli.ArgumentParser(prog="benchmark.py augment", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=256, help="square crop size")
    parser.add_argument("--batch_sizes", default="2,4", help="comma-separated unlabelled batch sizes")
    parser.add_argument("--mix_mode", default="cutout", choices=("cutout", "cutmix", "classmix", "none"))
    parser.add_argument("--num_classes", type=int, default=14)
    parser.add_argument("--iters", type=int, default=40, help="timed calls of the jitted function")
    parser.add_argument("--ref_iters", type=int, default=20, help="timed calls of the PIL reference")
    parser.add_argument("--rounds", type=int, default=10, help="alternating rounds of both sides")
    args = parser.parse_args(argv)

    results: dict[str, Any] = {"size": args.size, "mix_mode": args.mix_mode,
                               "num_classes": args.num_classes}
    fn = jax.jit(functools.partial(perturb_unlabeled, mix_mode=args.mix_mode, num_classes=args.num_classes))
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        rng = np.random.default_rng(batch)
        images = rng.random((batch, args.size, args.size, 3), dtype=np.float32)
        labels = rng.integers(0, args.num_classes, (batch, args.size, args.size)).astype(np.int32)
        conf = rng.random((batch, args.size, args.size), dtype=np.float32)
        dev = [jax.device_put(x) for x in (images, labels, conf)]
        keys = iter(jax.random.split(jax.random.key(0), 1000))

        call = lambda: fn(next(keys), *dev)  # noqa: E731
        py_rng = random.Random(0)
        reference = lambda: [pil_perturb_sample(py_rng, images[i], labels[i], conf[i])  # noqa: E731
                             for i in range(batch)]
        # Alternate short rounds of both sides, so that load from other processes on a shared
        # machine hits them alike; report the median over all timed calls of each side.
        compile_s = time_calls(call, warmup=2, iters=1)["compile_s"]
        jax_iters, ref_iters = max(args.iters // args.rounds, 1), max(args.ref_iters // args.rounds, 1)
        timing = time_interleaved({"pil": reference, "jax": call}, rounds=args.rounds,
                                  iters={"pil": ref_iters, "jax": jax_iters})
        results[f"batch{batch}"] = {
            "jax_compile_s": compile_s, "jax_median_s": timing["jax"]["median_s"],
            "jax_timed_calls": timing["jax"]["timed_iters"],
            "pil_median_s": timing["pil"]["median_s"], "pil_timed_calls": timing["pil"]["timed_iters"],
            "speedup_vs_pil": timing["pil"]["median_s"] / timing["jax"]["median_s"],
            # process CPU time (all threads): less sensitive to other load
            "jax_cpu_s_per_call": timing["jax"]["cpu_median_s"],
            "pil_cpu_s_per_call": timing["pil"]["cpu_median_s"]}
    return results
