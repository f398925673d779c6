"""SegFormer all-MLP decoder with a classifier and a representation head (MOFGSeg)."""

import functools
from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mofgseg_jax.models.conv import Conv, matmul_conv
from mofgseg_jax.models.resize import apply_along_axis1, interpolation_matrix

Dtype = Any

# Initialisation as mmcv/PyTorch: ConvModule convs kaiming-normal (fan_out, ReLU gain); plain
# Linear / Conv2d layers torch's default uniform(+-1/sqrt(fan_in)) = variance_scaling(1/3, fan_in).
kaiming_init = nn.initializers.variance_scaling(2.0, "fan_out", "normal")
torch_default_init = nn.initializers.variance_scaling(1.0 / 3.0, "fan_in", "uniform")


class BatchNormSettings(nn.Module, kw_only=True):
    """Base of the decoder modules: their BatchNorm settings (keyword-only) and the BN + ReLU tail.

    BatchNorm statistics sync over `bn_axis_name` when mapped; `dtype` is the compute dtype.
    """

    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    bn_axis_name: str | None = None
    dtype: Dtype = jnp.float32

    def bn_settings(self) -> dict[str, Any]:
        """These settings as keyword arguments, to hand down to a submodule."""
        return dict(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, bn_axis_name=self.bn_axis_name,
                    dtype=self.dtype)

    def bn_relu(self, x: jnp.ndarray, train: bool) -> jnp.ndarray:
        """BatchNorm (a submodule named `bn`; call from the compact method) then ReLU."""
        x = nn.BatchNorm(use_running_average=not train, momentum=self.bn_momentum, epsilon=self.bn_eps,
                         axis_name=self.bn_axis_name, dtype=self.dtype, name="bn")(x)
        return nn.relu(x)


class ConvBNReLU(BatchNormSettings):
    """Conv (symmetric padding k//2, no bias by default) -> BatchNorm -> ReLU, as mmcv's ConvModule.

    [B,H,W,Cin] -> [B,H,W,features].
    """

    features: int
    kernel_size: int = 1
    use_bias: bool = False  # the published EAM's 1x1 reductions keep a (redundant) conv bias
    conv3x3: str = "auto"  # algorithm of a 3x3 conv (`models.conv.conv3x3_same`)
    kernel_init: Callable = kaiming_init  # ConvModule's; the published EAM's plain Conv2d: torch's default

    @nn.compact
    def __call__(self, x: jnp.ndarray, train: bool = False) -> jnp.ndarray:
        k, p = self.kernel_size, self.kernel_size // 2
        x = Conv(self.features, (k, k), padding=((p, p), (p, p)), use_bias=self.use_bias,
                 kernel_init=self.kernel_init, dtype=self.dtype, name="conv",
                 conv_general_dilated=functools.partial(matmul_conv, conv3x3=self.conv3x3))(x)
        return self.bn_relu(x, train)


class MLP(nn.Module):
    """The per-pixel Linear `linear_c{i}/proj` ([in_features] -> [features]), as its weights.

    Holds `proj/kernel` `[in, features]` and `proj/bias` (nn.Dense's names and initialisers) and
    returns them rather than applying them: `LinearFuse` merges them with its own kernel.
    """

    features: int

    @nn.compact
    def __call__(self, in_features: int) -> tuple[jnp.ndarray, jnp.ndarray]:
        return _DenseWeights(self.features, in_features, name="proj")()


class _DenseWeights(nn.Module):
    features: int
    in_features: int

    @nn.compact
    def __call__(self) -> tuple[jnp.ndarray, jnp.ndarray]:
        kernel = self.param("kernel", torch_default_init, (self.in_features, self.features))
        return kernel, self.param("bias", nn.initializers.zeros_init(), (self.features,))


class ConvKernel(nn.Module):
    """Holds a conv kernel `[k, k, in_features, features]` named as nn.Conv's (`.../kernel`), for
    modules that apply it in pieces."""

    in_features: int
    features: int
    kernel_size: int = 1
    kernel_init: Callable = kaiming_init

    @nn.compact
    def __call__(self) -> jnp.ndarray:
        k = self.kernel_size
        return self.param("kernel", self.kernel_init, (k, k, self.in_features, self.features))


