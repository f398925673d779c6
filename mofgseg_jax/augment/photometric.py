"""Photometric ops on float images in [0, 1] (NHWC): normalisation, colour jitter, grayscale, blur.

Semantics follow torchvision's tensor path (`ColorJitter`, `rgb_to_grayscale`, `GaussianBlur`),
which in turn mirrors PIL's `ImageEnhance`, so a model trained with the published PIL round trip
sees the same distribution of images. Per-image functions take `[H, W, 3]`; the `random_*`
wrappers take one PRNG key per image and are meant to be mapped over the batch (see below).

Why our own jnp and not dm-pix: dm-pix follows `tf.image`, not torchvision -- brightness is
additive (torchvision multiplies), contrast blends towards per-channel means (torchvision: the
mean of the grayscale image), saturation scales S in HSV (torchvision blends with the grayscale
image), nothing is clipped, there is no ColorJitter with a random op order, and its blur is a
zero-padded 'SAME' convolution (torchvision reflects). The formulas are a few lines each, so we
write them here exactly.

Per-image branching (`lax.switch` for the op order, `lax.cond` for the apply probabilities) pays
off only when the image is not batched: under `jax.vmap` a batched branch index turns every switch
into a select that evaluates all branches (measured 17x slower on CPU for the jitter). So map these
over the batch with `jax.lax.map`, as `perturb.perturb_unlabeled` does.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
from jax import lax

from mofgseg_jax.errors import InputError

# The defaults of `data.mean` / `data.std` (configs/common.py), on the [0, 1] scale.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# ITU-R 601-2 luma, as PIL's convert('L') (torchvision's tensor path uses 0.2989 for red).
GRAY_WEIGHTS = (0.299, 0.587, 0.114)


def normalize(images01: jax.Array, mean: Sequence[float] = IMAGENET_MEAN,
              std: Sequence[float] = IMAGENET_STD) -> jax.Array:
    """`(x - mean) / std` per channel. images01: `[..., H, W, 3]` in [0, 1] -> same shape, float."""
    if not jnp.issubdtype(images01.dtype, jnp.floating):
        images01 = images01.astype(jnp.float32)
    mean = jnp.asarray(mean, images01.dtype)
    std = jnp.asarray(std, images01.dtype)
    return (images01 - mean) / std


def mean_std(data_cfg: Any) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """(`data.mean`, `data.std`) of a config's data section, as float tuples on the [0, 1] scale.

    A config stored by a run older than these keys lacks them: it was trained with ImageNet's."""
    mean = data_cfg.get("mean", IMAGENET_MEAN)
    std = data_cfg.get("std", IMAGENET_STD)
    return tuple(float(m) for m in mean), tuple(float(s) for s in std)


def grayscale(image: jax.Array, weights: Sequence[float] = GRAY_WEIGHTS) -> jax.Array:
    """Luma of an RGB image. `[..., H, W, 3]` -> `[..., H, W, 1]` (kept 3-D to broadcast)."""
    r, g, b = image[..., 0:1], image[..., 1:2], image[..., 2:3]
    return weights[0] * r + weights[1] * g + weights[2] * b


def random_grayscale(key: jax.Array, image: jax.Array, *, prob: float = 0.2) -> jax.Array:
    """torchvision `RandomGrayscale`: with probability `prob` the luma in all 3 channels. `[H, W, 3]`."""
    apply = jax.random.bernoulli(key, prob)
    return jnp.where(apply, jnp.broadcast_to(grayscale(image), image.shape), image)


def _blend(image: jax.Array, other: jax.Array, factor: jax.Array) -> jax.Array:
    # torchvision `_blend` == PIL `Image.blend(other, image, factor)`, clipped to the valid range.
    return jnp.clip(factor * image + (1.0 - factor) * other, 0.0, 1.0)


