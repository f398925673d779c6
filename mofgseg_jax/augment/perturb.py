"""Strong perturbation of the unlabelled batch on device (DESIGN.md §3 step 4).

Order as the published training loop: random rescale + crop back -> mixing across the batch ->
colour jitter -> Gaussian blur -> h-flip (image, pseudo-label and confidence together). One PRNG
key per sample (`jax.random.split(key, B)`): samples are perturbed independently (up to mixing,
which by design reads sample i + 1).
Per-sample stages run under `jax.lax.map` where that is faster than `jax.vmap` (comments below);
everything has fixed shapes, no host callbacks, and works inside `shard_map` / `pmap` bodies.
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from mofgseg_jax.augment import geometric, mixing, photometric
from mofgseg_jax.errors import InputError


def perturb_unlabeled(key: jax.Array, images01: jax.Array, labels: jax.Array, confidence: jax.Array, *,
                      mix_mode: str = "cutout", num_classes: int, ignore_index: int = 255,
                      mix_area_ratio: float = 0.5, classmix_class_ratio: float = 0.5,
                      mean: Sequence[float] = photometric.IMAGENET_MEAN,
                      scale_range: Sequence[float] = (0.5, 2.0), jitter_prob: float = 0.8,
                      brightness: Sequence[float] = (0.75, 1.25), contrast: Sequence[float] = (0.75, 1.25),
                      saturation: Sequence[float] = (0.75, 1.25), hue: Sequence[float] = (-0.25, 0.25),
                      blur_prob: float = 0.5, blur_sigma: Sequence[float] = (0.15, 1.15),
                      blur_kernel_size: int = 9, flip_prob: float = 0.5
                      ) -> tuple[jax.Array, jax.Array, jax.Array]:
    """Perturb a batch of unlabelled images with their teacher pseudo-labels and confidences.

    Args:
      key: one PRNG key for the batch.
      images01: `[B, H, W, 3]` float in [0, 1] (before `photometric.normalize`).
      labels: `[B, H, W]` int pseudo-labels in [0, num_classes).
      confidence: `[B, H, W]` float teacher confidence (max softmax probability).
      mix_mode: 'cutout' | 'cutmix' | 'classmix' | 'none' (static).
      num_classes: number of classes (static; classmix's class table).
      mix_area_ratio: the cutout/cutmix rectangle's fraction of the image area (published 0.5).
      classmix_class_ratio: classmix's fraction of the classes present, rounded down (published 0.5).
      mean: per-channel normalisation mean in [0, 1] (`data.mean`): the colour cutout fills in.
      blur_kernel_size: odd, static; 9 covers +-3.5 sigma at the largest sigma 1.15.
      Other arguments: probabilities and ranges of DESIGN.md §3 step 4 (config `augment.*`), as
      Python floats; `scale_range[0]` must be static (it sets the resampling footprint).

    Returns:
      (images01 `[B, H, W, 3]` in [0, 1], labels `[B, H, W]` with ids or `ignore_index`,
      confidence `[B, H, W]`, 0 wherever the label became `ignore_index` by padding or cutout).
      Shapes and dtypes as given.
    """
    if mix_mode not in mixing.MIX_MODES:
        raise InputError(f"perturb_unlabeled: mix_mode must be one of {mixing.MIX_MODES}, got {mix_mode!r}")
    batch = images01.shape[0]
    keys = jax.random.split(key, batch)
    sample_keys = jax.vmap(lambda k: jax.random.split(k, 5))(keys)  # [B, 5]
    k_geo, k_mix, k_jitter, k_blur, k_flip = (sample_keys[:, i] for i in range(5))

    # lax.map over samples, not vmap: it materialises the stage's output. Vmapped, XLA:CPU fused the
    # resampling into the mixing's roll (sample i + 1 into sample i) and redid it per use, making
    # cutmix 3x slower than cutout.
    images, labels_out, conf = jax.lax.map(
        lambda args: geometric.random_rescale_crop(*args, scale_range=scale_range,
                                                   ignore_index=ignore_index),
        (k_geo, images01, labels, confidence))

    images, labels_out, conf = mixing.mix_batch(k_mix, images, labels_out, conf, mode=mix_mode,
                                                num_classes=num_classes, ignore_index=ignore_index,
                                                area_ratio=mix_area_ratio, class_ratio=classmix_class_ratio,
                                                mean=mean)

    def photometric_one(args):
        k_j, k_b, im = args
        im = photometric.random_color_jitter(k_j, im, prob=jitter_prob, brightness=brightness,
                                             contrast=contrast, saturation=saturation, hue=hue)
        return photometric.random_gaussian_blur(k_b, im, prob=blur_prob, sigma_range=blur_sigma,
                                                kernel_size=blur_kernel_size)

    # lax.map again: the jitter's random op order and the apply probabilities are real branches
    # per image only when the image is not batched (see photometric's module doc).
    images = jax.lax.map(photometric_one, (k_jitter, k_blur, images))
    images, labels_out, conf = jax.vmap(
        lambda k, im, lb, cf: geometric.random_hflip(k, im, lb, cf, prob=flip_prob)
    )(k_flip, images, labels_out, conf)
    return images.astype(images01.dtype), labels_out.astype(labels.dtype), conf.astype(confidence.dtype)
