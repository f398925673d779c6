"""Writes labelled/unlabelled/val split lists in the published format, deterministically from a seed.

  python launch/make_splits.py --root /data/mine --ratios 1_16,1_8,1_4,1_2 --seed 0
  python launch/make_splits.py --root /data/voc --dataset pascal --train-list train_aug.txt --val-list val.txt

Train images come from the dataset layout's train folders (gt_jpg/train + label_png/train by default)
or from an existing `--train-list`; val from the val folders or `--val-list`. Writes
<out>/<ratio>/{labeled,unlabeled}.txt and <out>/val.txt (default out: <root>/splits); a list that
exists there ends the run before anything is written, unless --overwrite. One seeded permutation
serves all ratios, so 1/16 ⊂ 1/8 ⊂ 1/4. A ratio is 'A_B' (fraction), a count, or 'all'.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402

from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import InputError, one_line_errors  # noqa: E402


def main(argv=None) -> None:
    from mofgseg_jax import outputs
    from mofgseg_jax.data.specs import available_specs, load_spec
    from mofgseg_jax.data.splits import make_splits, read_list, scan_layout, split_lists, write_splits

    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", required=True, help="dataset root (list paths are relative to it)")
    parser.add_argument("--dataset", default="custom", choices=available_specs(), help="layout to scan")
    parser.add_argument("--ratios", default="1_16,1_8,1_4,1_2", help="comma-separated split names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default="", help="splits folder to write (default <root>/splits)")
    parser.add_argument("--train-list", default="", help="take train pairs from this list instead of scanning")
    parser.add_argument("--val-list", default="", help="take val pairs from this list instead of scanning")
    parser.add_argument("--overwrite", action="store_true", help="replace split lists that exist in --out")
    args = parser.parse_args(argv)

    layout = load_spec(args.dataset, num_classes=1 if args.dataset == "custom" else 0).layout

    def pairs(subset: str, list_file: str):
        if list_file:
            return [(e.image, e.mask) for e in read_list(list_file)]
        if subset == "val" and layout["val"]["images"] == layout["train"]["images"]:
            raise InputError(f"--dataset {args.dataset}: train and val images share one folder "
                             f"({layout['val']['images']}); pass --train-list and --val-list")
        return scan_layout(args.root, layout[subset]["images"], layout[subset]["masks"],
                           layout["image_ext"], layout["mask_ext"])

    train = pairs("train", args.train_list)
    val = pairs("val", args.val_list)
    out = args.out or os.path.join(args.root, "splits")
    splits = make_splits(train, [r for r in args.ratios.split(",") if r], seed=args.seed)
    outputs.check_writable(out, "--out")
    # Published lists live in <root>/splits: replacing one would silently change every later result.
    outputs.refuse_existing(list(split_lists(out, splits, val)), "--out", overwrite=args.overwrite)
    write_splits(out, splits, val=val, overwrite=args.overwrite)
    for ratio, parts in splits.items():
        print(f"{out}/{ratio}: {len(parts['labeled'])} labelled, {len(parts['unlabeled'])} unlabelled")
    print(f"{out}/val.txt: {len(val)} images")


if __name__ == "__main__":
    with one_line_errors():
        main()
