"""Bilinear resize of NHWC maps with PyTorch `F.interpolate(mode='bilinear')` semantics.

`jax.image.resize` uses half-pixel centres (= align_corners=False) but antialiases when it shrinks,
and has no align_corners=True mode; the network needs both exactly as PyTorch computes them, so
this is a small separable gather: two gathers and a lerp per axis, any sizes, differentiable.
"""

import jax.numpy as jnp
import numpy as np


def _source_coords(in_size: int, out_size: int, align_corners: bool):
    """Per output index: (low index, high index, weight of high) as NumPy constants."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        # PyTorch (size given, no scale_factor): scale = in/out, half-pixel centres, clamp at 0.
        src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    w = (src - lo).astype(np.float32)
    return lo, hi, w


def _resize_axis(x: jnp.ndarray, axis: int, out_size: int, align_corners: bool) -> jnp.ndarray:
    in_size = x.shape[axis]
    if in_size == out_size:
        return x
    lo, hi, w = _source_coords(in_size, out_size, align_corners)
    shape = [1] * x.ndim
    shape[axis] = out_size
    w = jnp.asarray(w.reshape(shape), dtype=x.dtype)
    x_lo = jnp.take(x, jnp.asarray(lo), axis=axis)
    x_hi = jnp.take(x, jnp.asarray(hi), axis=axis)
    return x_lo + (x_hi - x_lo) * w


def resize_bilinear(x: jnp.ndarray, size: tuple[int, int], *, align_corners: bool) -> jnp.ndarray:
    """Resizes `x` [B,H,W,C] to [B,size[0],size[1],C], bilinear, as torch `F.interpolate` does.

    align_corners=False: half-pixel centres, no antialiasing (also when shrinking), like torch.
    align_corners=True: corner pixels of input and output coincide.
    """
    out_h, out_w = int(size[0]), int(size[1])
    x = _resize_axis(x, 1, out_h, align_corners)
    return _resize_axis(x, 2, out_w, align_corners)
