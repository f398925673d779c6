"""Loading a trained run for evaluation and prediction (launch/evaluate.py, launch/predict.py).

A run is named by its workdir (`--workdir`, the best or latest checkpoint is used) or by one
checkpoint (`--checkpoint <workdir>/checkpoints/<step>`). The config is the one given on the command
line, else the checkpoint's own copy, else `<workdir>/config.json`.
"""

from __future__ import annotations

import json
import os
from typing import Any

import ml_collections

from mofgseg_jax.config_checks import check_config_values
from mofgseg_jax.errors import InputError, InputNotFoundError
from mofgseg_jax.train import checkpoint as ckpt

CHOICES = ("best", "latest")


def find_checkpoint(*, workdir: str = "", checkpoint: str = "", which: str = "best") -> str:
    """The step directory to load: `checkpoint` (a step dir, or the latest step of the checkpoints
    folder or workdir it names), or the best/latest step of `workdir`."""
    if checkpoint and workdir:
        # The checkpoint was loaded and the default output went into --workdir: one run's scores
        # filed in another's folder.
        raise InputError(f"--checkpoint {checkpoint} and --workdir {workdir}: give one of them (the step "
                         "directory, or the run with --which)")
    if checkpoint:
        if os.path.isfile(checkpoint):
            raise InputError(f"--checkpoint {checkpoint}: is a file; give a step directory "
                             f"(<workdir>/{ckpt.CHECKPOINT_DIR}/<step>)")
        if not os.path.isdir(checkpoint):
            raise InputNotFoundError(f"--checkpoint {checkpoint}: no such directory")
        return ckpt.resolve_step_dir(checkpoint)
    if not workdir:
        raise InputError("give --workdir (a training run) or --checkpoint (a step directory)")
    if which not in CHOICES and not str(which).isdigit():
        raise InputError(f"--which={which!r}: 'best', 'latest' or a step number")
    directory = os.path.join(workdir, ckpt.CHECKPOINT_DIR)
    if not os.path.isdir(directory):
        raise InputNotFoundError(f"--workdir {workdir}: no {ckpt.CHECKPOINT_DIR}/ folder (not a training run?)")
    manager = ckpt.Checkpointer(workdir, read_only=True)
    try:
        if str(which).isdigit():
            step = int(which)
            if step not in manager.all_steps():
                raise InputNotFoundError(
                    f"--workdir {workdir}: no checkpoint at step {step}; have {manager.all_steps()}")
        else:
            step = manager.best_step() if which == "best" else manager.latest_step()
        saved = manager.all_steps()
    finally:
        manager.close()
    if step is None and saved:
        # `best` ranks by the mIoU stored with a checkpoint; a run stopped before its first
        # evaluation saved some without one. Falling back to the latest would pass off an unevaluated
        # network as the best, so the user chooses.
        raise InputError(f"--workdir {workdir}: checkpoints exist (steps {saved}, latest {saved[-1]}) but none "
                         "has been evaluated yet, so there is no best one; use --which latest (or a step number)")
    if step is None:
        raise InputNotFoundError(f"--workdir {workdir}: no checkpoint saved yet")
    return os.path.join(directory, str(step))


def run_config(given: ml_collections.ConfigDict | None, stored: dict | None, workdir: str = "") -> ml_collections.ConfigDict:
    """The config to use: `given` (command line) > the checkpoint's copy > `<workdir>/config.json`,
    its values checked (`check_config_values`: the keys evaluation and prediction read)."""
    if given is None:
        if stored is None and workdir and os.path.exists(os.path.join(workdir, "config.json")):
            with open(os.path.join(workdir, "config.json")) as f:
                stored = json.load(f)
        if stored is None:
            raise InputError("no config: pass --config configs/<name>.py (the checkpoint holds no copy)")
        given = ml_collections.ConfigDict(_tuples(stored))
    check_config_values(given, training=False)
    return given


def _tuples(value: Any) -> Any:
    """JSON lists back to tuples (configs hold tuples: depths, dims, scale ranges)."""
    if isinstance(value, dict):
        return {k: _tuples(v) for k, v in value.items()}
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def load_config(step_dir: str) -> dict | None:
    """The config stored with a step dir (None if it holds none); its arrays are not read."""
    return ckpt.restore_config(step_dir)


def check_model(config: ml_collections.ConfigDict, variables: dict, step_dir: str, source: str,
                stored: dict | None = None) -> None:
    """Raises InputError when the model that `config` builds has other parameters than the checkpoint
    at `step_dir` holds (`variables` from `load_variables`), naming `source` (how the user gave the
    config), the checkpoint, the first differing parameter and, with the run's `stored` config at
    hand, the model keys that differ. Traces the model's init only (no arrays, under a second for
    B0): without it a mismatch is a flax traceback after the data has been loaded."""
    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from flax import traverse_util  # noqa: PLC0415

    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train.stored_config import MEANING_KEYS, architecture_changes, config_to_dict  # noqa: PLC0415
    from mofgseg_jax.train.state import host_init_shapes  # noqa: PLC0415

    crop = int(config.data.crop_size)  # MiT has no position embedding: any size gives the same shapes
    built = jax.eval_shape(lambda: host_init_shapes(build_model(config.model), (1, crop, crop, 3)))["params"]
    want = {"/".join(k): tuple(v.shape) for k, v in traverse_util.flatten_dict(built).items()}
    got = {"/".join(k): tuple(np.shape(v)) for k, v in traverse_util.flatten_dict(variables["student"]["params"]).items()}
    differing = [k for k in {**want, **got} if want.get(k) != got.get(k)]
    keys = architecture_changes(stored, config_to_dict(config)) if stored is not None else {}
    # Other attention heads keep every shape: only the run's stored config tells them apart.
    if not differing and not any(k in MEANING_KEYS for k in keys):
        return
    named = "; ".join(f"{k} {_tuples(o)!r} in the run, {_tuples(n)!r} given" for k, (o, n) in keys.items())
    if differing:
        name = differing[0]
        first = f"{name}: {got.get(name, 'absent')} in the checkpoint, {want.get(name, 'absent')} from the config"
        detail = f"{named + '; ' if named else ''}{len(differing)} parameter(s) differ, e.g. {first}"
    else:
        detail = f"{named}; the parameters have the same shapes but split into other attention heads"
    raise InputError(f"{source}: builds another model than the checkpoint {step_dir} holds ({detail}); "
                     "leave out --config to use the run's own, or give the config it was trained with")


def load_variables(step_dir: str) -> tuple[dict, dict | None, int]:
    """({'student': variables, 'teacher': variables}, stored config or None, step) of a step dir."""
    return ckpt.restore_variables(step_dir)
