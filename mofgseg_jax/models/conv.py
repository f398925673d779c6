"""Convolutions whose windows do not overlap (1x1, or kernel = stride) computed as matmuls.

Same parameters and function as `nn.Conv`; only the XLA op differs. Why: XLA:CPU runs a 1x1
convolution's *weight gradient* as a convolution at ~50 GFLOP/s, where the same contraction as a
matmul runs at ~300 (the boundary module, the decoder's heads and the MiT's spatial-reduction convs
are all of this kind; issue 8). On a GPU the dot is a GEMM as the 1x1 conv was (not re-measured there
since this change).
"""

import functools

import flax.linen as nn
from jax import lax


def patch_matmul_conv(lhs, rhs, window_strides, padding, lhs_dilation=None, rhs_dilation=None,
                      dimension_numbers=None, feature_group_count=1, precision=None, **kwargs):
    """Drop-in for `lax.conv_general_dilated` as `nn.Conv` calls it (NHWC input, HWIO kernel).

    Non-overlapping windows without padding (kernel == stride, e.g. 1x1 stride 1) become a reshape
    into patches and one `dot_general`; every other convolution goes to `lax.conv_general_dilated`.
    """
    kh, kw = rhs.shape[:2]
    pads = (lax.padtype_to_pads(lhs.shape[1:3], (kh, kw), window_strides, padding)
            if isinstance(padding, str) else padding)
    non_overlapping = (
        tuple(window_strides) == (kh, kw) and all(tuple(p) == (0, 0) for p in pads)
        and all(d in (None, 1) for d in tuple(lhs_dilation or ()) + tuple(rhs_dilation or ()))
        and feature_group_count == 1 and lhs.ndim == 4 and not kwargs
        and dimension_numbers == lax.conv_dimension_numbers(lhs.shape, rhs.shape, ("NHWC", "HWIO", "NHWC")))
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


# `nn.Conv` with the matmul path for non-overlapping windows; identical parameters.
Conv = functools.partial(nn.Conv, conv_general_dilated=patch_matmul_conv)
