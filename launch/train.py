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

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mofgseg_jax import cli  # noqa: E402

config_flags.DEFINE_config_file("config", None, "config file (configs/<name>.py[:variant])", lock_config=True)
flags.DEFINE_string("workdir", None, "run directory (created; resumed when it holds checkpoints)")
flags.DEFINE_bool("distributed", False, "call jax.distributed.initialize() (multi-process runs)")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv):
    del argv  # parse_flags refuses left-over arguments
    import jax  # noqa: PLC0415 (after flag parsing: --help stays instant)

    if flags.FLAGS.distributed or os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize()
    cli.setup_logging()
    from mofgseg_jax.train.loop import train_and_evaluate  # noqa: PLC0415

    summary = train_and_evaluate(flags.FLAGS.config, flags.FLAGS.workdir)
    if summary.get("stopped_by"):  # SIGTERM / Ctrl-C: saved and stopped; exit as a signal would
        return 128 + signal.Signals[summary["stopped_by"]]


if __name__ == "__main__":
    cli.run(main)
