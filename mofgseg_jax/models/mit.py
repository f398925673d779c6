"""MiT (Mix Transformer) encoder of SegFormer, and the table of its presets B0-B5 (`PRESETS`).

Module names mirror the original PyTorch names (`patch_embed1`, `block1_0/attn/q`, `attn/kv`,
`attn/sr`, `mlp/dwconv/dwconv`, stage norms `norm1..norm4`) so that weight conversion is a
name table plus layout rules (see `mofgseg_jax/weights/convert.py`).
"""

import dataclasses
import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mofgseg_jax.models.conv import Conv

Dtype = Any

# Initialisation as the PyTorch MiT (`_init_weights`): Linear timm `trunc_normal_(std=.02)`, zero
# bias; Conv2d normal(0, sqrt(2 / fan_out)) with torch's fan_out = kh * kw * out / groups. timm cuts
# at +-2 in absolute units, i.e. +-100 std: a plain normal(0.02) (flax's `truncated_normal(0.02)`
# cuts at +-2 std, leaving a std of 0.0176).
dense_init = nn.initializers.normal(stddev=0.02)
conv_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
Dense = functools.partial(nn.Dense, kernel_init=dense_init)


class OverlapPatchEmbed(nn.Module):
    """Strided conv with symmetric padding k//2 (PyTorch output sizes for any H, W) + LayerNorm.

    [B,H,W,Cin] -> [B,H',W',dim], H' = floor((H + 2*(k//2) - k) / stride) + 1.
    """

    dim: int
    patch_size: int
    stride: int
    ln_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        p = self.patch_size // 2
        # Explicit symmetric padding: 'SAME' pads asymmetrically for stride > 1 (breaks parity).
        x = Conv(self.dim, (self.patch_size, self.patch_size), strides=(self.stride, self.stride),
                 padding=((p, p), (p, p)), kernel_init=conv_init, dtype=self.dtype, name="proj")(x)
        return nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="norm")(x)


class EfficientAttention(nn.Module):
    """Multi-head self-attention with keys/values from a strided conv (spatial reduction).

    [B,H,W,C] -> [B,H,W,C]. Keys/values come from a conv with kernel = stride = sr_ratio
    followed by LayerNorm, so attention costs N * N / sr_ratio^2.
    """

    dim: int
    num_heads: int
    sr_ratio: int
    sr_ln_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        b, h, w, c = x.shape
        head_dim = c // self.num_heads
        q = Dense(c, dtype=self.dtype, name="q")(x)
        q = q.reshape(b, h * w, self.num_heads, head_dim)
        kv_in = x
        if self.sr_ratio > 1:
            r = self.sr_ratio
            kv_in = Conv(c, (r, r), strides=(r, r), padding="VALID", kernel_init=conv_init,
                          dtype=self.dtype, name="sr")(kv_in)
            kv_in = nn.LayerNorm(epsilon=self.sr_ln_eps, dtype=self.dtype, name="norm")(kv_in)
        kv_in = kv_in.reshape(b, -1, c)
        # One Dense producing [keys | values], as the original `kv` Linear(dim, 2*dim).
        kv = Dense(2 * c, dtype=self.dtype, name="kv")(kv_in)
        k, v = jnp.split(kv, 2, axis=-1)
        k = k.reshape(b, -1, self.num_heads, head_dim)
        v = v.reshape(b, -1, self.num_heads, head_dim)
        # Logits and softmax in float32 also under bf16 compute.
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k, preferred_element_type=jnp.float32)
        probs = jax.nn.softmax(logits * (head_dim ** -0.5), axis=-1).astype(v.dtype)
        out = jnp.einsum("bhqk,bkhd->bqhd", probs, v).reshape(b, h, w, c)
        return Dense(c, dtype=self.dtype, name="proj")(out)


def _pad1(x: jnp.ndarray) -> jnp.ndarray:
    return jnp.pad(x, ((0, 0), (1, 1), (1, 1), (0, 0)))


def _taps(padded: jnp.ndarray, kernel: jnp.ndarray, flip: bool = False) -> jnp.ndarray:
    """sum over the 3x3 taps (i, j) of padded[:, i:i+H, j:j+W] * kernel[i, j] (tap (2-i, 2-j) if flip)."""
    h, w = padded.shape[1] - 2, padded.shape[2] - 2
    out = 0
    for i in range(3):
        for j in range(3):
            a, b = (2 - i, 2 - j) if flip else (i, j)
            out = out + padded[:, a:a + h, b:b + w, :] * kernel[i, j]
    return out


@jax.custom_vjp
def depthwise3x3(x: jnp.ndarray, kernel: jnp.ndarray) -> jnp.ndarray:
    """3x3 depthwise cross-correlation, zero padding 1: x [B,H,W,C], kernel [3,3,C] -> [B,H,W,C]."""
    return _taps(_pad1(x), kernel)


