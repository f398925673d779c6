"""Networks: `build_model(model_cfg)` returns the MOFGSeg Flax module described by a config."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mofgseg_jax.errors import InputError
from mofgseg_jax.models.conv import CONV3X3_ALGORITHMS
from mofgseg_jax.models.mit import DECODER_DIMS, PRESETS, MiT
from mofgseg_jax.models.mofgseg import MOFGSeg
from mofgseg_jax.models.resize import resize_bilinear

# Defaults of every model_cfg key (configs/common.py holds the same values, except rep_at_stride4:
# False here is the published network, the training config turns it on for speed and memory).
MODEL_DEFAULTS: dict[str, Any] = dict(
    backbone="b0", num_classes=0, embed_dim=0, rep_dim=512, rep_at_stride4=False, drop_path_rate=0.1,
    dropout_rate=0.1, depths=(), dims=(), block_ln_eps=1e-6, embed_ln_eps=1e-5, dtype="float32",
    remat=False, bn_momentum=0.9, bn_eps=1e-5, eam_mid_dim=256, conv3x3="auto",
)
_DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


def _get(cfg: Any, key: str) -> Any:
    if isinstance(cfg, dict):
        return cfg.get(key, MODEL_DEFAULTS[key])
    return getattr(cfg, key, MODEL_DEFAULTS[key])


def build_model(model_cfg: Any, *, bn_axis_name: str | None = None) -> nn.Module:
    """MOFGSeg module from `model_cfg` (ConfigDict, dict or attribute object; missing keys = defaults).

    `bn_axis_name`: mapped axis over which BatchNorm statistics are averaged (e.g. 'data').
    """
    name = str(_get(model_cfg, "backbone")).lower()
    if name not in PRESETS:
        raise InputError(f"model.backbone={name!r}: unknown MiT preset; choose from {', '.join(PRESETS)}")
    num_classes = int(_get(model_cfg, "num_classes"))
    if num_classes <= 0:
        raise InputError(f"model.num_classes={num_classes}: must be a positive class count")
    dtype_name = str(_get(model_cfg, "dtype"))
    if dtype_name not in _DTYPES:
        raise InputError(f"model.dtype={dtype_name!r}: choose from {', '.join(_DTYPES)}")
    dtype = _DTYPES[dtype_name]
    dims = tuple(int(d) for d in _get(model_cfg, "dims")) or PRESETS[name]["dims"]
    depths = tuple(int(d) for d in _get(model_cfg, "depths")) or PRESETS[name]["depths"]
    if len(dims) != 4 or len(depths) != 4:
        raise InputError(f"model.dims={dims} / model.depths={depths}: need 4 stages each")
    embed_dim = int(_get(model_cfg, "embed_dim")) or DECODER_DIMS[name]
    eam_mid_dim = int(_get(model_cfg, "eam_mid_dim"))
    if eam_mid_dim <= 0:
        raise InputError(f"model.eam_mid_dim={eam_mid_dim}: must be a positive channel count (256 = published)")
    conv3x3 = str(_get(model_cfg, "conv3x3"))
    if conv3x3 not in CONV3X3_ALGORITHMS:
        raise InputError(f"model.conv3x3={conv3x3!r}: choose from {', '.join(CONV3X3_ALGORITHMS)}")
    backbone = MiT(dims=dims, depths=depths, drop_path_rate=float(_get(model_cfg, "drop_path_rate")),
                   block_ln_eps=float(_get(model_cfg, "block_ln_eps")),
                   embed_ln_eps=float(_get(model_cfg, "embed_ln_eps")), dtype=dtype,
                   remat=bool(_get(model_cfg, "remat")))
    return MOFGSeg(
        backbone=backbone, num_classes=num_classes, embed_dim=embed_dim, rep_dim=int(_get(model_cfg, "rep_dim")),
        rep_at_stride4=bool(_get(model_cfg, "rep_at_stride4")), dropout_rate=float(_get(model_cfg, "dropout_rate")),
        bn_momentum=float(_get(model_cfg, "bn_momentum")), bn_eps=float(_get(model_cfg, "bn_eps")),
        bn_axis_name=bn_axis_name, dtype=dtype, eam_mid_dim=eam_mid_dim, conv3x3=conv3x3,
    )


__all__ = ["build_model", "MOFGSeg", "MiT", "PRESETS", "resize_bilinear", "MODEL_DEFAULTS"]
