"""The config's value constraints, checked in one pass before anything is written, loaded or compiled.

Without it a zero batch, a one-number range or a stride ratio of 0 surfaces as a ZeroDivisionError,
an IndexError inside a grain worker, or a run that never ends; here each is one `InputError` that
names the key: `data.scale_range=(2.0,): expected two numbers (low, high)`.
`check_config_values(config)` runs at the start of training (every key) and when evaluation or prediction
picks its config (`training=False`: the keys they read). A key absent from an older stored config
is skipped. Checks that need more than the config (batch sizes against the device count, the
dataset spec) stay where that is known.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from mofgseg_jax.errors import InputError

_ABSENT = object()
# A rule returns what is wrong with a value ("expected ..."), or None when it is fine.
Rule = Callable[[Any], "str | None"]


def _is_int(v: Any) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_number(v: Any) -> bool:
    return (_is_int(v) or isinstance(v, (float, np.floating))) and bool(np.isfinite(v))


def _integer(words: str, ok: Callable[[int], bool]) -> Rule:
    return lambda v: None if _is_int(v) and ok(v) else f"expected an integer {words}"


def _number(words: str, ok: Callable[[float], bool]) -> Rule:
    return lambda v: None if _is_number(v) and ok(v) else f"expected a number {words}"


def _range(words: str, ok: Callable[[float], bool]) -> Rule:
    """A (low, high) pair, both ends in the domain (`words` says which)."""

    def rule(v: Any) -> str | None:
        if not (isinstance(v, (tuple, list)) and len(v) == 2 and all(_is_number(x) for x in v)):
            return "expected two numbers (low, high)"
        if v[0] > v[1]:
            return "expected low <= high"
        return None if ok(v[0]) and ok(v[1]) else f"expected two numbers {words}"

    return rule


def _rgb(words: str, ok: Callable[[float], bool]) -> Rule:
    """Three per-channel numbers (R, G, B), each in the domain (`words` says which)."""

    def rule(v: Any) -> str | None:
        if not (isinstance(v, (tuple, list)) and len(v) == 3 and all(_is_number(x) for x in v)):
            return "expected three numbers (R, G, B)"
        return None if all(ok(x) for x in v) else f"expected three numbers {words}"

    return rule


def _one_of(*choices: Any) -> Rule:
    return lambda v: None if v in choices else f"choose from {', '.join(map(str, choices))}"


POSITIVE_INT = _integer("> 0", lambda v: v > 0)
COUNT = _integer(">= 0", lambda v: v >= 0)
PROBABILITY = _number("in [0, 1]", lambda v: 0 <= v <= 1)
POSITIVE = _number("> 0", lambda v: v > 0)
NON_NEGATIVE = _number(">= 0", lambda v: v >= 0)
SCALES = _range("> 0", lambda v: v > 0)  # resize factors and blur sigmas
FACTORS = _range(">= 0", lambda v: v >= 0)  # colour-jitter factors
HUE_SHIFTS = _range("in [-0.5, 0.5] (of a hue turn)", lambda v: -0.5 <= v <= 0.5)
ODD_POSITIVE_INT = _integer("> 0 and odd", lambda v: v > 0 and v % 2 == 1)
FRACTION = _number("in (0, 1]", lambda v: 0 < v <= 1)
BELOW_ONE = _number("in [0, 1)", lambda v: 0 <= v < 1)  # a drop rate of 1 keeps nothing (and divides by 0)
# Normalisation of images scaled to [0, 1]: a 0-255 mean (123.675, ...) is refused, not trained on.
CHANNEL_MEANS = _rgb("in [0, 1] (images are scaled to [0, 1])", lambda v: 0 <= v <= 1)
CHANNEL_STDS = _rgb("in (0, 1] (images are scaled to [0, 1])", lambda v: 0 < v <= 1)


def _per_stage(v: Any) -> str | None:
    """() (the MiT preset's values) or one integer > 0 per stage of the 4."""
    ok = isinstance(v, (tuple, list)) and len(v) in (0, 4) and all(_is_int(x) and x > 0 for x in v)
    return None if ok else "expected () for the preset's values or 4 integers > 0, one per MiT stage"


# The model section's keys (without the `model.` prefix); absent ones are skipped.
MODEL_RULES: dict[str, Rule] = {
    "dims": _per_stage,
    "depths": _per_stage,
    "num_heads": _per_stage,
    "sr_ratios": _per_stage,
    "mlp_ratio": _number(">= 0 (0 = the preset's)", lambda v: v >= 0),
    "eam_low_dim": POSITIVE_INT,
    "eam_high_dim": POSITIVE_INT,
    "eam_mid_dim": POSITIVE_INT,
    "embed_dim": _integer(">= 0 (0 = the preset's)", lambda v: v >= 0),
    "rep_dim": POSITIVE_INT,
    "drop_path_rate": BELOW_ONE,
    "dropout_rate": BELOW_ONE,
    # Normalisation eps and BatchNorm momentum: a NaN, a negative eps or a momentum outside [0, 1]
    # trains without an error until the loss is NaN.
    "block_ln_eps": POSITIVE,
    "embed_ln_eps": POSITIVE,
    "bn_eps": POSITIVE,
    "bn_momentum": PROBABILITY,
}


def _eval_rules() -> dict[str, Rule]:
    from mofgseg_jax.train.evaluate import MODES  # noqa: PLC0415 (jax: only when checking)

    return {
        "data.crop_size": POSITIVE_INT,
        "data.eval_batch_size": POSITIVE_INT,
        "data.num_threads": POSITIVE_INT,
        "data.prefetch": POSITIVE_INT,
        "data.mean": CHANNEL_MEANS,
        "data.std": CHANNEL_STDS,
        "eval.mode": _one_of(*MODES),
    }


def _train_rules(config: Any) -> dict[str, Rule]:
    from mofgseg_jax.augment.mixing import MIX_MODES  # noqa: PLC0415
    from mofgseg_jax.train.optim import OPTIMIZERS  # noqa: PLC0415
    from mofgseg_jax.train.parallel import PARALLEL_MODES  # noqa: PLC0415

    rules = {
        "train.mode": _one_of("semi", "sup"),
        "train.num_steps": COUNT,
        "train.num_epochs": COUNT,
        "train.eval_every": COUNT,
        "train.checkpoint_every": COUNT,
        "data.batch_size_labeled": POSITIVE_INT,
        "data.num_workers": COUNT,
        "data.scale_range": SCALES,
        "data.flip_prob": PROBABILITY,
        "data.strong_view.jitter_prob": PROBABILITY,
        "data.strong_view.brightness": NON_NEGATIVE,
        "data.strong_view.contrast": NON_NEGATIVE,
        "data.strong_view.saturation": NON_NEGATIVE,
        "data.strong_view.hue": _number("in [0, 0.5] (of a hue turn)", lambda v: 0 <= v <= 0.5),
        "data.strong_view.grayscale_prob": PROBABILITY,
        "data.strong_view.blur_prob": PROBABILITY,
        "data.strong_view.blur_sigma": SCALES,
        "augment.mix_mode": _one_of(*MIX_MODES),
        "augment.mix_area_ratio": FRACTION,
        "augment.classmix_class_ratio": FRACTION,
        "augment.scale_range": SCALES,
        "augment.jitter_prob": PROBABILITY,
        "augment.brightness": FACTORS,
        "augment.contrast": FACTORS,
        "augment.saturation": FACTORS,
        "augment.hue": HUE_SHIFTS,
        "augment.blur_prob": PROBABILITY,
        "augment.blur_sigma": SCALES,
        "augment.blur_kernel_size": ODD_POSITIVE_INT,
        "augment.flip_prob": PROBABILITY,
        "loss.edge_connectivity": _one_of(4, 8),
        "loss.edge_width": POSITIVE_INT,
        "loss.num_queries": POSITIVE_INT,
        "loss.num_negatives": POSITIVE_INT,
        "loss.temperature": POSITIVE,
        "loss.dice_smooth": POSITIVE,
        # A weight of 0 turns its loss off (the ablation variants); a NaN or inf one trains a NaN
        # network, a negative one ascends its loss.
        "loss.supervised_weight": NON_NEGATIVE,
        "loss.unsupervised_weight": NON_NEGATIVE,
        "loss.contrastive_weight": NON_NEGATIVE,
        "loss.boundary_weight": NON_NEGATIVE,
        "loss.negative_weight": NON_NEGATIVE,
        "loss.strong_threshold": PROBABILITY,
        "loss.weak_threshold": PROBABILITY,
        "loss.ohem_thresh": PROBABILITY,
        "loss.ohem_min_kept": COUNT,
        "loss.semi_rampup_steps": COUNT,
        "loss.contrastive_anchor_chunk": COUNT,
        "optim.name": _one_of(*OPTIMIZERS),
        "optim.lr": NON_NEGATIVE,
        "optim.lr_multi": NON_NEGATIVE,  # 0 freezes the decoder
        "optim.momentum": PROBABILITY,
        "optim.weight_decay": NON_NEGATIVE,
        "optim.power": NON_NEGATIVE,  # 0 = a constant lr; < 0 makes the lr grow without bound by the end
        "optim.warmup_steps": COUNT,
        "optim.accumulate_steps": POSITIVE_INT,
        # The teacher's EMA cap: 0 copies the student each update; a NaN teacher or one extrapolated
        # past the student (< 0) evaluates without an error.
        "ema.decay": PROBABILITY,
        "train.keep_checkpoints": POSITIVE_INT,
        "train.num_predictions_logged": COUNT,
        "parallel.mode": _one_of(*PARALLEL_MODES),
        # The PRNG key and grain's np.random.SeedSequence take 64-bit non-negative seeds.
        "seed": _integer("in [0, 2**63)", lambda v: 0 <= v < 2**63),
    }
    if reads_unlabelled(config):
        rules["data.batch_size_unlabeled"] = POSITIVE_INT
    return rules


def reads_unlabelled(config: Any) -> bool:
    """Whether a run reads the unlabelled split: every `train.mode` but 'sup', whose runs read only the
    labelled split and count an epoch as a pass over it (the published supervised baseline's)."""
    return _get(config, "train.mode") != "sup"


def check_config_values(config: Any, *, training: bool = True) -> None:
    """Raises one `InputError` naming the first key whose value is malformed or out of its domain.

    Also fills the one derived value: `model.num_classes` = len(`data.class_names`) when it is 0, as
    a custom dataset may be given by its class names alone (`data/specs.py`). `training=False`
    checks only what evaluation and prediction read.
    """
    from mofgseg_jax.data.pipeline import check_source_settings  # noqa: PLC0415
    from mofgseg_jax.data.transforms import canvas_hw  # noqa: PLC0415
    from mofgseg_jax.train.evaluate import window_stride  # noqa: PLC0415

    _fill_num_classes(config)
    rules = _eval_rules() | (_train_rules(config) if training else {})
    _apply(rules, config)
    model = _get(config, "model")
    if model is not _ABSENT:
        check_model_values(model)
    if training and _get(config, "data") is not _ABSENT:
        # Not for evaluation and prediction: predicting images needs no dataset (a run trained from
        # a TFDS build elsewhere still predicts); evaluation checks them when it opens the data.
        check_source_settings(_get(config, "data"))
    if _get(config, "data.eval_pad_size") is not _ABSENT:
        canvas_hw(_get(config, "data.eval_pad_size"))
    if _get(config, "eval.window_stride_ratio") is not _ABSENT:
        window_stride(_get(config, "data.crop_size"), _get(config, "eval.window_stride_ratio"))


def check_model_values(model: Any) -> None:
    """Raises one `InputError` naming the first malformed key of a model section (`config.model`, or
    the dict `models.build_model` takes): `MODEL_RULES`, a known `model.dtype` and
    `model.conv3x3`, then what needs the MiT preset
    (`models.backbone_settings`): a known `model.backbone`, stage widths divisible by their heads."""
    from mofgseg_jax.models import DTYPES, backbone_settings  # noqa: PLC0415 (flax: only when checking)
    from mofgseg_jax.models.conv import CONV3X3_ALGORITHMS  # noqa: PLC0415

    rules = MODEL_RULES | {"dtype": _one_of(*DTYPES), "conv3x3": _one_of(*CONV3X3_ALGORITHMS)}
    _apply({f"model.{key}": rule for key, rule in rules.items()}, {"model": model})
    backbone_settings(model)


def _apply(rules: dict[str, Rule], config: Any) -> None:
    for key, rule in rules.items():
        value = _get(config, key)
        problem = None if value is _ABSENT else rule(value)
        if problem:
            raise InputError(f"{key}={value!r}: {problem}")


def _fill_num_classes(config: Any) -> None:
    names = _get(config, "data.class_names")
    if _get(config, "model.num_classes") == 0 and names not in (_ABSENT, None) and len(names):
        config.model.num_classes = len(names)
        # Follows by reference in a config from `configs/`, not in one read back from JSON.
        if _get(config, "data.num_classes") == 0:
            config.data.num_classes = len(names)


def _get(config: Any, dotted: str) -> Any:
    """`config.a.b` for a dotted key, `_ABSENT` where a level lacks it."""
    node = config
    for part in dotted.split("."):
        try:
            node = node[part]
        except (KeyError, AttributeError):
            return _ABSENT
        except TypeError:  # not subscriptable: an attribute object (`build_model` takes those), or a leaf
            node = getattr(node, part, _ABSENT)
            if node is _ABSENT:
                return _ABSENT
    return node