def _depthwise3x3_fwd(x, kernel):
    return depthwise3x3(x, kernel), (x, kernel)


def _depthwise3x3_bwd(residuals, g):
    # Written out because autodiff of the nine slices pads each tap's gradient back to full size
    # and keeps them all alive (8 x 8.9 MB at B0 stage 1, 4 x 256^2) before summing; here the input
    # gradient is the same nine-tap sum over the padded cotangent with the flipped kernel (one fused
    # loop), and the kernel gradient nine reductions. 2x faster forward+backward on CPU.
    x, kernel = residuals
    dx = _taps(_pad1(g), kernel, flip=True)
    padded, (h, w) = _pad1(x), x.shape[1:3]
    dk = jnp.stack([jnp.stack([jnp.sum(padded[:, i:i + h, j:j + w, :] * g, axis=(0, 1, 2))
                               for j in range(3)]) for i in range(3)])
    return dx.astype(x.dtype), dk.astype(kernel.dtype)


depthwise3x3.defvjp(_depthwise3x3_fwd, _depthwise3x3_bwd)


class DepthwiseConv3x3(nn.Module):
    """3x3 depthwise conv, padding 1, with bias: nine shifted multiply-adds instead of a grouped conv.

    Same parameters as `nn.Conv(C, (3, 3), feature_group_count=C)` (`kernel` [3,3,1,C], `bias` [C]),
    same result. Why: XLA:CPU runs grouped convolutions (and their gradients) through a slow generic
    path — 3x slower forward+backward than this elementwise form, which XLA fuses into one loop; on
    GPUs both are memory-bound and equally fast.
    """

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        # torch's fan_out for a depthwise conv is 3 * 3 * 1 (flax would count 3 * 3 * c).
        kernel = self.param("kernel", nn.initializers.normal(stddev=(2.0 / 9.0) ** 0.5), (3, 3, 1, c))
        bias = self.param("bias", nn.initializers.zeros_init(), (c,))
        dtype = self.dtype or x.dtype
        return depthwise3x3(x.astype(dtype), kernel[:, :, 0].astype(dtype)) + bias.astype(dtype)


class DWConv(nn.Module):
    """3x3 depthwise conv, padding 1 (named `dwconv/dwconv` as in PyTorch). [B,H,W,C] -> same."""

    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        return DepthwiseConv3x3(dtype=self.dtype, name="dwconv")(x)


def erf_gelu(x: jnp.ndarray) -> jnp.ndarray:
    """Exact GELU, x * (1 + erf(x / sqrt 2)) / 2, written as torch.nn.GELU() computes it (flax's
    `nn.gelu` defaults to the tanh approximation). Not `nn.gelu(approximate=False)`: that goes
    through erfc, which XLA evaluates as two polynomial branches and a select."""
    return x * (0.5 + 0.5 * jax.lax.erf(x * (2 ** -0.5)))


class MixFFN(nn.Module):
    """fc1 -> 3x3 depthwise conv -> exact GELU -> fc2. [B,H,W,C] -> [B,H,W,C]."""

    hidden_dim: int
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray) -> jnp.ndarray:
        c = x.shape[-1]
        x = Dense(self.hidden_dim, dtype=self.dtype, name="fc1")(x)
        x = DWConv(dtype=self.dtype, name="dwconv")(x)
        x = erf_gelu(x)
        return Dense(c, dtype=self.dtype, name="fc2")(x)


class Block(nn.Module):
    """Pre-norm transformer block: x + DropPath(Attn(LN(x))); x + DropPath(MixFFN(LN(x))).

    [B,H,W,C] -> [B,H,W,C]. Drop path draws from the 'dropout' rng, one decision per sample.
    """

    dim: int
    num_heads: int
    sr_ratio: int
    mlp_ratio: float  # Mix-FFN hidden width = int(dim * mlp_ratio)
    drop_path: float = 0.0
    ln_eps: float = 1e-6
    sr_ln_eps: float = 1e-5
    dtype: Dtype = jnp.float32

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        drop = nn.Dropout(self.drop_path, broadcast_dims=(1, 2, 3), deterministic=not train)
        y = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="norm1")(x)
        y = EfficientAttention(self.dim, self.num_heads, self.sr_ratio, sr_ln_eps=self.sr_ln_eps,
                               dtype=self.dtype, name="attn")(y)
        x = x + drop(y)
        y = nn.LayerNorm(epsilon=self.ln_eps, dtype=self.dtype, name="norm2")(x)
        y = MixFFN(int(self.dim * self.mlp_ratio), dtype=self.dtype, name="mlp")(y)
        return x + drop(y)


