"""Batch mixing of the unlabelled view: cutout, cutmix, classmix (DESIGN.md §3 step 4(b)).

Per sample i, with "next" = sample (i + 1) mod B (the published `generate_unsup_data`):
- cutout: a rectangle of `area_ratio` of the area (published: half); inside it the image is the
  normalisation mean colour (`mean`, ImageNet's by default), the confidence 0 and the label ignore
  (the published loop zeroes the *normalised* tensor, which its next PIL round trip turns back into
  the mean colour; in our [0, 1] images that is the mean);
- cutmix: the same kind of rectangle, filled (image, label, confidence) from the next sample;
- classmix: a random `class_ratio` (published: half), rounded down, of the classes present in the
  next sample's pseudo-label; the next sample's pixels of those classes are pasted onto sample i.
Rectangle (r = area_ratio): width w ~ U{floor(r W) + 1, ..., W - 1} (w = W when floor(r W) + 1 >= W),
height round(r H W / w), top-left corner uniform over the positions that keep it inside (numpy
`randint` ranges of the published code, r = 1/2).
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import jax
import jax.numpy as jnp

from mofgseg_jax.augment.photometric import IMAGENET_MEAN
from mofgseg_jax.augment.sampling import uniform_int
from mofgseg_jax.errors import InputError

MIX_MODES = ("cutout", "cutmix", "classmix", "none")


def rectangle_mask(key: jax.Array, height: int, width: int, *, area_ratio: float = 0.5) -> jax.Array:
    """Bool `[H, W]`, True inside a random rectangle of `area_ratio` of the image (see module doc)."""
    k_w, k_x, k_y = jax.random.split(key, 3)
    area = height * width * area_ratio
    # numpy randint(W * ratio + 1, W) truncates a float low bound: same as floor(W * ratio) + 1;
    # at most W, where the published range would be empty (ratio near 1: the whole width).
    low = min(int(width * area_ratio) + 1, width)
    rect_w = uniform_int(k_w, low, max(width, low + 1))
    rect_h = jnp.round(area / rect_w).astype(jnp.int32)
    x0 = uniform_int(k_x, 0, width - rect_w + 1)
    y0 = uniform_int(k_y, 0, height - rect_h + 1)
    ys = jnp.arange(height)[:, None]
    xs = jnp.arange(width)[None, :]
    return (ys >= y0) & (ys < y0 + rect_h) & (xs >= x0) & (xs < x0 + rect_w)


def class_mask(key: jax.Array, label: jax.Array, *, num_classes: int, class_ratio: float = 0.5) -> jax.Array:
    """Bool `[H, W]`: pixels of `label` whose class is in a random `class_ratio` of the classes present.

    label `[H, W]` int; ids outside [0, num_classes) (the ignore label) are never present and never
    selected. The number selected is floor(class_ratio x number present) (published: half), drawn
    without replacement (random ranks). `class_ratio` is a Python number (static).
    """
    ids = label.reshape(-1)
    in_range = (ids >= 0) & (ids < num_classes)
    # Scatter instead of a [H*W, K] comparison: memory stays O(H*W + K).
    present = jnp.zeros((num_classes,), jnp.bool_).at[jnp.where(in_range, ids, num_classes)].set(
        True, mode="drop")
    scores = jnp.where(present, jax.random.uniform(key, (num_classes,)), 2.0)
    ranks = jnp.argsort(jnp.argsort(scores))
    # floor(ratio * n) per possible count n, in exact decimal arithmetic: 0.7 x 10 is 7, not the
    # 6.99... of binary floats.
    ratio = Fraction(str(class_ratio))
    counts = jnp.asarray([int(ratio * n) for n in range(num_classes + 1)], jnp.int32)
    selected = present & (ranks < counts[jnp.sum(present)])
    return selected[jnp.clip(label, 0, num_classes - 1)] & (label >= 0) & (label < num_classes)


def mix_sample(key: jax.Array, image: jax.Array, label: jax.Array, confidence: jax.Array,
               next_image: jax.Array, next_label: jax.Array, next_confidence: jax.Array, *,
               mode: str, num_classes: int, ignore_index: int = 255, area_ratio: float = 0.5,
               class_ratio: float = 0.5, mean: Sequence[float] = IMAGENET_MEAN
               ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Mix one sample (image `[H, W, C]`, label `[H, W]`, confidence `[H, W]`) with the next one.

    area_ratio: the cutout/cutmix rectangle's fraction of the image; class_ratio: classmix's fraction
    of the classes present; mean: per-channel normalisation mean in [0, 1], cutout's fill colour.
    """
    height, width = label.shape
    if mode == "none":
        return image, label, confidence
    if mode == "cutout":
        inside = rectangle_mask(key, height, width, area_ratio=area_ratio)
        return (jnp.where(inside[..., None], jnp.asarray(mean, image.dtype), image),
                jnp.where(inside, jnp.asarray(ignore_index, label.dtype), label),
                jnp.where(inside, jnp.zeros((), confidence.dtype), confidence))
    if mode == "cutmix":
        take_next = rectangle_mask(key, height, width, area_ratio=area_ratio)
    elif mode == "classmix":
        take_next = class_mask(key, next_label, num_classes=num_classes, class_ratio=class_ratio)
    else:
        raise InputError(f"mixing: mix_mode must be one of {MIX_MODES}, got {mode!r}")
    return (jnp.where(take_next[..., None], next_image, image), jnp.where(take_next, next_label, label),
            jnp.where(take_next, next_confidence, confidence))


def mix_batch(keys: jax.Array, images: jax.Array, labels: jax.Array, confidence: jax.Array, *,
              mode: str, num_classes: int, ignore_index: int = 255, area_ratio: float = 0.5,
              class_ratio: float = 0.5, mean: Sequence[float] = IMAGENET_MEAN
              ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """`mix_sample` over a batch: keys `[B]`, images `[B, H, W, C]`, labels/confidence `[B, H, W]`."""
    if mode not in MIX_MODES:
        raise InputError(f"mixing: mix_mode must be one of {MIX_MODES}, got {mode!r}")
    nxt = [jnp.roll(x, -1, axis=0) for x in (images, labels, confidence)]  # sample i gets i + 1

    def one(k, im, lb, cf, nim, nlb, ncf):
        return mix_sample(k, im, lb, cf, nim, nlb, ncf, mode=mode, num_classes=num_classes,
                          ignore_index=ignore_index, area_ratio=area_ratio, class_ratio=class_ratio, mean=mean)

    return jax.vmap(one)(keys, images, labels, confidence, *nxt)