class LinearFuse(BatchNormSettings):
    """The per-stage Linears and `linear_fuse` (1x1 conv, no bias, + BN + ReLU over
    concat(resize(x_i @ A_i + a_i))), computed as BN(sum_i resize(x_i @ (A_i W_i)) + sum_i a_i W_i).

    stages: `(x_i [B,h_i,w_i,C_i], A_i [C_i,E], a_i [E])` at each stage's own resolution, in concat
    order -> `[B,H,W,features]`. W_i are the rows of the fuse kernel that multiply stage i's E
    channels. The same function: no nonlinearity sits between the Linear and the 1x1 conv, bilinear
    resizing is linear and keeps constants (its rows sum to 1). Same parameters as `ConvBNReLU`
    (`conv/kernel`, `bn/*`). Why: each stage is one matmul at its own resolution with the merged
    `[C_i, features]` weight (C_1 = 32 at MiT-B0, where E = 256: the stride-4 matmul shrinks 9x),
    and neither the E-channel projections nor their `[B,H,W,sum E]` concatenation are built. The
    resizes are separable: each stage is resized along H alone, and the W resizes of all stages are
    one matmul over their concatenated columns, so the full-size map is written once.
    """

    features: int

    @nn.compact
    def __call__(self, stages: Sequence[tuple[jnp.ndarray, jnp.ndarray, jnp.ndarray]], size: tuple[int, int],
                 train: bool = False) -> jnp.ndarray:
        kernel = ConvKernel(sum(a.shape[-1] for _, a, _ in stages), self.features, name="conv")()[0, 0]
        dtype = self.dtype or stages[0][0].dtype
        hp = jax.lax.Precision.HIGHEST  # tiny weight products: keep them exact (no TF32 / bf16 passes)
        out_h, out_w = int(size[0]), int(size[1])
        out, bias, start = 0.0, 0.0, 0
        narrow, narrow_cols = [], []  # stages still to be resized along W: [B,H,w_i,F], [W, w_i]
        for x, proj, proj_bias in stages:
            w = kernel[start:start + proj.shape[-1]]
            start += proj.shape[-1]
            merged = jnp.dot(proj, w, precision=hp).astype(dtype)
            bias = bias + jnp.dot(proj_bias, w, precision=hp)
            y = jnp.dot(x.astype(dtype), merged)
            b, h, w, f = y.shape
            if h != out_h:
                rows = jnp.asarray(interpolation_matrix(h, out_h, align_corners=False), dtype)
                y = apply_along_axis1(rows, y.reshape(b, h, w * f)).reshape(b, out_h, w, f)
            if w == out_w:
                out = out + y
            else:
                narrow.append(y)
                narrow_cols.append(interpolation_matrix(w, out_w, align_corners=False))
        if narrow:
            # sum_i resize_W(y_i) = one matmul over the stages' concatenated columns: the full-size
            # map is written once, not once per stage.
            cols = jnp.asarray(np.concatenate(narrow_cols, axis=1), dtype)
            joined = jnp.concatenate(narrow, axis=2)  # [B, H, sum w_i, F]
            b, _, sum_w, f = joined.shape
            out = out + apply_along_axis1(cols, joined.reshape(b * out_h, sum_w, f)).reshape(b, out_h, out_w, f)
        return self.bn_relu(out + bias.astype(dtype), train)


class SegFormerHead(BatchNormSettings):
    """[c1..c4] -> (logits [B,H1,W1,num_classes], rep [B,H1,W1,rep_dim]) at c1's size (stride 4).

    Per stage a Linear to embed_dim, bilinear (align_corners=False) resize to c1's size, concat
    (c4, c3, c2, c1), `linear_fuse` 1x1 conv+BN+ReLU, channel dropout, then two 1x1 convs:
    `linear_pred` (classifier) and `representation` (for the contrastive loss).
    """

    num_classes: int
    embed_dim: int = 256
    rep_dim: int = 512
    dropout_rate: float = 0.1

    @nn.compact
    def __call__(self, features: Sequence[jnp.ndarray], train: bool = False, rep_as_features: bool = False):
        """`rep_as_features`: return the representation head's input instead of its output (see
        `MOFGSeg`); the head's parameters exist either way once initialised."""
        size = features[0].shape[1:3]
        stages = [(c, *MLP(self.embed_dim, name=f"linear_c{i + 1}")(c.shape[-1]))
                  for i, c in enumerate(features)]
        # = ConvBNReLU(1x1) over concat of the projections resized to c1's size, in (c4, c3, c2, c1) order.
        x = LinearFuse(self.embed_dim, name="linear_fuse", **self.bn_settings())(stages[::-1], size, train)
        # Dropout2d: one decision per (sample, channel), shared over H and W.
        x = nn.Dropout(self.dropout_rate, broadcast_dims=(1, 2), deterministic=not train)(x)
        logits = Conv(self.num_classes, (1, 1), kernel_init=torch_default_init, dtype=self.dtype,
                      name="linear_pred")(x)
        if rep_as_features and not self.is_initializing():
            return logits, x
        rep = Conv(self.rep_dim, (1, 1), kernel_init=torch_default_init, dtype=self.dtype,
                   name="representation")(x)
        return logits, rep
