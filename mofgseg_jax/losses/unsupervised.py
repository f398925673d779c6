"""Unsupervised loss: confidence-weighted cross-entropy against the teacher's pseudo-labels."""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mofgseg_jax.losses.supervised import pixel_cross_entropy


def pseudo_label_loss(logits: jax.Array, pseudo_labels: jax.Array, confidence: jax.Array, *,
                      strong_threshold: float = 0.97, ignore_index: int = 255) -> jax.Array:
    """ReCo/MOFGSeg unsupervised loss (DESIGN.md §3 step 6).

    Per-pixel CE against the pseudo-label (ignored pixels give 0). Image b gets the weight
    `w_b = #{pixels with confidence >= strong_threshold} / #{its non-ignored pixels}` (every pixel
    is counted in the numerator: padding and cutout set confidence to 0). The loss is the mean of
    `w_b * CE` over the pixels whose CE is > 0; when no pixel has CE > 0 it is 0 (the published code
    returns NaN there). The weight carries no gradient (it depends on the teacher only).

    Args:
      logits: `[B, H, W, K]` student scores on the perturbed unlabelled view.
      pseudo_labels: `[B, H, W]` int teacher argmax, `ignore_index` where dropped.
      confidence: `[B, H, W]` teacher max probability (0 at padded / cut-out pixels).
    Returns:
      float32 scalar.
    """
    ce, valid = pixel_cross_entropy(logits, pseudo_labels, ignore_index=ignore_index)
    batch = ce.shape[0]
    confident = jnp.sum((confidence >= strong_threshold).reshape(batch, -1), axis=1)
    num_valid = jnp.sum(valid.reshape(batch, -1), axis=1)
    # An image without valid pixels has CE 0 everywhere, so its weight never enters the loss.
    weight = jax.lax.stop_gradient(confident / jnp.maximum(num_valid, 1)).astype(jnp.float32)
    positive = ce > 0
    weighted = jnp.where(positive, weight[:, None, None] * ce, 0.0)
    return jnp.sum(weighted) / jnp.maximum(jnp.sum(positive), 1)
