"""Geometric ops with fixed output shapes: random rescale + reflect-pad + random crop, h-flip.

The published code (a per-sample PIL round trip) resizes the crop by s ~ U(0.5, 2), pads it on the
right/bottom when smaller than the crop (image reflect, label 255, confidence 0), and takes a random
crop of the original size. Here the rescaled image of size floor(s H) x floor(s W) is only virtual:
for each output row/column we compute its coordinate in the (padded) rescaled image, reflect it
back into range where it falls into the padding, and map it to source coordinates. Everything has
the shape of the input, so it jit-compiles once whatever s is drawn.

Why not `jax.image.scale_and_translate`: it has no reflect padding (the padded area would come out
as zeros), and it multiplies by dense [out, in] resampling matrices, the slowest part of the whole
perturbation on CPU. We gather a few taps per output pixel instead, with PIL's `BILINEAR` filter
(triangle kernel widened by the downscale factor, i.e. antialiased when shrinking, as PIL and
jax.image do), and sample label/confidence with PIL's `NEAREST` rule floor((v + 0.5) * in / out).
Tests check equality with PIL resize + numpy reflect pad + crop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from mofgseg_jax.augment.sampling import uniform_int

_HIGHEST = jax.lax.Precision.HIGHEST  # resampling weights must not drop to bf16/tf32 on GPUs


def _virtual_coords(out_size: int, scaled_size: jax.Array, offset: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
    """Index into the rescaled image of each output pixel along one axis, and whether it is padding.

    Output pixel y sits at v = offset + y of the padded rescaled image; v >= scaled_size lies in the
    right/bottom reflect padding and reads the rescaled pixel that numpy's 'reflect' padding (which
    torchvision's PIL path calls) puts there: the edge is not repeated, and a pad wider than the
    image (odd sizes with s just above 0.5) reflects again, i.e. v mod 2 (n - 1), mirrored.
    """
    v = offset + jnp.arange(out_size)
    valid = v < scaled_size
    period = jnp.maximum(2 * (scaled_size - 1), 1)
    m = jnp.mod(v, period)
    m = jnp.where(m >= scaled_size, period - m, m)
    return jnp.where(valid, v, jnp.clip(m, 0, scaled_size - 1)), valid


def _bilinear_taps(v: jax.Array, scaled_size: jax.Array, in_size: int, num_taps: int
                   ) -> tuple[jax.Array, jax.Array]:
    """PIL's BILINEAR resampling from `in_size` to `scaled_size`, at rescaled indices `v`, as taps.

    Returns source indices and weights, both `[len(v), num_taps]`; the weights of each row sum to 1
    (PIL normalises over the in-range taps the same way, which also gives edge clamping).
    A triangle of half-width max(in/scaled, 1) covers at most 2 max(in/scaled, 1) source pixels,
    so `num_taps` = ceil(2 max(in/scaled, 1)) suffices (`_num_taps`); extra taps get weight 0.
    """
    scale = in_size / scaled_size.astype(jnp.float32)  # source pixels per rescaled pixel
    center = (v.astype(jnp.float32) + 0.5) * scale
    support = jnp.maximum(scale, 1.0)  # widened triangle = antialiasing when shrinking
    # PIL's first tap floor(center - support + 0.5), in exact integer arithmetic: computed in float,
    # XLA may evaluate it in two fusions with different rounding and misalign taps and weights.
    first = jnp.where(scaled_size >= in_size,
                      jnp.floor_divide((2 * v + 1) * in_size - scaled_size, 2 * scaled_size),
                      jnp.floor_divide((2 * v - 1) * in_size + scaled_size, 2 * scaled_size))
    src = first[:, None] + jnp.arange(num_taps)[None, :]
    distance = jnp.abs(src.astype(jnp.float32) + 0.5 - center[:, None])
    weights = jnp.maximum(0.0, 1.0 - distance / support)
    weights = jnp.where((src >= 0) & (src < in_size), weights, 0.0)
    return jnp.clip(src, 0, in_size - 1), weights / jnp.sum(weights, axis=1, keepdims=True)


def _nearest_index(v: jax.Array, scaled_size: jax.Array, in_size: int) -> jax.Array:
    # PIL NEAREST: floor((v + 0.5) * in / scaled), exactly, in integers.
    return jnp.clip(jnp.floor_divide((2 * v + 1) * in_size, 2 * scaled_size), 0, in_size - 1)


def _num_taps(in_size: int, min_scale: float) -> int:
    # Widest triangle: half-width in / floor(in * min_scale) source pixels. Its open support holds
    # at most ceil(2 * half-width) integers, all at or after PIL's first tap.
    support = max(in_size / max(math.floor(in_size * min_scale), 1), 1.0)
    return math.ceil(2 * support)


def rescale_crop(image: jax.Array, label: jax.Array, confidence: jax.Array, *, scaled_size: tuple,
                 offset: tuple, ignore_index: int = 255, min_scale: float = 0.5
                 ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Resize to `scaled_size`, reflect-pad right/bottom to the input size, crop at `offset`.

    image `[H, W, C]` float, label `[H, W]` int, confidence `[H, W]` float -> same shapes/dtypes.
    `scaled_size` = (h, w) and `offset` = (y, x) are int scalars (may be traced). Image resampled
    with PIL's BILINEAR and reflected in the padding; label and confidence nearest, with
    label = `ignore_index` and confidence = 0 in the padding. `min_scale` (static) bounds how far
    the image may shrink, scaled_size >= floor(size * min_scale); it sets the number of taps.
    """
    height, width = label.shape
    scaled_h, scaled_w = (jnp.asarray(n, jnp.int32) for n in scaled_size)
    v_y, valid_y = _virtual_coords(height, scaled_h, jnp.asarray(offset[0], jnp.int32))
    v_x, valid_x = _virtual_coords(width, scaled_w, jnp.asarray(offset[1], jnp.int32))

    # Separable: gather num_taps source rows per output row, then columns. (Dense [out, in]
    # resampling matrices, as jax.image uses, cost ~50x more multiply-adds here and were the
    # slowest part of the perturbation on CPU.)
    rows, w_rows = _bilinear_taps(v_y, scaled_h, height, _num_taps(height, min_scale))
    cols, w_cols = _bilinear_taps(v_x, scaled_w, width, _num_taps(width, min_scale))
    # Both passes as (batched) dots over the taps, which XLA materialises. Tried on CPU: fused
    # multiply-add passes let XLA recompute the row pass inside the column pass; a dot for rows
    # and fused columns was faster alone but slower inside perturb_unlabeled.
    out = jnp.einsum("yt,ytwc->ywc", w_rows.astype(image.dtype), image[rows], precision=_HIGHEST)
    out_image = jnp.einsum("xt,yxtc->yxc", w_cols.astype(image.dtype), out[:, cols], precision=_HIGHEST)

    idx_y = _nearest_index(v_y, scaled_h, height)
    idx_x = _nearest_index(v_x, scaled_w, width)
    valid = valid_y[:, None] & valid_x[None, :]
    out_label = jnp.where(valid, label[idx_y][:, idx_x], jnp.asarray(ignore_index, label.dtype))
    out_conf = jnp.where(valid, confidence[idx_y][:, idx_x], jnp.zeros((), confidence.dtype))
    return out_image, out_label, out_conf


