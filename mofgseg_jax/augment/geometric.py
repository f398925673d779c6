"""Geometric ops with fixed output shapes: random rescale + reflect-pad + random crop, h-flip.

The published code (a per-sample PIL round trip) resizes the crop by s ~ U(0.5, 2), pads it on the
right/bottom when smaller than the crop (image reflect, label 255, confidence 0), and takes a random
crop of the original size. Here the rescaled image of size floor(s H) x floor(s W) is only virtual:
for each output row/column we compute its coordinate in the (padded) rescaled image, reflect it
back into range where it falls into the padding, and map it to source coordinates. Everything has
the shape of the input, so it jit-compiles once whatever s is drawn.

Why not `jax.image.scale_and_translate`: it has no reflect padding, and its padded area would come
out as zeros. We build the same kind of dense resampling matrices ourselves, with PIL's
`BILINEAR` filter (triangle kernel widened by the downscale factor, i.e. antialiased when
shrinking, as PIL and jax.image do), and sample label/confidence with PIL's `NEAREST` rule
floor((v + 0.5) * in / out).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

_HIGHEST = jax.lax.Precision.HIGHEST  # resampling weights must not drop to bf16/tf32 on GPUs


def _virtual_coords(out_size: int, scaled_size: jax.Array, offset: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
    """Index into the rescaled image of each output pixel along one axis, and whether it is padding.

    Output pixel y sits at v = offset + y of the padded rescaled image; v >= scaled_size lies in the
    right/bottom reflect padding and reads the rescaled pixel 2 (scaled_size - 1) - v (torch/numpy
    'reflect', edge not repeated).
    """
    v = offset + jnp.arange(out_size)
    valid = v < scaled_size
    v = jnp.where(valid, v, 2 * (scaled_size - 1) - v)
    # Only reachable when s is at its lower bound 0.5 exactly (pad = size, which torch refuses).
    v = jnp.clip(v, 0, scaled_size - 1)
    return v, valid


def _bilinear_matrix(v: jax.Array, scaled_size: jax.Array, in_size: int) -> jax.Array:
    """Rows of PIL's BILINEAR resampling from `in_size` to `scaled_size`, at rescaled indices `v`.

    Returns `[len(v), in_size]` weights; each row sums to 1 (PIL normalises the kernel the same
    way, which also gives edge clamping).
    """
    scale = in_size / scaled_size.astype(jnp.float32)  # source pixels per rescaled pixel
    center = (v.astype(jnp.float32) + 0.5) * scale
    support = jnp.maximum(scale, 1.0)  # widened triangle = antialiasing when shrinking
    src = jnp.arange(in_size, dtype=jnp.float32) + 0.5
    weights = jnp.maximum(0.0, 1.0 - jnp.abs(src[None, :] - center[:, None]) / support)
    return weights / jnp.sum(weights, axis=1, keepdims=True)


def _nearest_index(v: jax.Array, scaled_size: jax.Array, in_size: int) -> jax.Array:
    scale = in_size / scaled_size.astype(jnp.float32)
    return jnp.clip(jnp.floor((v.astype(jnp.float32) + 0.5) * scale).astype(jnp.int32), 0, in_size - 1)


def rescale_crop(image: jax.Array, label: jax.Array, confidence: jax.Array, *, scaled_size: tuple,
                 offset: tuple, ignore_index: int = 255) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Resize to `scaled_size`, reflect-pad right/bottom to the input size, crop at `offset`.

    image `[H, W, C]` float, label `[H, W]` int, confidence `[H, W]` float -> same shapes/dtypes.
    `scaled_size` = (h, w) and `offset` = (y, x) are int scalars (may be traced). Image resampled
    with PIL's BILINEAR and reflected in the padding; label and confidence nearest, with
    label = `ignore_index` and confidence = 0 in the padding.
    """
    height, width = label.shape
    scaled_h, scaled_w = (jnp.asarray(n, jnp.int32) for n in scaled_size)
    v_y, valid_y = _virtual_coords(height, scaled_h, jnp.asarray(offset[0], jnp.int32))
    v_x, valid_x = _virtual_coords(width, scaled_w, jnp.asarray(offset[1], jnp.int32))

    rows = _bilinear_matrix(v_y, scaled_h, height).astype(image.dtype)
    cols = _bilinear_matrix(v_x, scaled_w, width).astype(image.dtype)
    out = jnp.einsum("yh,hwc->ywc", rows, image, precision=_HIGHEST)
    out_image = jnp.einsum("xw,ywc->yxc", cols, out, precision=_HIGHEST)

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
    off_y = jax.random.randint(k_y, (), 0, jnp.maximum(scaled_h, height) - height + 1)
    off_x = jax.random.randint(k_x, (), 0, jnp.maximum(scaled_w, width) - width + 1)
    return rescale_crop(image, label, confidence, scaled_size=(scaled_h, scaled_w),
                        offset=(off_y, off_x), ignore_index=ignore_index)


def random_hflip(key: jax.Array, image: jax.Array, label: jax.Array, confidence: jax.Array, *,
                 prob: float = 0.5) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mirror image `[H, W, C]`, label `[H, W]` and confidence `[H, W]` together with probability `prob`."""
    flip = jax.random.bernoulli(key, prob)
    return (jnp.where(flip, image[:, ::-1], image), jnp.where(flip, label[:, ::-1], label),
            jnp.where(flip, confidence[:, ::-1], confidence))
