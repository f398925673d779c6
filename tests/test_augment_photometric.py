"""Colour jitter, grayscale, blur and normalisation against PIL / colorsys / direct-convolution references.

torchvision does not import beside the CPU torch here; its PIL path calls `ImageEnhance`, so that is
the reference. PIL works on uint8 and truncates after each blend, so from a uint8 input our float
result x 255 may lie up to 1 above PIL's; contrast and saturation blend towards a grey that PIL
rounds to an integer (adds <= 0.5 |1 - f| in uint8 units).
"""

import functools
import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image, ImageEnhance

from mofgseg_jax.augment import photometric
from tests.augment_references import colorsys_hue, direct_blur

FACTORS = (0.75, 0.9, 1.1, 1.25)


def _uint8_image(seed=0, shape=(16, 20, 3)):
    return np.random.default_rng(seed).integers(0, 256, shape, dtype=np.uint8)


def _as01(image_u8):
    return jnp.asarray(image_u8.astype(np.float32) / 255.0)


@pytest.mark.parametrize("op, enhancer, grey_rounding", [
    (photometric.adjust_brightness, ImageEnhance.Brightness, 0.0),
    (photometric.adjust_contrast, ImageEnhance.Contrast, 0.5),
    (photometric.adjust_saturation, ImageEnhance.Color, 0.5),
])
def test_enhance_ops_match_pil_imageenhance_to_uint8_precision(op, enhancer, grey_rounding):
    image = _uint8_image()
    for factor in FACTORS:
        ref = np.asarray(enhancer(Image.fromarray(image)).enhance(factor), np.float32)
        ours = np.asarray(op(_as01(image), factor)) * 255.0
        slack = grey_rounding * abs(1 - factor) + 1e-3
        diff = ours - ref
        # PIL truncates towards 0 (uint8 cast): ours is at most 1 above, never (beyond slack) below.
        assert diff.max() <= 1.0 + slack and diff.min() >= -slack, (factor, diff.min(), diff.max())


def test_grayscale_matches_pil_convert_L():
    image = _uint8_image(1)
    ref = np.asarray(Image.fromarray(image).convert("L"), np.float32)
    ours = np.asarray(photometric.grayscale(_as01(image)))[..., 0] * 255.0
    np.testing.assert_allclose(ours, ref, atol=0.5 + 1e-3)  # PIL rounds to the nearest integer


def test_random_grayscale_gives_the_luma_in_all_three_channels():
    image = _as01(_uint8_image(1))
    gray = np.asarray(photometric.random_grayscale(jax.random.key(0), image, prob=1.0))
    np.testing.assert_array_equal(gray, np.repeat(np.asarray(photometric.grayscale(image)), 3, axis=-1))
    kept = photometric.random_grayscale(jax.random.key(0), image, prob=0.0)
    np.testing.assert_array_equal(np.asarray(kept), np.asarray(image))


@pytest.mark.parametrize("shift", [-0.25, -0.1, 0.05, 0.25])
def test_hue_shift_matches_colorsys_loop(shift):
    image = _uint8_image(2, (8, 8, 3)).astype(np.float32) / 255.0
    image[0, :3] = [0.5, 0.5, 0.5]  # grey pixels: hue undefined, must stay grey
    image[1, 0] = [1.0, 0.0, 0.0]
    image[1, 1] = [0.2, 0.9, 0.9]  # max shared by g and b
    ours = np.asarray(photometric.adjust_hue(jnp.asarray(image), shift))
    np.testing.assert_allclose(ours, colorsys_hue(image, shift), atol=2e-6)


def _np_ops(brightness, contrast, saturation, hue):
    """Float NumPy versions of torchvision's four ops (independent of the code under test)."""
    def gray(x):
        return x @ np.array([0.299, 0.587, 0.114], np.float64)

    def blend(x, other, f):
        return np.clip(f * x + (1 - f) * other, 0, 1)

    return (lambda x: blend(x, 0.0, brightness),
            lambda x: blend(x, gray(x).mean(), contrast),
            lambda x: blend(x, gray(x)[..., None], saturation),
            lambda x: colorsys_hue(x, hue))


