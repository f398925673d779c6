"""Networks: `build_model(model_cfg)` returns the MOFGSeg Flax module described by a config."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mofgseg_jax.errors import InputError
from mofgseg_jax.models.mit import PRESETS, MiT
from mofgseg_jax.models.mofgseg import MOFGSeg
from mofgseg_jax.models.resize import resize_bilinear

# Defaults of every model_cfg key (configs/common.py holds the same values, except rep_at_stride4:
# False here is the published network, the training config turns it on for speed and memory).
MODEL_DEFAULTS: dict[str, Any] = dict(
    backbone="b0", num_classes=0, embed_dim=0, rep_dim=512, rep_at_stride4=False, drop_path_rate=0.1,
    dropout_rate=0.1, depths=(), dims=(), num_heads=(), sr_ratios=(), mlp_ratio=0.0, block_ln_eps=1e-6,
    embed_ln_eps=1e-5, dtype="float32", remat=False, bn_momentum=0.9, bn_eps=1e-5, eam_low_dim=64,
    eam_high_dim=256, eam_mid_dim=256, conv3x3="auto",
)
# The MiT keys a config may set per stage; () = the preset's.
STAGE_KEYS = ("dims", "depths", "num_heads", "sr_ratios")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _get(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, MODEL_DEFAULTS[key])
    return getattr(cfg, key, MODEL_DEFAULTS[key])


def backbone_settings(model_cfg: Any) -> dict[str, Any]:
    """The MiT architecture of `model_cfg`: `model.backbone`'s preset (`mit.PRESETS`), each of
    `STAGE_KEYS` and `mlp_ratio` overridden where the config sets it, plus 'embed_dim' (the decoder
    width; 0 = the preset's). Raises InputError for an unknown preset or a stage width that its
    head count does not divide. The values' form (4 positive ints, ...) is `config_checks`' to check.
    """
    name = str(_get(model_cfg, "backbone")).lower()
    if name not in PRESETS:
        raise InputError(f"model.backbone={name!r}: unknown MiT preset; choose from {', '.join(PRESETS)}")
    preset = PRESETS[name]
    settings = {key: tuple(int(v) for v in _get(model_cfg, key)) or getattr(preset, key) for key in STAGE_KEYS}
    settings["mlp_ratio"] = float(_get(model_cfg, "mlp_ratio")) or preset.mlp_ratio
    for i, (dim, heads) in enumerate(zip(settings["dims"], settings["num_heads"])):
        if dim % heads:
            raise InputError(f"model.num_heads={settings['num_heads']}: stage {i + 1}'s width {dim} "
                             f"(model.dims={settings['dims']}) is not divisible by its {heads} heads")
    settings["embed_dim"] = int(_get(model_cfg, "embed_dim")) or preset.decoder_dim
    return settings


def build_model(model_cfg: Any, *, bn_axis_name: str | None = None) -> nn.Module:
    """MOFGSeg module from `model_cfg` (ConfigDict, dict or attribute object; missing keys = defaults).

    `bn_axis_name`: mapped axis over which BatchNorm statistics are averaged (e.g. 'data').
    """
    from mofgseg_jax.config_checks import check_model_values  # noqa: PLC0415 (config_checks imports models)

    check_model_values(model_cfg)
    settings = backbone_settings(model_cfg)
    embed_dim = settings.pop("embed_dim")
    num_classes = int(_get(model_cfg, "num_classes"))
    if num_classes <= 0:
        raise InputError(f"model.num_classes={num_classes}: must be a positive class count")
    dtype = DTYPES[str(_get(model_cfg, "dtype"))]  # its name checked by check_model_values
    conv3x3 = str(_get(model_cfg, "conv3x3"))
    backbone = MiT(**settings, drop_path_rate=float(_get(model_cfg, "drop_path_rate")),
                   block_ln_eps=float(_get(model_cfg, "block_ln_eps")),
                   embed_ln_eps=float(_get(model_cfg, "embed_ln_eps")), dtype=dtype,
                   remat=bool(_get(model_cfg, "remat")))
    return MOFGSeg(
        backbone=backbone, num_classes=num_classes, embed_dim=embed_dim, rep_dim=int(_get(model_cfg, "rep_dim")),
        rep_at_stride4=bool(_get(model_cfg, "rep_at_stride4")), dropout_rate=float(_get(model_cfg, "dropout_rate")),
        bn_momentum=float(_get(model_cfg, "bn_momentum")), bn_eps=float(_get(model_cfg, "bn_eps")),
        bn_axis_name=bn_axis_name, dtype=dtype, eam_low_dim=int(_get(model_cfg, "eam_low_dim")),
        eam_high_dim=int(_get(model_cfg, "eam_high_dim")), eam_mid_dim=int(_get(model_cfg, "eam_mid_dim")),
        conv3x3=conv3x3,
    )


__all__ = ["build_model", "backbone_settings", "MOFGSeg", "MiT", "PRESETS", "resize_bilinear", "MODEL_DEFAULTS"]
