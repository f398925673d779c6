"""Pretrained weights: convert PyTorch / Hugging Face checkpoints and load them into MOFGSeg variables.

`convert_file(src)` reads a checkpoint (see `readers.py`) and maps it (see `convert.py`);
`save_converted(dir, ...)` writes the folder that `config.model.pretrained` names
(`weights.safetensors` with '/'-joined Flax paths + `info.json`); `load_pretrained(path, variables)`
merges a converted folder (or a raw checkpoint file) into freshly initialised variables.
"""

import json
from pathlib import Path
from typing import Any

import jax
import numpy as np
from flax import traverse_util

from mofgseg_jax.errors import InputError
from mofgseg_jax.outputs import open_new
from mofgseg_jax.weights.convert import canonicalize, describe, to_variables
from mofgseg_jax.weights.readers import HF_FILES, CheckpointError, read_state_dict, shown

WEIGHTS_FILE = "weights.safetensors"
INFO_FILE = "info.json"
CLASSIFIER = ("decode_head", "linear_pred")  # the only module whose shape depends on the dataset


def convert_file(src: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(variables {'params','batch_stats'} as nested NumPy, info) from a checkpoint file."""
    try:
        canonical = canonicalize(read_state_dict(src), source=str(src))
    except CheckpointError:
        raise
    except InputError as e:  # canonicalize's: it names the file and tensor (a bare ValueError is a bug)
        raise CheckpointError(str(e)) from None
    info = describe(canonical)
    info["source"] = str(src)
    info["num_tensors"] = len(canonical)
    return to_variables(canonical), info


def save_converted(out_dir: str | Path, variables: dict[str, Any], info: dict[str, Any], *,
                   overwrite: bool = True) -> Path:
    """Writes `out_dir/weights.safetensors` (keys like 'params/backbone/norm1/scale') and info.json;
    a file of them that exists is replaced only if `overwrite` (else `OutputExistsError`, naming
    it, as for a second conversion into the same --out at the same time)."""
    from safetensors.numpy import save

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    flat = traverse_util.flatten_dict(variables, sep="/")
    data = save({k: np.ascontiguousarray(v, dtype=np.float32) for k, v in flat.items()})
    # Each file whole or not at all (`open_new`); the weights last, as a folder without them is
    # no conversion to `read_converted`. safetensors' own save_file also wrote them mode 0600.
    with open_new(str(out_dir / INFO_FILE), "--out", overwrite=overwrite) as f:
        f.write(json.dumps(info, indent=2) + "\n")
    with open_new(str(out_dir / WEIGHTS_FILE), "--out", overwrite=overwrite, binary=True) as f:
        f.write(data)
    return out_dir


def read_converted(path: str | Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(nested variables, info) from a converted folder, or converted on the fly from a checkpoint
    file or a Hugging Face `save_pretrained` folder."""
    path = Path(path)
    if path.is_dir() and not any((path / n).is_file() for n in HF_FILES):
        weights = path / WEIGHTS_FILE
        if not weights.is_file():
            raise CheckpointError(f"{path}: no {WEIGHTS_FILE}; write it with launch/convert_weights.py")
        flat = read_state_dict(weights)  # the checkpoint reader's checks (dtypes, truncation) apply
        info = _read_info(path / INFO_FILE)
        return _nested(flat, weights), info
    return convert_file(path)


def _nested(flat: dict[str, np.ndarray], weights: Path) -> dict[str, Any]:
    """'/'-joined paths -> nested dicts, refusing a path that names a tensor and a module at once
    ('params/x' and 'params/x/y'), on which flax's unflatten_dict fails with an IndexError."""
    tree: dict[str, Any] = {}
    for key, value in flat.items():
        *modules, leaf = key.split("/")
        node = tree
        for part in modules:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                break
        if not isinstance(node, dict) or leaf in node:  # leaf in node: a module, the keys being unique
            raise CheckpointError(f"{weights}: {shown(key)} and another tensor's path make one name both a "
                                  "tensor and a module; convert the weights again")
        node[leaf] = value
    return tree


def _read_info(info_file: Path) -> dict[str, Any]:
    """The converter's description of a converted folder; {} when there is none."""
    if not info_file.is_file():
        return {}
    try:
        info = json.loads(info_file.read_text())
    except (OSError, ValueError, RecursionError) as e:  # RecursionError: arrays or objects nested too deep
        raise CheckpointError(f"{info_file}: unreadable or not JSON ({e}); convert the weights again") from None
    if not isinstance(info, dict):
        raise CheckpointError(f"{info_file}: expected a JSON object, found {type(info).__name__}; "
                              "convert the weights again")
    return info


def load_pretrained(path: str | Path, variables: dict[str, Any], *, reinit_classifier: bool = False
                    ) -> dict[str, Any]:
    """`variables` with every tensor that `path` provides replaced by the pretrained one.

    `path`: a folder written by launch/convert_weights.py, or a checkpoint file. Tensors the
    checkpoint lacks (decoder, boundary module, representation head for backbone-only weights)
    keep their initial values, but a backbone is all or nothing: a checkpoint with fewer blocks
    than the model (mit_b2 into b3, whose widths match) is an error, not random extra blocks.
    A shape mismatch is an error naming the file and tensor; for the classifier (class count
    differs) it keeps the initial classifier when `reinit_classifier`.
    """
    pretrained, info = read_converted(path)
    src = traverse_util.flatten_dict(pretrained)
    dst = traverse_util.flatten_dict(dict(variables))
    for key, value in src.items():
        name = "/".join(key)
        if key not in dst:
            # Typically a block the model lacks: a config whose model.depths (e.g. the demo's
            # (1, 1, 1, 1)) is smaller than the checkpoint's, whatever model.backbone says.
            raise CheckpointError(f"{path}: tensor {name} does not exist in this model (the checkpoint's "
                                  f"depths {info.get('depths', '?')}; check model.backbone, model.depths "
                                  "and model.dims)")
        if tuple(dst[key].shape) != tuple(value.shape):
            if key[1:3] == CLASSIFIER:
                if reinit_classifier:
                    continue
                raise CheckpointError(
                    f"{path}: classifier {name} has shape {tuple(value.shape)} but the model needs "
                    f"{tuple(dst[key].shape)} (class count differs); set model.reinit_classifier=True "
                    "to keep a freshly initialised classifier")
            hint = ("model.eam_low_dim, eam_high_dim or eam_mid_dim differs?" if key[1] == "boundary"
                    else "wrong backbone preset, dims, sr_ratios or mlp_ratio?")
            raise CheckpointError(f"{path}: tensor {name} has shape {tuple(value.shape)}, model needs "
                                  f"{tuple(dst[key].shape)} ({hint})")
        dst[key] = jax.numpy.asarray(value, dtype=dst[key].dtype)
    if any(key[1:2] == ("backbone",) for key in src):
        missing = ["/".join(key) for key in dst if key[1:2] == ("backbone",) and key not in src]
        if missing:
            raise CheckpointError(
                f"{path}: the checkpoint's backbone (depths {info.get('depths', '?')}) lacks {len(missing)} "
                f"of this model's backbone tensors, e.g. {missing[0]}; pick the checkpoint's preset in "
                "model.backbone (or its model.depths)")
    return traverse_util.unflatten_dict(dst)


__all__ = ["WEIGHTS_FILE", "INFO_FILE", "CheckpointError", "convert_file", "save_converted", "read_converted",
           "load_pretrained"]