def adjust_brightness(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Multiply by `factor` (blend with black). image `[H, W, 3]` in [0, 1]."""
    return _blend(image, jnp.zeros_like(image), factor)


def adjust_contrast(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the image's mean grey level. image `[H, W, 3]` in [0, 1].

    The mean is the float mean of the grayscale image (torchvision tensor path). PIL's
    `ImageEnhance.Contrast` uses the mean of the uint8 'L' image rounded to an integer, a difference
    of at most 0.5/255 x |1 - factor| per pixel.
    """
    height, width = image.shape[-3], image.shape[-2]
    # mean(grayscale(image)) as one flat weighted sum: XLA:CPU reduces [H, W, 1] sliced out of
    # interleaved RGB about 10x slower, which made contrast the costliest jitter op.
    flat = image.reshape(image.shape[:-3] + (height * width * 3,))
    weights = jnp.tile(jnp.asarray(GRAY_WEIGHTS, image.dtype), height * width)
    mean = jnp.sum(flat * weights, axis=-1) / (height * width)
    return _blend(image, mean[..., None, None, None], factor)


def adjust_saturation(image: jax.Array, factor: jax.Array) -> jax.Array:
    """Blend with the grayscale image (`ImageEnhance.Color`). image `[H, W, 3]` in [0, 1]."""
    return _blend(image, grayscale(image), factor)


def adjust_hue(image: jax.Array, shift: jax.Array) -> jax.Array:
    """Rotate hue by `shift` (fraction of a turn, |shift| <= 0.5). image `[..., 3]` in [0, 1].

    Same result as RGB -> HSV (colorsys / torchvision `_rgb2hsv`), h = (h + shift) mod 1, and back,
    computed without materialising HSV: with v = max, chroma c = max - min (= v s) and the hue in
    sixths h6 in [0, 6), channel n (5, 3, 1 for R, G, B) is v - c clip(min(k, 4 - k), 0, 1),
    k = (n + h6) mod 6 -- the closed form of colorsys' six-sector table. One division per pixel
    instead of four, which matters: hue is the costliest jitter op.
    """
    r, g, b = image[..., 0], image[..., 1], image[..., 2]
    maxc = jnp.maximum(jnp.maximum(r, g), b)
    chroma = maxc - jnp.minimum(jnp.minimum(r, g), b)
    # Grey pixels: hue 0 as colorsys; chroma 0 keeps them grey whatever the shift.
    inv = 1.0 / jnp.where(chroma > 0, chroma, 1.0)
    # colorsys' tie order: red wins over green wins over blue. h6 in [-1, 5).
    h6 = jnp.where(maxc == r, (g - b) * inv, jnp.where(maxc == g, 2.0 + (b - r) * inv, 4.0 + (r - g) * inv))
    # (h6 + 6 shift) mod 6 for |shift| <= 0.5, with selects: fmod costs more than the rest together.
    h6 = h6 + 6.0 * shift
    h6 = jnp.where(h6 < 0.0, h6 + 6.0, jnp.where(h6 >= 6.0, h6 - 6.0, h6))

    def channel(n: float) -> jax.Array:
        k = n + h6
        k = jnp.where(k >= 6.0, k - 6.0, k)
        return maxc - chroma * jnp.clip(jnp.minimum(k, 4.0 - k), 0.0, 1.0)

    return jnp.clip(jnp.stack([channel(5.0), channel(3.0), channel(1.0)], axis=-1), 0.0, 1.0)


def _uniform(key: jax.Array, bounds: Sequence[float]) -> jax.Array:
    return jax.random.uniform(key, (), minval=bounds[0], maxval=bounds[1])


def color_jitter(key: jax.Array, image: jax.Array, *, brightness: Sequence[float] = (0.75, 1.25),
                 contrast: Sequence[float] = (0.75, 1.25), saturation: Sequence[float] = (0.75, 1.25),
                 hue: Sequence[float] = (-0.25, 0.25)) -> jax.Array:
    """torchvision `ColorJitter` on one image `[H, W, 3]` in [0, 1].

    Factors drawn uniformly from the given (min, max) ranges; the four ops applied in a random order
    (`ColorJitter.get_params`' `fn_idx`), each clipping to [0, 1].
    """
    k_order, k_b, k_c, k_s, k_h = jax.random.split(key, 5)
    f_b, f_c, f_s, f_h = _uniform(k_b, brightness), _uniform(k_c, contrast), \
        _uniform(k_s, saturation), _uniform(k_h, hue)
    ops = (lambda x: adjust_brightness(x, f_b), lambda x: adjust_contrast(x, f_c),
           lambda x: adjust_saturation(x, f_s), lambda x: adjust_hue(x, f_h))
    # Ranks of i.i.d. uniforms = a uniform random permutation (cheaper to compile than
    # jax.random.permutation's shuffle rounds).
    order = jnp.argsort(jax.random.uniform(k_order, (len(ops),)))
    # Unrolled: ~15% faster per call than a fori_loop over positions, for ~0.3 s more compile.
    for position in range(len(ops)):
        image = lax.switch(order[position], ops, image)
    return image


def random_color_jitter(key: jax.Array, image: jax.Array, *, prob: float = 0.8,
                        **ranges: Sequence[float]) -> jax.Array:
    """`color_jitter` with probability `prob`, else the image unchanged. image `[H, W, 3]`."""
    k_apply, k_jitter = jax.random.split(key)
    apply = jax.random.bernoulli(k_apply, prob)
    return lax.cond(apply, lambda x: color_jitter(k_jitter, x, **ranges), lambda x: x, image)


def gaussian_kernel1d(sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Normalised 1-D Gaussian of odd length `kernel_size` (torchvision `_get_gaussian_kernel1d`)."""
    x = jnp.arange(kernel_size, dtype=jnp.float32) - (kernel_size - 1) / 2.0
    pdf = jnp.exp(-0.5 * jnp.square(x / sigma))
    return pdf / jnp.sum(pdf)


def gaussian_blur(image: jax.Array, sigma: jax.Array, kernel_size: int) -> jax.Array:
    """Separable Gaussian blur with reflect padding (torchvision `gaussian_blur`).

    image `[H, W, C]`; `sigma` a scalar (may be traced); `kernel_size` odd and static, so the shape
    is fixed whatever sigma is drawn. Written as `kernel_size` shifted multiply-adds per axis: with
    a traced per-image kernel this is cheaper than a batched grouped convolution on CPU and exact.
    """
    if kernel_size % 2 != 1:
        raise InputError(f"gaussian_blur: kernel_size must be odd, got {kernel_size}")
    weights = gaussian_kernel1d(sigma, kernel_size).astype(image.dtype)
    half = kernel_size // 2
    height, width = image.shape[0], image.shape[1]
    padded = jnp.pad(image, ((half, half), (0, 0), (0, 0)), mode="reflect")
    out = sum(weights[k] * padded[k:k + height] for k in range(kernel_size))
    padded = jnp.pad(out, ((0, 0), (half, half), (0, 0)), mode="reflect")
    return sum(weights[k] * padded[:, k:k + width] for k in range(kernel_size))


def random_gaussian_blur(key: jax.Array, image: jax.Array, *, prob: float = 0.5,
                         sigma_range: Sequence[float] = (0.15, 1.15), kernel_size: int = 9) -> jax.Array:
    """Blur with probability `prob`, sigma ~ U(sigma_range), else unchanged. image `[H, W, C]`."""
    k_apply, k_sigma = jax.random.split(key)
    apply = jax.random.bernoulli(k_apply, prob)
    sigma = _uniform(k_sigma, sigma_range)
    return lax.cond(apply, lambda x: gaussian_blur(x, sigma, kernel_size), lambda x: x, image)