def random_rescale_crop(key: jax.Array, image: jax.Array, label: jax.Array, confidence: jax.Array, *,
                        scale_range: Sequence[float] = (0.5, 2.0), ignore_index: int = 255
                        ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`rescale_crop` with s ~ U(scale_range) and a uniform crop offset over the valid range.

    image `[H, W, C]` float, label `[H, W]` int, confidence `[H, W]` float -> same shapes/dtypes.
    Scaled size floor(s H) x floor(s W) as the published `int(H * s)`; offset as torchvision
    `RandomCrop.get_params` on the padded image.
    """
    height, width = label.shape
    k_scale, k_y, k_x = jax.random.split(key, 3)
    s = jax.random.uniform(k_scale, (), minval=scale_range[0], maxval=scale_range[1])
    # At least 1 pixel so the resampling weights stay defined.
    scaled_h = jnp.maximum(jnp.floor(height * s).astype(jnp.int32), 1)
    scaled_w = jnp.maximum(jnp.floor(width * s).astype(jnp.int32), 1)
    off_y = uniform_int(k_y, 0, jnp.maximum(scaled_h, height) - height + 1)
    off_x = uniform_int(k_x, 0, jnp.maximum(scaled_w, width) - width + 1)
    return rescale_crop(image, label, confidence, scaled_size=(scaled_h, scaled_w),
                        offset=(off_y, off_x), ignore_index=ignore_index, min_scale=scale_range[0])


def random_hflip(key: jax.Array, image: jax.Array, label: jax.Array, confidence: jax.Array, *,
                 prob: float = 0.5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mirror image `[H, W, C]`, label `[H, W]` and confidence `[H, W]` together with probability `prob`."""
    flip = jax.random.bernoulli(key, prob)
    return (jnp.where(flip, image[:, ::-1], image), jnp.where(flip, label[:, ::-1], label),
            jnp.where(flip, confidence[:, ::-1], confidence))
