"""Convolutions computed as matmuls where XLA:CPU's convolution is the slower way.

Same parameters and function as `nn.Conv`; only the XLA ops differ. Two cases (issue 8):

* windows that do not overlap (1x1, or kernel = stride): one matmul on any backend. XLA:CPU runs a
  1x1 convolution's *weight gradient* as a convolution at ~50 GFLOP/s, where the same contraction as
  a matmul runs at ~300 (the boundary module, the decoder's heads and the MiT's spatial-reduction
  convs are all of this kind). On a GPU the dot is a GEMM as the 1x1 conv was.
* float32 3x3 stride-1 'same' convolutions on CPU: Winograd F(4x4, 3x3) (`models/winograd.py`),
  4x fewer multiply-adds. The boundary module's two 3x3 convs at stride 4 are compute-bound at the
  CPU's matmul rate: on a 2-core AVX2 EPYC their forward+backward took 291 ms (256 channels) and
  64 ms (64 input channels) directly, 128-160 and 31-37 ms by Winograd. GPUs keep XLA's
  convolution (cuDNN picks its own algorithm, Winograd included); `model.conv3x3` can force either.
"""

import functools
from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
from jax import lax

from mofgseg_jax.errors import InputError
from mofgseg_jax.models.winograd import winograd_conv3x3

_NHWC = ("NHWC", "HWIO", "NHWC")
CONV3X3_ALGORITHMS = ("auto", "winograd", "xla")


def conv3x3_same(x: jax.Array, kernel: jax.Array, precision: lax.PrecisionLike = None,
                 algorithm: str = "auto") -> jax.Array:
    """3x3 stride-1 convolution with zero padding 1: x `[B, H, W, Cin]`, kernel `[3, 3, Cin, Cout]`
    -> `[B, H, W, Cout]`.

    `algorithm`: 'winograd', 'xla' (`lax.conv_general_dilated`), or 'auto' = Winograd for float32
    on CPU (this process's default backend), XLA's convolution otherwise.
    """
    if algorithm not in CONV3X3_ALGORITHMS:
        raise InputError(f"conv3x3 algorithm {algorithm!r}: choose from {', '.join(CONV3X3_ALGORITHMS)}")
    if algorithm == "auto":
        cpu_f32 = jax.default_backend() == "cpu" and x.dtype == kernel.dtype == jnp.float32
        algorithm = "winograd" if cpu_f32 else "xla"
    if algorithm == "winograd":
        return winograd_conv3x3(x, kernel, precision=precision)
    return lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)), dimension_numbers=_NHWC,
                                    precision=precision)


def matmul_conv(lhs: jax.Array, rhs: jax.Array, window_strides: Sequence[int], padding: Any,
                lhs_dilation: Sequence[int] | None = None, rhs_dilation: Sequence[int] | None = None,
                dimension_numbers: Any = None, feature_group_count: int = 1,
                precision: lax.PrecisionLike = None, conv3x3: str = "auto", **kwargs: Any) -> jax.Array:
    """Drop-in for `lax.conv_general_dilated` as `nn.Conv` calls it (NHWC input, HWIO kernel).

    Non-overlapping windows without padding (kernel == stride, e.g. 1x1 stride 1) become a reshape
    into patches and one `dot_general`; 3x3 stride-1 convolutions padded by 1 go to `conv3x3_same`
    (with `conv3x3` as its algorithm); every other convolution goes to `lax.conv_general_dilated`.
    """
    kh, kw = rhs.shape[:2]
    pads = (lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
            if isinstance(padding, str) else padding)
    plain = (all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
             and feature_group_count == 1 and lhs.ndim == 4 and not kwargs
             and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, _NHWC))
    if (plain and (kh, kw) == (3, 3) and tuple(window_strides) == (1, 1)
            and all(tuple(p) == (1, 1) for p in pads)):
        return conv3x3_same(lhs, rhs, precision=precision, algorithm=conv3x3)
    non_overlapping = plain and tuple(window_strides) == (kh, kw) and all(tuple(p) == (0, 0) for p in pads)
    if not non_overlapping:
        return lax.conv_general_dilated(lhs, rhs, window_strides, padding, lhs_dilation=lhs_dilation,
                                        rhs_dilation=rhs_dilation, dimension_numbers=dimension_numbers,
                                        feature_group_count=feature_group_count, precision=precision,
                                        **kwargs)
    b, h, w, c = lhs.shape
    oh, ow = h // kh, w // kw  # VALID drops the remainder rows/columns
    x = lhs[:, :oh * kh, :ow * kw]
    if (kh, kw) != (1, 1):
        x = x.reshape(b, oh, kh, ow, kw, c).transpose(0, 1, 3, 2, 4, 5)
    x = x.reshape(b, oh, ow, kh * kw * c)
    return lax.dot_general(x, rhs.reshape(kh * kw * c, rhs.shape[-1]), (((3,), (0,)), ((), ())),
                           precision=precision)


# `nn.Conv` with the matmul routes above; identical parameters.
Conv = functools.partial(nn.Conv, conv_general_dilated=matmul_conv)
