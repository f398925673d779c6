"""Builds a dataset's TFDS array_record copy (encoded bytes, no TensorFlow) from its raw folder.

  python launch/prepare_data.py --dataset uavseg --raw /data/uavseg --splits /data/uavseg/splits --out /data/tfds
  python launch/prepare_data.py --dataset custom --num-classes 5 --raw /data/mine --out /data/tfds

Every image named by a <split>/{labeled,unlabeled}.txt under --splits goes into the 'train' split,
val.txt into 'val'; each file is validated as training reads it (an error names the file and list
line; --skip-invalid skips and reports instead). A build of the dataset that exists in --out is
refused (TFDS would keep it unchanged); --overwrite rebuilds it, keeping the old one until the new
one is complete. Train from it with `--config.data.source tfds --config.data.tfds_dir <out>` (the
config's split lists pick the records).
Prints a progress bar, then a summary: records per split, images per split list, class pixel histogram.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import glob  # noqa: E402
import json  # noqa: E402

from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import one_line_errors  # noqa: E402


def format_summary(summary: dict) -> str:
    """Human-readable table of a build summary (counts, lists, class pixel histogram)."""
    lines = [f"built {summary['dataset']} -> {summary['out']}"]
    for subset, n in summary["records"].items():
        lines.append(f"  {subset:<6} {n:>7} records")
    for list_file, n in sorted(summary.get("lists", {}).items()):
        lines.append(f"  {list_file:<30} {n:>7} images")
    lines.append(f"  skipped: {len(summary['skipped'])}")
    for problem in summary["skipped"]:
        lines.append(f"    {problem}")
    lines.append("  class pixel histogram (fraction of mask pixels, train / val):")
    totals = {s: max(1, sum(v) + summary["ignore_pixels"].get(s, 0)) for s, v in summary["class_pixels"].items()}
    for k, name in enumerate(summary["class_names"]):
        cells = "  ".join(f"{summary['class_pixels'][s][k] / totals[s]:7.4f}" for s in summary["class_pixels"])
        lines.append(f"    {k:>3} {name:<20} {cells}")
    ignore = "  ".join(f"{summary['ignore_pixels'].get(s, 0) / totals[s]:7.4f}" for s in summary["class_pixels"])
    lines.append(f"    255 {'(ignore)':<20} {ignore}")
    return "\n".join(lines)


def main(argv=None) -> dict:
    from mofgseg_jax.data import tfds_builder
    from mofgseg_jax.data.specs import load_spec
    from mofgseg_jax.data.splits import read_list

    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", required=True, choices=sorted(tfds_builder.BUILDERS))
    parser.add_argument("--raw", required=True, help="raw dataset root (the paths in the lists are relative to it)")
    parser.add_argument("--splits", default="", help="folder of <split>/{labeled,unlabeled}.txt + val.txt "
                        "(default <raw>/splits)")
    parser.add_argument("--out", required=True, help="TFDS data_dir to write (use as data.tfds_dir)")
    parser.add_argument("--num-classes", type=int, default=0, help="custom datasets: number of classes")
    parser.add_argument("--class-names", default="", help="custom datasets: comma-separated names")
    parser.add_argument("--skip-invalid", action="store_true", help="skip bad files and report them")
    parser.add_argument("--overwrite", action="store_true", help="rebuild this dataset's build in --out if "
                        "one exists (default: refuse)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args(argv)

    splits_dir = args.splits or os.path.join(args.raw, "splits")
    names = tuple(n for n in args.class_names.split(",") if n)
    spec = load_spec(args.dataset, num_classes=args.num_classes, class_names=names)
    summary = tfds_builder.build(args.dataset, args.raw, splits_dir, args.out, spec=spec,
                                 skip_invalid=args.skip_invalid, overwrite=args.overwrite)
    summary["lists"] = {os.path.relpath(f, splits_dir): len(read_list(f, allow_empty=True))
                        for f in glob.glob(os.path.join(splits_dir, "**", "*.txt"), recursive=True)}
    print(json.dumps(summary, indent=2) if args.json else format_summary(summary))
    return summary


if __name__ == "__main__":
    with one_line_errors():
        main()
