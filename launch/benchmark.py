"""Benchmarks, one subcommand per part; each prints one JSON object.

  python launch/benchmark.py losses   # contrastive/supervised losses vs loop references
  python launch/benchmark.py augment  # on-device perturbation vs per-sample PIL round trip
  python launch/benchmark.py data     # images/s of each input stream
  python launch/benchmark.py step     # full semi / supervised train step vs Hugging Face
  python launch/benchmark.py eval     # evaluation throughput
  python launch/benchmark.py peak     # attainable matmul / 3x3-conv FLOP rate (floor for a step)

`python launch/benchmark.py PART --help` lists each part's options.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import argparse  # noqa: E402
import importlib  # noqa: E402
import json  # noqa: E402
import time  # noqa: E402

from mofgseg_jax import cli  # noqa: E402
from mofgseg_jax.errors import one_line_errors  # noqa: E402

PARTS = ("losses", "augment", "data", "step", "eval", "peak")


def main(argv=None) -> None:
    argv = sys.argv[1:] if argv is None else list(argv)
    # No help option here: `PART --help` must reach the part's own parser.
    parser = cli.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter,
                                add_help=False)
    parser.add_argument("part", choices=PARTS)
    if not argv or argv[0] in ("-h", "--help"):
        parser.print_help()
        return
    args, rest = parser.parse_known_args(argv)
    # Each part lives in mofgseg_jax/bench/<part>.py with `run(argv) -> dict`.
    module = importlib.import_module(f"mofgseg_jax.bench.{args.part}")
    from mofgseg_jax.bench.common import device_info, load_average, peak_memory_bytes

    # Every part's JSON has the same frame: what ran, where, when, under how much other load.
    started = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    load_start = load_average()
    body = module.run(rest)
    result = {"benchmark": args.part, "utc": started, **device_info(), **body, **peak_memory_bytes(),
              "load_avg_start_end": [load_start, load_average()]}
    print(json.dumps(result, indent=2, sort_keys=True))


if __name__ == "__main__":
    from mofgseg_jax.train.host_memory import reexec_with_huge_page_malloc

    reexec_with_huge_page_malloc()  # before any work: glibc reads its tunables at start only
    with one_line_errors():
        main()
