"""Trains MOFGSeg: python launch/train.py --config configs/demo.py --workdir runs/demo

  --config configs/<name>.py[:variant]   a config file and its variant (semi, sup, smoke, ...)
  --config.<key> value                   override any key, e.g. --config.optim.lr 0.01
  --workdir DIR                          checkpoints, TensorBoard events, config.json; an existing
                                         workdir is resumed from its latest checkpoint

SIGTERM (e.g. a scheduler's preemption notice) or Ctrl-C: the current step finishes and is saved, then
the run stops (exit status 128 + the signal's number); the same command resumes. A second Ctrl-C
stops at once.

Multi-host: start one process per host with the same flags; jax.distributed.initialize() picks up
the cluster (SLURM, TPU, or JAX_COORDINATOR_ADDRESS / JAX_NUM_PROCESSES / JAX_PROCESS_ID).
"""

import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import app, flags, logging  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mofgseg_jax.errors import one_line_errors  # noqa: E402

config_flags.DEFINE_config_file("config", None, "config file (configs/<name>.py[:variant])", lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (created; resumed when it holds checkpoints)")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-process runs)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import jax  # noqa: PLC0415 (after flag parsing: --help stays instant)

    if flags.FLAGS.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    # Our progress and results at INFO; libraries (orbax logs every save at INFO) at WARNING.
    import logging as py_logging  # noqa: PLC0415

    logging.set_verbosity(logging.WARNING)
    handler = py_logging.StreamHandler(sys.stderr)
    handler.setFormatter(py_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
    ours = py_logging.getLogger("mofgseg")
    ours.addHandler(handler)
    ours.setLevel(py_logging.INFO)
    ours.propagate = False
    from mofgseg_jax.train.loop import train_and_evaluate  # noqa: PLC0415

    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    if summary.get("stopped_by"):  # SIGTERM / Ctrl-C: saved and stopped; exit as a signal would
        return 128 + signal.Signals[summary["stopped_by"]]


def parse_flags(argv):
    """absl parsing, with config errors (unknown key, bad variant, wrong type) as one line."""
    try:
        return flags.FLAGS(argv)
    except flags.Error as e:
        sys.exit(f"error: {e}\nPass --helpshort or --helpfull to see help on flags.")
    except (AttributeError, KeyError, ValueError, TypeError) as e:
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        message = " ".join(str(e).replace("\\n", "\n").replace("\\'", "").replace("'", "").split())
        sys.exit(f"error: bad --config override ({' '.join(bad) or 'in the config file'}): unknown key or value: {message}")


if __name__ == "__main__":
    from mofgseg_jax.train.host_memory import reexec_with_huge_page_malloc

    reexec_with_huge_page_malloc()  # before any work: glibc reads its tunables at start only
    with one_line_errors():
        app.run(main, flags_parser=parse_flags)
