"""Boundary-aware module (EAM): an edge logit from the shallowest and deepest backbone stages."""

import flax.linen as nn
import jax.numpy as jnp
import numpy as np
from jax import lax

from mofgseg_jax.models.conv import Conv, conv3x3_same
from mofgseg_jax.models.resize import interpolation_matrix
from mofgseg_jax.models.segformer_head import BatchNormSettings, ConvBNReLU, ConvKernel, torch_default_init


def _shifted_interpolation(in_size: int, out_size: int) -> np.ndarray:
    """[3, out, in]: tap t's rows of the bilinear (align_corners=False) matrix, shifted by t - 1.

    Row y of tap t is the resize of output row y + t - 1, or zeros where that row falls outside:
    exactly what a 3x3 conv with zero padding reads from the resized map.
    """
    padded = np.pad(interpolation_matrix(in_size, out_size, align_corners=False), ((1, 1), (0, 0)))
    return np.stack([padded[t:t + out_size] for t in range(3)])


class ResizeConcatConvBNReLU(BatchNormSettings):
    """`ConvBNReLU(features, 3)` over concat(resize(high), low), without building that concat.

    high `[B,h,w,Ch]` (a coarse map), low `[B,H,W,Cl]` -> `[B,H,W,features]`; same parameters as
    `ConvBNReLU` over the concatenation (`conv/kernel` `[3,3,Ch+Cl,F]`, `bn/*`) and the same
    function: bilinear resizing is linear and the kernel's `high` rows only mix channels, so
    conv3x3(resize(high))[y, x] = sum_ij resize(high @ W_ij)[y + i - 1, x + j - 1]. The channel
    mixing then runs at the coarse resolution (64x fewer pixels at stride 32 vs 4) and each tap's
    shift folds into the interpolation matrices; only the Cl low channels are convolved at full
    resolution. Why: the boundary module's first conv was 3/4 of the supervised step's FLOPs
    (issue 8), and its 256 resized channels are never stored (nor their gradient).
    """

    features: int
    conv3x3: str = "auto"  # algorithm of the low channels' conv (`models.conv.conv3x3_same`)

    @nn.compact
    def __call__(self, high: jnp.ndarray, low: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        ch = high.shape[-1]
        kernel = ConvKernel(ch + low.shape[-1], self.features, 3, kernel_init=torch_default_init, name="conv")()
        dtype = self.dtype or low.dtype
        kernel, high, low = kernel.astype(dtype), high.astype(dtype), low.astype(dtype)
        out = conv3x3_same(low, kernel[:, :, ch:], algorithm=self.conv3x3)
        taps = jnp.einsum("bhwc,ijcf->bhwijf", high, kernel[:, :, :ch])  # [B,h,w,3,3,F]
        rows = jnp.asarray(_shifted_interpolation(high.shape[1], low.shape[1]), dtype)
        cols = jnp.asarray(_shifted_interpolation(high.shape[2], low.shape[2]), dtype)
        hp = lax.Precision.HIGHEST  # interpolation weights stay exact, as in resize_bilinear
        taps = jnp.einsum("iyh,bhwijf->bywjf", rows, taps, precision=hp)
        return self.bn_relu(out + jnp.einsum("jxw,bywjf->byxf", cols, taps, precision=hp), train)


class EAM(BatchNormSettings):
    """(c1 [B,H1,W1,C1], c4 [B,H4,W4,C4]) -> edge logit [B,H1,W1,1] at c1's size.

    c1 -> 1x1 conv(low_dim)+BN+ReLU; c4 -> 1x1 conv(high_dim)+BN+ReLU, resized to c1's size
    (bilinear, align_corners=False); concat (c4-branch, c1-branch) -> 3x3 conv+BN+ReLU twice
    -> 1x1 conv(1). Input channels follow the backbone (the published code hard-codes 64/512); the
    widths come from the config (`models.build_model`).
    Every conv starts from torch's default initialisation, as the published module's plain
    `nn.Conv2d`s (the decoder's mmcv ConvModule is kaiming-initialised, the EAM's convs are not).
    `conv3x3`: how the 3x3 convs are computed (`models.conv.conv3x3_same`; the same function).
    Names follow the published module (`reduce1`, `reduce4`, `block.0/1` -> `block1/2`, `block.2`
    -> `edge`) so its checkpoints convert by a short table.
    """

    low_dim: int  # published 64 (`model.eam_low_dim`)
    high_dim: int  # published 256 (`model.eam_high_dim`)
    mid_dim: int  # published 256 (`model.eam_mid_dim`)
    conv3x3: str = "auto"

    @nn.compact
    def __call__(self, c1: jnp.ndarray, c4: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        bn = self.bn_settings()
        init = dict(kernel_init=torch_default_init)
        low = ConvBNReLU(self.low_dim, 1, use_bias=True, name="reduce1", **init, **bn)(c1, train)
        high = ConvBNReLU(self.high_dim, 1, use_bias=True, name="reduce4", **init, **bn)(c4, train)
        # = ConvBNReLU(3x3) over concat(resize(high) to c1's size, low).
        x = ResizeConcatConvBNReLU(self.mid_dim, self.conv3x3, name="block1", **bn)(high, low, train)
        x = ConvBNReLU(self.mid_dim, 3, conv3x3=self.conv3x3, name="block2", **init, **bn)(x, train)
        return Conv(1, (1, 1), kernel_init=torch_default_init, dtype=self.dtype, name="edge")(x)
