"""Boundary-aware module (EAM): an edge logit from the shallowest and deepest backbone stages."""

from typing import Any

import flax.linen as nn
import jax.numpy as jnp

from mofgseg_jax.models.conv import Conv
from mofgseg_jax.models.resize import resize_bilinear
from mofgseg_jax.models.segformer_head import ConvBNReLU, torch_default_init

Dtype = Any


class EAM(nn.Module):
    """(c1 [B,H1,W1,C1], c4 [B,H4,W4,C4]) -> edge logit [B,H1,W1,1] at c1's size.

    c1 -> 1x1 conv(low_dim)+BN+ReLU; c4 -> 1x1 conv(high_dim)+BN+ReLU, resized to c1's size
    (bilinear, align_corners=False); concat (c4-branch, c1-branch) -> 3x3 conv+BN+ReLU twice
    -> 1x1 conv(1). Input channels follow the backbone (the published code hard-codes 64/512).
    Names follow the published module (`reduce1`, `reduce4`, `block.0/1` -> `block1/2`, `block.2`
    -> `edge`) so its checkpoints convert by a short table.
    """

    low_dim: int = 64
    high_dim: int = 256
    mid_dim: int = 256
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, c1: jnp.ndarray, c4: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        bn = dict(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, bn_axis_name=self.bn_axis_name,
                  dtype=self.dtype)
        low = ConvBNReLU(self.low_dim, 1, use_bias=True, name="reduce1", **bn)(c1, train)
        high = ConvBNReLU(self.high_dim, 1, use_bias=True, name="reduce4", **bn)(c4, train)
        high = resize_bilinear(high, c1.shape[1:3], align_corners=False)
        x = jnp.concatenate([high, low], axis=-1)
        x = ConvBNReLU(self.mid_dim, 3, name="block1", **bn)(x, train)
        x = ConvBNReLU(self.mid_dim, 3, name="block2", **bn)(x, train)
        return Conv(1, (1, 1), kernel_init=torch_default_init, dtype=self.dtype, name="edge")(x)
