"""perturb_unlabeled as a whole: shapes, dtypes, label/confidence invariants, keys, jit-cleanliness."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.augment import perturb_unlabeled
from tests.augment_references import colorsys_hue, direct_blur

B, H, W, K = 3, 24, 32, 5
IGNORE = 255


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    images = jnp.asarray(rng.random((B, H, W, 3), dtype=np.float32))
    # Blocky labels, so that nearest resampling keeps whole regions.
    labels = jnp.asarray(np.kron(rng.integers(0, K, (B, H // 4, W // 4)), np.ones((1, 4, 4), int)), jnp.int32)
    # Strictly positive confidence: a 0 in the output can only come from padding or cutout.
    conf = jnp.asarray(rng.uniform(0.05, 1.0, (B, H, W)).astype(np.float32))
    return images, labels, conf


@functools.cache
def _perturb(mix_mode):
    # Cached: one compile per mode for the whole file keeps it fast on a shared CPU.
    return jax.jit(functools.partial(perturb_unlabeled, mix_mode=mix_mode, num_classes=K))


# 'none' is the identity in mixing (tested there); one compile per mode is what costs time here.
@pytest.mark.parametrize("mix_mode", ["cutout", "cutmix", "classmix"])
def test_shapes_dtypes_and_value_ranges_are_kept(mix_mode):
    images, labels, conf = _inputs()
    out_im, out_lb, out_cf = _perturb(mix_mode)(jax.random.key(1), images, labels, conf)
    assert (out_im.shape, out_im.dtype) == (images.shape, images.dtype)
    assert (out_lb.shape, out_lb.dtype) == (labels.shape, labels.dtype)
    assert (out_cf.shape, out_cf.dtype) == (conf.shape, conf.dtype)
    out_im = np.asarray(out_im)
    assert out_im.min() >= 0.0 and out_im.max() <= 1.0


# 'none' is the identity in mixing (tested there); one compile per mode is what costs time here.
@pytest.mark.parametrize("mix_mode", ["cutout", "cutmix", "classmix"])
def test_labels_hold_only_original_ids_or_ignore_and_conf_zero_exactly_there(mix_mode):
    images, labels, conf = _inputs()
    fn = _perturb(mix_mode)
    for seed in range(6):
        _, out_lb, out_cf = map(np.asarray, fn(jax.random.key(seed), images, labels, conf))
        assert set(np.unique(out_lb)) <= set(range(K)) | {IGNORE}
        # Inputs have conf > 0 everywhere: conf 0 <=> label turned ignore (padding / cutout).
        np.testing.assert_array_equal(out_cf == 0, out_lb == IGNORE)
        # Confidence values are only ever copied, never interpolated.
        assert set(np.unique(out_cf[out_cf > 0])) <= set(np.unique(np.asarray(conf)))


def test_same_key_same_output_different_keys_different_samples():
    images, labels, conf = _inputs()
    fn = _perturb("cutout")
    a = fn(jax.random.key(7), images, labels, conf)
    b = fn(jax.random.key(7), images, labels, conf)
    c = fn(jax.random.key(8), images, labels, conf)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))
    assert not np.array_equal(np.asarray(a[0]), np.asarray(c[0]))
    # One key per sample: two identical samples in a batch get different perturbations.
    same = [jnp.broadcast_to(x[:1], x.shape) for x in (images, labels, conf)]
    out = np.asarray(fn(jax.random.key(7), *same)[0])
    assert not np.array_equal(out[0], out[1])


@pytest.mark.parametrize("mix_mode", ["cutout", "cutmix", "classmix"])
def test_runs_under_jit_without_transfers_or_callbacks(mix_mode):
    images, labels, conf = (jax.device_put(x) for x in _inputs())
    key = jax.random.key(3)
    fn = _perturb(mix_mode)
    jaxpr = jax.make_jaxpr(functools.partial(perturb_unlabeled, mix_mode=mix_mode, num_classes=K))(
        key, images, labels, conf)
    # The printed jaxpr includes every nested jaxpr (vmap/switch bodies): no host callback anywhere.
    assert "callback" not in str(jaxpr)
    fn(key, images, labels, conf)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        jax.block_until_ready(fn(key, images, labels, conf))


def test_unknown_mix_mode_is_a_clear_error():
    images, labels, conf = _inputs()
    with pytest.raises(ValueError, match="mix_mode"):
        perturb_unlabeled(jax.random.key(0), images, labels, conf, mix_mode="mixup", num_classes=K)


def test_image_label_and_confidence_stay_geometrically_aligned():
    # Paint each image with a colour per class; with the photometric ops off, wherever a pixel's
    # 5x5 label neighbourhood is one class the perturbed image must show that class's colour and
    # the confidence must be that class's confidence (rescale, crop and flip move all three
    # together; mixing copies pixels, which test_augment_mixing checks pixel by pixel).
    rng = np.random.default_rng(5)
    palette = rng.random((K, 3)).astype(np.float32)
    class_conf = rng.uniform(0.1, 1.0, K).astype(np.float32)
    labels = jnp.asarray(np.kron(rng.integers(0, K, (B, 3, 4)), np.ones((1, 16, 16), int)), jnp.int32)
    images, conf = jnp.asarray(palette[np.asarray(labels)]), jnp.asarray(class_conf[np.asarray(labels)])
    fn = jax.jit(functools.partial(perturb_unlabeled, mix_mode="none", num_classes=K,
                                   jitter_prob=0.0, blur_prob=0.0))
    checked = []
    for seed in range(4):
        out_im, out_lb, out_cf = map(np.asarray, fn(jax.random.key(seed), images, labels, conf))
        for im, lb, cf in zip(out_im, out_lb, out_cf):
            padded = np.pad(lb, 2, constant_values=-1)  # taps may reach beyond the crop: skip borders
            windows = np.lib.stride_tricks.sliding_window_view(padded, (5, 5))
            uniform = np.all(windows == lb[..., None, None], axis=(-1, -2)) & (lb != IGNORE)
            checked.append(uniform.mean())
            np.testing.assert_allclose(im[uniform], palette[lb[uniform]], atol=1e-5)
            valid = lb != IGNORE
            np.testing.assert_array_equal(cf[valid], class_conf[lb[valid]])
    assert np.mean(checked) > 0.2  # the check covers a fair share of pixels


# Geometry off (s = 1 resamples nothing, no flip, no mixing): only the colour ops act.
_COLOUR_ONLY = dict(mix_mode="none", num_classes=K, scale_range=(1.0, 1.0), flip_prob=0.0,
                    brightness=(1.0, 1.0), contrast=(1.0, 1.0), saturation=(1.0, 1.0), hue=(0.0, 0.0))


def _colour_only(key, images, **settings):
    labels, conf = jnp.zeros(images.shape[:3], jnp.int32), jnp.ones(images.shape[:3], jnp.float32)
    fn = jax.jit(functools.partial(perturb_unlabeled, **{**_COLOUR_ONLY, **settings}))
    return np.asarray(fn(key, images, labels, conf)[0], np.float64)


def test_the_hue_range_and_blur_probability_given_are_the_ones_applied():
    images = _inputs()[0][:2, :10, :12]
    ref_images = np.asarray(images, np.float64)
    hue_only = _colour_only(jax.random.key(0), images, jitter_prob=1.0, hue=(0.2, 0.2), blur_prob=0.0)
    for out, image in zip(hue_only, ref_images):
        np.testing.assert_allclose(out, colorsys_hue(image, 0.2), atol=1e-5)
    blur_only = _colour_only(jax.random.key(0), images, jitter_prob=0.0, blur_prob=1.0, blur_sigma=(0.8, 0.8))
    for out, image in zip(blur_only, ref_images):
        np.testing.assert_allclose(out, direct_blur(image, 0.8, 9), atol=1e-5)


def test_jitter_and_blur_are_decided_independently_for_each_sample():
    # Brightness 0.5 as the only jitter, blur sigma 1: each sample is x, x / 2, blur(x) or blur(x) / 2,
    # and with probabilities 1/2 each all four combinations occur.
    images = jnp.asarray(np.random.default_rng(1).random((48, 8, 8, 3), dtype=np.float32))
    outs = _colour_only(jax.random.key(2), images, jitter_prob=0.5, brightness=(0.5, 0.5), blur_prob=0.5,
                        blur_sigma=(1.0, 1.0))
    seen = set()
    for out, image in zip(outs, np.asarray(images, np.float64)):
        blurred = direct_blur(image, 1.0, 9)
        candidates = {(False, False): image, (True, False): image / 2, (False, True): blurred,
                      (True, True): blurred / 2}
        matches = [c for c, ref in candidates.items() if np.abs(out - ref).max() < 1e-5]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == {(False, False), (True, False), (False, True), (True, True)}


def test_cutout_area_ratio_and_fill_colour_reach_the_mixing():
    # Geometry and photometry off: the only change is cutout's rectangle, a quarter of the image
    # (to a rounded row) in the given colour.
    images, labels, conf = _inputs(7)
    mean = (0.2, 0.4, 0.6)
    fn = jax.jit(functools.partial(perturb_unlabeled, mix_mode="cutout", num_classes=K, scale_range=(1.0, 1.0),
                                   jitter_prob=0.0, blur_prob=0.0, flip_prob=0.0, mix_area_ratio=0.25, mean=mean))
    out_im, out_lb, out_cf = map(np.asarray, fn(jax.random.key(3), images, labels, conf))
    for i in range(B):
        inside = out_lb[i] == IGNORE
        assert abs(inside.sum() - H * W / 4) <= W / 2
        np.testing.assert_array_equal(out_im[i][inside], np.broadcast_to(np.float32(mean), out_im[i][inside].shape))
        assert np.all(out_cf[i][inside] == 0)
        np.testing.assert_array_equal(out_im[i][~inside], np.asarray(images)[i][~inside])


def test_classmix_class_ratio_reaches_the_mixing():
    # Ratio 1: every class of the next sample is pasted, so each sample becomes the next one.
    images, labels, conf = _inputs(8)
    fn = jax.jit(functools.partial(perturb_unlabeled, mix_mode="classmix", num_classes=K, scale_range=(1.0, 1.0),
                                   jitter_prob=0.0, blur_prob=0.0, flip_prob=0.0, classmix_class_ratio=1.0))
    out_im, out_lb, out_cf = map(np.asarray, fn(jax.random.key(0), images, labels, conf))
    for out, x in zip((out_im, out_lb, out_cf), (images, labels, conf)):
        np.testing.assert_array_equal(out, np.roll(np.asarray(x), -1, axis=0))