class MiT(nn.Module):
    """Mix Transformer encoder. [B,H,W,3] -> [c1, c2, c3, c4] at strides 4, 8, 16, 32.

    Stage i: OverlapPatchEmbed (7x7/4 then 3x3/2) -> depths[i] Blocks -> LayerNorm (`norm{i+1}`).
    Drop-path rate rises linearly from 0 to drop_path_rate over all blocks. The per-stage
    architecture (dims, depths, num_heads, sr_ratios, mlp_ratio) has no default: it comes from a
    preset (`PRESETS[name].encoder()`) or the config (`models.build_model`); dims[i] must be
    divisible by num_heads[i] (`config_checks` says so for a config).
    """

    dims: Sequence[int]
    depths: Sequence[int]
    num_heads: Sequence[int]
    sr_ratios: Sequence[int]  # keys/values from a conv with kernel = stride = sr_ratios[i] (1 = none)
    mlp_ratio: float  # Mix-FFN hidden width / stage width
    # The patch embeddings make c1..c4 strides 4, 8, 16, 32, which the decoder, the boundary module and
    # `model.rep_at_stride4` rely on: part of the network's design, not a setting.
    patch_sizes: Sequence[int] = (7, 3, 3, 3)
    strides: Sequence[int] = (4, 2, 2, 2)
    drop_path_rate: float = 0.1
    block_ln_eps: float = 1e-6  # blocks' norm1/norm2 and the stage norms (released weights)
    embed_ln_eps: float = 1e-5  # patch-embedding norms and attention spatial-reduction norms
    dtype: Dtype = jnp.float32
    remat: bool = False

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> list[jnp.ndarray]:
        total = sum(self.depths)
        rates = [self.drop_path_rate * i / max(total - 1, 1) for i in range(total)]
        # self is argnum 0, so `train` is static argnum 2.
        block_cls = nn.remat(Block, static_argnums=(2,)) if self.remat else Block
        x = x.astype(self.dtype)
        features = []
        k = 0
        for i, (dim, depth) in enumerate(zip(self.dims, self.depths)):
            x = OverlapPatchEmbed(dim, self.patch_sizes[i], self.strides[i], ln_eps=self.embed_ln_eps,
                                  dtype=self.dtype, name=f"patch_embed{i + 1}")(x)
            for j in range(depth):
                x = block_cls(dim, self.num_heads[i], self.sr_ratios[i], mlp_ratio=self.mlp_ratio,
                              drop_path=rates[k], ln_eps=self.block_ln_eps, sr_ln_eps=self.embed_ln_eps,
                              dtype=self.dtype, name=f"block{i + 1}_{j}")(x, train)
                k += 1
            x = nn.LayerNorm(epsilon=self.block_ln_eps, dtype=self.dtype, name=f"norm{i + 1}")(x)
            features.append(x)
        return features


@dataclasses.dataclass(frozen=True)
class Preset:
    """One SegFormer network MiT-B*: the encoder's stages and the decoder width that goes with it."""

    dims: tuple[int, ...]  # stage widths
    depths: tuple[int, ...]  # transformer blocks per stage
    decoder_dim: int  # the SegFormer head's embedding width (`model.embed_dim` = 0 takes it)
    num_heads: tuple[int, ...]  # attention heads per stage
    sr_ratios: tuple[int, ...]  # attention spatial-reduction ratio per stage
    mlp_ratio: float  # Mix-FFN hidden width / stage width

    def encoder(self) -> dict[str, Any]:
        """The MiT arguments of this preset: `MiT(**preset.encoder())`."""
        return dict(dims=self.dims, depths=self.depths, num_heads=self.num_heads, sr_ratios=self.sr_ratios,
                    mlp_ratio=self.mlp_ratio)


# SegFormer (Xie et al. 2021; the released mit_b*): every preset has heads (1, 2, 5, 8), spatial-reduction
# ratios (8, 4, 2, 1) and MLP ratio 4 (an int: Hugging Face's SegformerConfig takes no other); B1-B5
# share their widths.
_HEADS, _SR_RATIOS, _MLP_RATIO = (1, 2, 5, 8), (8, 4, 2, 1), 4
_SMALL_DIMS = (32, 64, 160, 256)
_DIMS = (64, 128, 320, 512)


def _preset(dims: tuple[int, ...], depths: tuple[int, ...], decoder_dim: int) -> Preset:
    return Preset(dims, depths, decoder_dim, _HEADS, _SR_RATIOS, _MLP_RATIO)


PRESETS: dict[str, Preset] = {
    "b0": _preset(_SMALL_DIMS, (2, 2, 2, 2), 256),
    "b1": _preset(_DIMS, (2, 2, 2, 2), 256),
    "b2": _preset(_DIMS, (3, 4, 6, 3), 768),
    "b3": _preset(_DIMS, (3, 4, 18, 3), 768),
    "b4": _preset(_DIMS, (3, 8, 27, 3), 768),
    "b5": _preset(_DIMS, (3, 6, 40, 3), 768),
}
