"""Boundary supervision: class-boundary targets derived from a label map, and the Dice loss.

The published code precomputes edge maps offline (Canny on the mask file once per value of
`np.unique(mask)`, the void label 255 included, so a class/void border is an edge) and pads them
with 0 when it crops. Here they come from the (augmented) label map on the fly, so they always match
the crop the network sees; `edge_targets(ignore_is_region=True, inside=...)` reproduces both rules:
void counts as a label of its own, crop padding (outside the image) makes no edge.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mofgseg_jax.errors import InputError


def _offsets(connectivity: int) -> tuple[tuple[int, int], ...]:
    if connectivity == 4:
        return ((-1, 0), (1, 0), (0, -1), (0, 1))
    if connectivity == 8:
        return tuple((dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0))
    raise InputError(f"edge connectivity must be 4 or 8, got {connectivity}")


def _shift(x: jax.Array, dy: int, dx: int, fill) -> jax.Array:
    """`out[b, i, j] = x[b, i + dy, j + dx]`, `fill` outside the image. x: `[B, H, W]`."""
    _, h, w = x.shape
    padded = jnp.pad(x, ((0, 0), (1, 1), (1, 1)), constant_values=fill)
    return padded[:, 1 + dy:1 + dy + h, 1 + dx:1 + dx + w]


def edge_targets(labels: jax.Array, *, ignore_index: int = 255, connectivity: int = 8,
                 width: int = 1, ignore_is_region: bool = False,
                 inside: jax.Array | None = None) -> jax.Array:
    """Binary class-boundary map of a label map.

    A pixel is boundary when one of its 4- or 8-neighbours inside the image carries a different
    label. Both sides of a border are marked (so a border is 2 pixels wide at `width=1`).
    `width > 1` dilates that map `width - 1` times with the same neighbourhood, then clears the
    pixels that may not be boundary again. Which labels count:

    - `ignore_is_region=False` (the old rule): only labelled pixels. A pixel next to ignore only is
      not boundary, and ignored pixels never are.
    - `ignore_is_region=True` (as the published per-value Canny maps): `ignore_index` is a label of
      its own, so a class/void border marks both sides, the void pixels included.

    `inside` (1 = pixel of the image, 0 = crop padding) removes the padding in either case: padded
    pixels are never boundary and never make a neighbour boundary, whatever their label. Without
    it every pixel is inside; with `ignore_is_region=True` that makes padding labelled
    `ignore_index` a void region, so pass `inside` whenever the labels may be padded.

    Args:
      labels: `[B, H, W]` integer class ids with `ignore_index`.
      connectivity: 4 or 8.
      width: >= 1.
      ignore_is_region: whether `ignore_index` is a region (True) or outside every region (False).
      inside: optional `[B, H, W]` bool or {0, 1} map of the pixels inside the image.
    Returns:
      float32 `[B, H, W]` in {0, 1}.
    """
    if width < 1:
        raise InputError(f"edge width must be >= 1, got {width}")
    offsets = _offsets(connectivity)
    labels = labels.astype(jnp.int32)
    counted = jnp.ones(labels.shape, bool) if ignore_is_region else labels != ignore_index
    if inside is not None:
        counted = counted & inside.astype(bool)
    # -1 = "outside, padding or (old rule) ignored": a neighbour there never counts as a different
    # label. Labels are >= 0, so -1 never collides with one (255 included).
    lab = jnp.where(counted, labels, -1)
    edge = jnp.zeros(labels.shape, bool)
    for dy, dx in offsets:
        other = _shift(lab, dy, dx, -1)
        edge = edge | ((other >= 0) & (other != lab))
    edge = edge & counted
    for _ in range(width - 1):
        grown = edge
        for dy, dx in offsets:
            grown = grown | _shift(edge, dy, dx, False)
        edge = grown & counted
    return edge.astype(jnp.float32)


def dice_loss(edge_prob: jax.Array, target: jax.Array, *, smooth: float = 1.0) -> jax.Array:
    """Per-image Dice loss `1 - (2 sum(p t) + smooth) / (sum(p^2) + sum(t^2) + smooth)`, batch mean.

    Args:
      edge_prob: `[B, H, W]` or `[B, H, W, 1]` boundary probability.
      target: `[B, H, W]` (or `[B, H, W, 1]`) binary boundary target.
    Returns:
      float32 scalar.
    """
    if edge_prob.ndim == 4:
        edge_prob = edge_prob[..., 0]
    if target.ndim == 4:
        target = target[..., 0]
    p = edge_prob.astype(jnp.float32).reshape(edge_prob.shape[0], -1)
    t = target.astype(jnp.float32).reshape(target.shape[0], -1)
    inter = jnp.sum(p * t, axis=1)
    denom = jnp.sum(p * p, axis=1) + jnp.sum(t * t, axis=1)
    return jnp.mean(1.0 - (2.0 * inter + smooth) / (denom + smooth))
