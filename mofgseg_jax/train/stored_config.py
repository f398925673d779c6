"""A run's stored config, `<workdir>/config.json`: what it records, and which changes a resumed run refuses.

A run writes its resolved config once it has passed its checks (`check_stored_config`, then
`save_config`), so a refused run leaves the stored one as it was. Resuming with a config that
changes parameter shapes (`SHAPE_KEYS`) or their meaning (`MEANING_KEYS`: attention heads) is
refused with the differing keys named; other differences are logged, and the earlier file is kept
as `config.previous.json`, `config.previous.1.json`, ... Evaluation and prediction compare a given
`--config` with the run's through the same keys (`train/inference.py`).
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any

import jax
import ml_collections

from mofgseg_jax.errors import InputError
from mofgseg_jax.train.sync import barrier

log = logging.getLogger("mofgseg")

# Keys whose change alters parameter shapes: a checkpoint written with other values cannot be loaded.
SHAPE_KEYS = ("model.backbone", "model.num_classes", "model.embed_dim", "model.rep_dim", "model.depths",
              "model.dims", "model.sr_ratios", "model.mlp_ratio", "model.eam_low_dim", "model.eam_high_dim",
              "model.eam_mid_dim")
# Keys whose change keeps every shape but not what the parameters mean (attention split into other
# heads): a checkpoint written with other values loads, as another network. Refused alike.
MEANING_KEYS = ("model.num_heads",)
CONFIG_FILE = "config.json"


def config_to_dict(config: ml_collections.ConfigDict) -> dict:
    """The resolved config as plain JSON types (tuples become lists)."""
    return json.loads(config.to_json_best_effort())


def _flatten(d: dict, prefix: str = "") -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(_flatten(v, key + "."))
        else:
            out[key] = v
    return out


def config_differences(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{dotted key: (old, new)} for every key whose value differs (or exists on one side only)."""
    a, b = _flatten(old), _flatten(new)
    return {k: (a.get(k, "<absent>"), b.get(k, "<absent>")) for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)}


def _added_at_default(key: str, old: Any, new: Any) -> bool:
    """A model key that a config written by an older version lacks, now at the value that version's
    model had built in (`MODEL_DEFAULTS`): no shape changed, e.g. `model.eam_mid_dim` 256 or
    `model.num_heads` () (a JSON list, as `config_to_dict` writes tuples)."""
    from mofgseg_jax.models import MODEL_DEFAULTS  # noqa: PLC0415

    name = key.removeprefix("model.")
    if old != "<absent>" or name not in MODEL_DEFAULTS:
        return False
    default = MODEL_DEFAULTS[name]
    return new == (list(default) if isinstance(default, tuple) else default)


def architecture_changes(old: dict, new: dict) -> dict[str, tuple[Any, Any]]:
    """{key: (old, new)} of the `SHAPE_KEYS` and `MEANING_KEYS` that differ between two configs (as
    `config_to_dict` writes them) in a way that changes the network. Not a change: a key that an
    older version's config lacks, now at the value that version had built in (`_added_at_default`);
    a per-stage key spelled out as its preset's values (`model.num_heads` () and (1, 2, 5, 8) on b0
    build the same network: both sides are resolved through `models.backbone_settings`)."""
    from mofgseg_jax.models import backbone_settings  # noqa: PLC0415 (flax: only when comparing)

    changes = {k: v for k, v in config_differences(old, new).items()
               if k in SHAPE_KEYS + MEANING_KEYS and not _added_at_default(k, *v)}
    if changes:
        resolved = [backbone_settings(config.get("model", {})) for config in (old, new)]
        changes = {k: v for k, v in changes.items()
                   if k.removeprefix("model.") not in resolved[0]
                   or resolved[0][k.removeprefix("model.")] != resolved[1][k.removeprefix("model.")]}
    return changes


def check_stored_config(config_dict: dict, workdir: str, *, resuming: bool) -> bool:
    """Compares the config with the stored `<workdir>/config.json`; True when they differ.

    When resuming, a change of parameter shapes (`SHAPE_KEYS`) or meaning (`MEANING_KEYS`) is refused;
    other differences are logged. Every process reads the stored file before process 0 may replace it
    (a barrier after): all of them then take the same decision, and none reads a half-written file.
    """
    path = os.path.join(workdir, CONFIG_FILE)
    old = None
    if os.path.exists(path):
        try:
            with open(path) as f:
                old = json.load(f)
        except (OSError, ValueError) as e:
            raise InputError(f"{path}: cannot read the stored config ({e}); move it away to start over") from e
    barrier("mofgseg_config_read")
    diff = config_differences(old, config_dict) if old is not None else {}
    if diff and resuming:
        refused = architecture_changes(old, config_dict)
        if refused:
            what = " and ".join(words for keys, words in ((SHAPE_KEYS, "parameter shapes"),
                                                          (MEANING_KEYS, "what the parameters mean"))
                                if any(k in keys for k in refused))
            changes = "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in refused.items())
            raise InputError(
                f"{path}: this run resumes the checkpoints in {workdir}, but its config changes {what} "
                f"({changes}). Resume with the original config, or use a new --workdir.")
        log.warning("resuming with a config that differs from %s: %s", path,
                    "; ".join(f"{k}: {o!r} -> {n!r}" for k, (o, n) in diff.items()))
    return bool(diff)


def save_config(config_dict: dict, workdir: str, *, differs: bool) -> None:
    """Process 0 writes `<workdir>/config.json`; a stored one that `differs` is kept as the first free
    of `config.previous.json`, `config.previous.1.json`, ... (each earlier config stays)."""
    if jax.process_index() != 0:
        return
    path = os.path.join(workdir, CONFIG_FILE)
    if differs:
        previous, k = os.path.join(workdir, "config.previous.json"), 1
        while os.path.lexists(previous):
            previous, k = os.path.join(workdir, f"config.previous.{k}.json"), k + 1
        os.replace(path, previous)
    # Written beside and renamed: an interrupted write never leaves a truncated config.json.
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(config_dict, f, indent=2, sort_keys=True)
    os.replace(tmp, path)