def test_color_jitter_applies_the_four_ops_in_a_random_order():
    image = np.asarray(_as01(_uint8_image(3, (6, 7, 3)))).astype(np.float64)
    factors = dict(brightness=1.2, contrast=0.8, saturation=1.25, hue=0.2)
    ops = _np_ops(**factors)
    candidates = {}
    for order in itertools.permutations(range(4)):
        x = image
        for i in order:
            x = ops[i](x)
        candidates[order] = x
    jitter = jax.jit(functools.partial(photometric.color_jitter, **{k: (v, v) for k, v in factors.items()}))
    orders_seen = set()
    for seed in range(12):
        ours = np.asarray(jitter(jax.random.key(seed), jnp.asarray(image, jnp.float32)))
        errors = {o: np.abs(ours - ref).max() for o, ref in candidates.items()}
        best = min(errors, key=errors.get)
        assert errors[best] < 1e-5
        orders_seen.add(best)
    assert len(orders_seen) > 3


def test_color_jitter_draws_the_brightness_and_contrast_factors_independently():
    # On a grey image saturation and hue change nothing, and brightness f_b and contrast f_c
    # commute while nothing clips: out = f_b f_c x + f_b (1 - f_c) mean(x), whatever the order.
    # Two pixels give f_b f_c and then f_b, so each key's two factors can be read back.
    grey = np.float32([0.1, 0.3, 0.5, 0.2])
    image = jnp.asarray(np.repeat(grey.reshape(2, 2, 1), 3, axis=-1))
    outs = np.asarray(jax.jit(jax.vmap(lambda k: photometric.color_jitter(k, image)))(
        jax.random.split(jax.random.key(0), 400)), np.float64)[:, :, :, 0].reshape(400, 4)
    x = grey.astype(np.float64)
    product = (outs[:, 0] - outs[:, 1]) / (x[0] - x[1])  # f_b f_c
    f_b = product + (outs[:, 0] - product * x[0]) / x.mean()
    f_c = product / f_b
    for f in (f_b, f_c):  # each U(0.75, 1.25), the published ranges
        assert f.min() > 0.75 - 1e-4 and f.max() < 1.25 + 1e-4 and f.min() < 0.8 and f.max() > 1.2
    assert abs(np.corrcoef(f_b, f_c)[0, 1]) < 0.2  # independent draws (same key: correlation 1)


def test_jitter_and_blur_apply_with_their_probabilities():
    image = _as01(_uint8_image(4, (2, 2, 3)))
    keys = jax.random.split(jax.random.key(0), 1000)

    @jax.jit
    def changed(keys):
        def one(k):
            jittered = photometric.random_color_jitter(k, image, prob=0.8, brightness=(2.0, 2.0))
            blurred = photometric.random_gaussian_blur(k, image, prob=0.5, kernel_size=3)
            return jnp.any(jittered != image), jnp.any(blurred != image)
        return jax.lax.map(one, keys)  # per-sample branches, as perturb_unlabeled runs them

    changed_j, changed_b = (np.mean(np.asarray(c)) for c in changed(keys))
    assert abs(changed_j - 0.8) < 0.05 and abs(changed_b - 0.5) < 0.05  # 4 binomial std


@pytest.mark.parametrize("sigma, size", [(0.15, 9), (0.6, 5), (1.15, 9)])
def test_gaussian_blur_matches_direct_convolution(sigma, size):
    image = np.asarray(_as01(_uint8_image(5, (13, 11, 3))))
    ours = np.asarray(photometric.gaussian_blur(jnp.asarray(image), sigma, size))
    np.testing.assert_allclose(ours, direct_blur(image, sigma, size), atol=1e-6)


def test_normalize_uses_imagenet_mean_and_std():
    image = np.asarray(_as01(_uint8_image(6)))
    expected = (image - np.array([0.485, 0.456, 0.406])) / np.array([0.229, 0.224, 0.225])
    np.testing.assert_allclose(np.asarray(photometric.normalize(jnp.asarray(image))), expected, atol=1e-6)


def test_normalize_with_another_mean_and_std_matches_numpy():
    image = np.asarray(_as01(_uint8_image(7)))
    mean, std = (0.2, 0.5, 0.8), (0.5, 0.3, 0.1)
    expected = (image.astype(np.float64) - np.array(mean)) / np.array(std)
    np.testing.assert_allclose(np.asarray(photometric.normalize(jnp.asarray(image), mean, std)), expected,
                               rtol=1e-6, atol=1e-5)


def test_mean_std_of_a_config_is_its_data_mean_and_std_and_imagenets_where_it_lacks_them():
    import ml_collections

    data = ml_collections.ConfigDict({"mean": (0.2, 0.5, 0.8), "std": [0.5, 0.3, 0.1]})
    assert photometric.mean_std(data) == ((0.2, 0.5, 0.8), (0.5, 0.3, 0.1))
    older = ml_collections.ConfigDict({"crop_size": 64})  # a config stored before the keys existed
    assert photometric.mean_std(older) == ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
