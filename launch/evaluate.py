"""Evaluates a trained run: python launch/evaluate.py --workdir runs/demo

  --workdir DIR [--which best|latest|STEP]   a training run (default: its best checkpoint)
  --checkpoint DIR                           or one step directory (DIR/checkpoints/<step>)
  --config configs/<name>.py                 optional: default is the config stored with the run;
                                             then --config.eval.mode sliding_window etc. work
  --mode original|center_crop|sliding_window, --data_root DIR   quick overrides of the stored config
  --output FILE                              JSON path (default: <workdir>/eval_step<N>_<mode>.json,
                                             or next to the checkpoint); checked before the model loads
  --overwrite                                replace an existing --output file (default: refuse)
Prints and writes {'step', 'mode', 'student': {'miou', 'iou': {class: IoU}}, 'teacher': {...}}: both
networks every time, so the default file name holds the step and the mode.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mofgseg_jax import cli, outputs  # noqa: E402
from mofgseg_jax.errors import InputError  # noqa: E402

config_flags.DEFINE_config_file("config", None, "config file (default: the run's stored config)", lock_config=True)
flags.DEFINE_string("workdir", "", "training run directory")
flags.DEFINE_string("checkpoint", "", "a checkpoint step directory (instead of --workdir)")
flags.DEFINE_string("which", "best", "with --workdir: 'best', 'latest' or a step number")
flags.DEFINE_enum("mode", None, ["original", "center_crop", "sliding_window"], "override eval.mode")
flags.DEFINE_string("data_root", "", "override data.root")
flags.DEFINE_string("output", "", "JSON output path (default: <workdir>/eval_step<N>_<mode>.json)")
flags.DEFINE_bool("overwrite", False, "replace an existing --output file (default: refuse)")


def default_output(step_dir: str, workdir: str, mode: str) -> str:
    """`<workdir>/eval_step<N>_<mode>.json`, without a workdir beside the checkpoint's step folder."""
    step = os.path.basename(os.path.normpath(step_dir))
    name = f"eval_{'step' if step.isdigit() else ''}{step}_{mode}.json"
    return os.path.join(workdir or os.path.dirname(os.path.abspath(step_dir)), name)


def check_output(output: str, overwrite: bool) -> None:
    """Refuses a folder and an existing file (unless `overwrite`); creates nothing."""
    if os.path.isdir(output):
        raise InputError(f"--output {output}: is a folder; give a file path, e.g. {os.path.join(output, 'eval.json')}")
    outputs.refuse_existing([output], "--output", overwrite=overwrite)


def main(argv):
    del argv  # parse_flags refuses left-over arguments
    cli.setup_logging()
    import json  # noqa: PLC0415

    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415

    from mofgseg_jax.data.pipeline import check_val_canvas, make_val_batches  # noqa: PLC0415
    from mofgseg_jax.data.specs import load_spec  # noqa: PLC0415
    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train import evaluate as ev  # noqa: PLC0415
    from mofgseg_jax.train import inference  # noqa: PLC0415
    from mofgseg_jax.train.compile_cache import enable_for_config  # noqa: PLC0415
    from mofgseg_jax.train.parallel import make_mesh, replicate_on_mesh  # noqa: PLC0415

    f = flags.FLAGS
    step_dir = inference.find_checkpoint(workdir=f.workdir, checkpoint=f.checkpoint, which=f.which)
    stored = inference.load_config(step_dir)
    config = inference.run_config(f.config, stored, f.workdir)
    config.unlock()
    if f.mode:
        config.eval.mode = f.mode
    if f.data_root:
        config.data.root = f.data_root
    elif config.data.root and not os.path.isdir(str(config.data.root)):
        # A run stores data.root as given, often relative to where training ran (demo_data).
        raise InputError(f"data.root={config.data.root!r} is not a folder here "
                         f"({os.getcwd()}): run from where training ran, or pass --data_root")
    # Before the model and the data: a bad --output ends the run now, not after the evaluation.
    output = f.output or default_output(step_dir, f.workdir, str(config.eval.mode))
    check_output(output, f.overwrite)
    variables, _, step = inference.load_variables(step_dir)
    inference.check_model(config, variables, step_dir, cli.config_source(), stored)  # before the data
    spec = load_spec(config.data.name, num_classes=int(config.model.num_classes),
                     class_names=tuple(config.data.class_names or ()), ignore_index=int(config.data.ignore_index))
    check_val_canvas(config.data)  # else found part way through the evaluation
    # Created only now: a run refused for its checkpoint or config leaves no folder behind.
    outputs.check_writable(os.path.dirname(os.path.abspath(output)), "--output")
    enable_for_config(config)  # the eval step that training compiled, if it left it in the cache
    mesh = make_mesh()
    model = build_model(config.model, bn_axis_name="data")
    eval_step = ev.make_eval_step(model, mesh, **ev.prediction_settings(config, spec.num_classes),
                                  ignore_index=int(config.data.ignore_index))
    batches = make_val_batches(config.data, process_index=jax.process_index(), process_count=jax.process_count())
    placed = replicate_on_mesh((variables["student"], variables["teacher"]), mesh)
    result = ev.evaluate(eval_step, placed, batches, mesh=mesh, num_classes=spec.num_classes, progress=True)
    report = {"checkpoint": os.path.abspath(step_dir), "step": step, "mode": str(config.eval.mode),
              "dataset": config.data.name, "num_classes": spec.num_classes}
    for name in ("student", "teacher"):
        report[name] = {"miou": round(result[name]["miou"], 4),
                        "iou": {c: round(v, 4) for c, v in zip(spec.class_names, result[name]["iou"])}}
    if jax.process_index() == 0:
        text = json.dumps(report, indent=2)
        print(text)
        with outputs.open_new(output, "--output", overwrite=f.overwrite) as fh:
            fh.write(text + "\n")
        print(f"written to {output}", file=sys.stderr)
    del np


if __name__ == "__main__":
    cli.run(main)
