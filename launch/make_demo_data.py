"""Generates the built-in fine-grained demo dataset (seconds, no download).

  python launch/make_demo_data.py --out data/demo
  python launch/make_demo_data.py --out /tmp/hard --stripe-ratio 1.3 --grain-ratio 1.6 --off-family-prob 0.5

Writes gt_jpg/{train,val}, label_png/{train,val} and splits/{1_16,1_8,1_4,all} + splits/val.txt
(see mofgseg_jax/data/demo.py for the classes and the difficulty knobs). --out must be missing or
empty; --overwrite writes into a folder that holds files (same-named files are replaced).
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import json  # noqa: E402

from mofgseg_jax.data import demo  # noqa: E402
from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import one_line_errors  # noqa: E402


def main(argv=None) -> None:
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="dataset root to write (a missing or empty folder)")
    parser.add_argument("--overwrite", action="store_true", help="write into --out even if it holds files")
    parser.add_argument("--seed", type=int, default=0, help="image content seed")
    parser.add_argument("--split-seed", type=int, default=0, help="seed of the labelled/unlabelled partition")
    parser.add_argument("--num-train", type=int, default=512)
    parser.add_argument("--num-val", type=int, default=96)
    parser.add_argument("--size", type=int, default=96, help="image side in pixels")
    parser.add_argument("--splits", default=",".join(demo.DEFAULT_SPLITS), help="comma-separated split names")
    knobs = parser.add_argument_group("difficulty knobs (mofgseg_jax.data.demo.render)")
    knobs.add_argument("--stripe-ratio", type=float, default=1.6, help="coarse/fine stripe period ratio")
    knobs.add_argument("--grain-ratio", type=float, default=2.2, help="coarse/fine noise grain ratio")
    knobs.add_argument("--colour-spread", type=float, default=0.06, help="hue spread within a family")
    knobs.add_argument("--off-family-prob", type=float, default=0.25, help="chance a region takes any hue")
    knobs.add_argument("--noise-std", type=float, default=8.0, help="pixel noise (0..255 units)")
    knobs.add_argument("--warp", type=float, default=10.0, help="region boundary warp in pixels")
    args = parser.parse_args(argv)
    summary = demo.generate(
        args.out, overwrite=args.overwrite, seed=args.seed, split_seed=args.split_seed, num_train=args.num_train,
        num_val=args.num_val, size=args.size, ratios=tuple(args.splits.split(",")), stripe_ratio=args.stripe_ratio,
        grain_ratio=args.grain_ratio, colour_spread=args.colour_spread, off_family_prob=args.off_family_prob,
        noise_std=args.noise_std, warp=args.warp, flag="--out")
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    with one_line_errors():
        main()
