"""Boundary supervision: class-boundary targets derived from a label map, and the Dice loss.

The published code precomputes edge maps offline (per-class Canny on the mask); here they come from
the (augmented) label map on the fly, so they always match the crop the network sees.
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
                 width: int = 1) -> jax.Array:
    """Binary class-boundary map of a label map.

    A labelled pixel is boundary when one of its 4- or 8-neighbours (inside the image) carries a
    *different labelled* class; pixels next to ignore only are not boundary, and ignored pixels are
    never boundary. Both sides of a class border are marked (so a border is 2 pixels wide at
    `width=1`). `width > 1` dilates that map `width - 1` times with the same neighbourhood, then
    clears ignored pixels again.

    Args:
      labels: `[B, H, W]` integer class ids with `ignore_index`.
      connectivity: 4 or 8.
      width: >= 1.
    Returns:
      float32 `[B, H, W]` in {0, 1}.
    """
    if width < 1:
        raise InputError(f"edge width must be >= 1, got {width}")
    offsets = _offsets(connectivity)
    labels = labels.astype(jnp.int32)
    valid = labels != ignore_index
    # Use -1 as "outside or ignored" so a neighbour there never counts as a different class.
    lab = jnp.where(valid, labels, -1)
    edge = jnp.zeros(labels.shape, bool)
    for dy, dx in offsets:
        other = _shift(lab, dy, dx, -1)
        edge = edge | ((other >= 0) & (other != lab))
    edge = edge & valid
    for _ in range(width - 1):
        grown = edge
        for dy, dx in offsets:
            grown = grown | _shift(edge, dy, dx, False)
        edge = grown & valid
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
