"""Input-pipeline throughput: images/s of the labelled, unlabelled, combined train and validation
streams (host only: decode + augment + batch), for the folder and/or TFDS source.

  python launch/benchmark.py data                                  # demo data, 96px images, crop 64
  python launch/benchmark.py data --size 512 --crop-size 321 --num-workers 2 --source both
  python launch/benchmark.py data --root /data/uavseg --name uavseg --split 1_8 --crop-size 513
  python launch/benchmark.py data --root /data/tas500 --name tas500 --crop-size 513 --eval-pad-size 620x2026
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from typing import Any, Iterator

from configs.common import base_config
from mofgseg_jax import cli
from mofgseg_jax.data import demo, pipeline
from mofgseg_jax.data.specs import load_spec


def _rate(it: Iterator, count_fn, *, warmup: int, batches: int) -> dict[str, float]:
    """Images/s over `batches` batches after `warmup` (first batches pay for thread/worker start-up)."""
    for _ in range(warmup):
        next(it)
    start, images = time.perf_counter(), 0
    for _ in range(batches):
        images += count_fn(next(it))
    seconds = time.perf_counter() - start
    return {"images_per_s": round(images / seconds, 1), "batches": batches, "seconds": round(seconds, 3)}


def _measure(data_cfg, args) -> dict[str, Any]:
    out = {}
    streams = pipeline.train_streams(data_cfg, seed=0)
    for name, ds in streams.items():
        it = pipeline.iterate(ds, num_workers=args.num_workers, num_threads=args.num_threads, prefetch=args.prefetch)
        out[name] = _rate(it, lambda b: len(b["image"]), warmup=args.warmup, batches=args.batches)
    train = pipeline.make_train_iterator(data_cfg, seed=0, num_threads=args.num_threads, prefetch=args.prefetch)
    out["train"] = _rate(train, lambda b: len(b["labeled"]["image"]) + len(b["unlabeled"]["image"]),
                         warmup=args.warmup, batches=args.batches)
    val = pipeline.make_val_batches(data_cfg, num_threads=args.num_threads, prefetch=args.prefetch)
    list(val)  # warm pass (file cache); then time a whole pass, start-up included, as evaluation sees it
    start = time.perf_counter()
    images = sum(int(b["valid"].sum()) for b in val)
    seconds = time.perf_counter() - start
    out["val"] = {"images_per_s": round(images / seconds, 1), "batches": len(val), "seconds": round(seconds, 3)}
    return out


def run(argv: list[str]) -> dict[str, Any]:
    from mofgseg_jax.bench.common import canvas_arg  # noqa: PLC0415 (imports jax; the rest needs none)

    parser = cli.ArgumentParser(prog="benchmark.py data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", default="", help="dataset root; default: generate demo data in a temp dir")
    parser.add_argument("--name", default="demo", help="data_specs name of --root")
    parser.add_argument("--split", default="1_8")
    parser.add_argument("--size", type=int, default=96, help="generated demo image side")
    parser.add_argument("--eval-pad-size", type=canvas_arg, default=None,
                        help="validation canvas: N (square) or HxW (height x width); default: --size for "
                             "generated data, data.eval_pad_size of configs/common.py with --root")
    parser.add_argument("--num-train", type=int, default=256, help="generated demo train images")
    parser.add_argument("--num-val", type=int, default=64, help="generated demo val images")
    parser.add_argument("--crop-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=8, help="labelled = unlabelled = val batch")
    parser.add_argument("--batches", type=int, default=20, help="timed batches per stream")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--num-workers", type=int, default=0, help="grain worker processes")
    parser.add_argument("--num-threads", type=int, default=4)
    parser.add_argument("--prefetch", type=int, default=8)
    parser.add_argument("--source", choices=("folder", "tfds", "both"), default="both")
    args = parser.parse_args(argv)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if not root:
            root = os.path.join(tmp, "demo")
            demo.generate(root, num_train=args.num_train, num_val=args.num_val, size=args.size,
                          ratios=(args.split,))
        config = base_config()
        config.model.num_classes = load_spec(args.name).num_classes if args.name != "custom" else 0
        d = config.data
        d.name, d.root, d.split, d.crop_size = args.name, root, args.split, args.crop_size
        d.batch_size_labeled = d.batch_size_unlabeled = d.eval_batch_size = args.batch_size
        if args.eval_pad_size:
            d.eval_pad_size = args.eval_pad_size
        elif not args.root:
            d.eval_pad_size = max(args.size, 1)
        d.num_workers = args.num_workers
        result: dict[str, Any] = {"crop_size": args.crop_size, "batch_size": args.batch_size,
                                  "num_workers": args.num_workers, "num_threads": args.num_threads,
                                  "dataset": args.name, "image_size": args.size if not args.root else None,
                                  "cpu_count": os.cpu_count()}
        sources = ("folder", "tfds") if args.source == "both" else (args.source,)
        for source in sources:
            d.source = source
            if source == "tfds":
                from mofgseg_jax.data.tfds_builder import build

                d.tfds_dir = os.path.join(tmp, "tfds")
                start = time.perf_counter()
                with contextlib.redirect_stdout(sys.stderr):  # TFDS prints to stdout; ours is the JSON
                    build(args.name, root, os.path.join(root, "splits"), d.tfds_dir, progress=False)
                result["tfds_build_s"] = round(time.perf_counter() - start, 2)
            result[source] = _measure(d, args)
    return result
