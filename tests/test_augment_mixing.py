"""cutout / cutmix / classmix: rectangle law, pixels taken from the next sample, half the classes."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.augment import mixing

B, H, W, K = 3, 12, 17, 6
IGNORE = 255


def _batch(seed=0, ignore_band=False):
    rng = np.random.default_rng(seed)
    # Distinct random floats per sample: an output pixel equal to the next sample's came from it.
    images = rng.random((B, H, W, 3), dtype=np.float32)
    labels = np.kron(rng.integers(0, K, (B, H // 3, W // 3 + 1)), np.ones((1, 3, 3), int))[:, :H, :W]
    labels = labels.astype(np.int32)
    if ignore_band:
        labels[:, -2:] = IGNORE
    conf = rng.uniform(0.1, 1.0, (B, H, W)).astype(np.float32)
    return images, labels, conf


@functools.cache
def _mix(mode):
    return jax.jit(functools.partial(mixing.mix_batch, mode=mode, num_classes=K))


def _keys(seed):
    return jax.random.split(jax.random.key(seed), B)


def _rectangles(seed, count, **kwargs):
    """`count` rectangle masks `[count, H, W]` from `seed`'s keys."""
    return np.asarray(jax.jit(jax.vmap(lambda k: mixing.rectangle_mask(k, H, W, **kwargs)))(
        jax.random.split(jax.random.key(seed), count)))


def _assert_published_size_law(masks, area_ratio):
    # The published generate_cutout_mask: w ~ randint(W * ratio + 1, W), h = round(H W ratio / w).
    widths = set()
    for m in masks:
        ys, xs = np.nonzero(m)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert m.sum() == h * w  # a solid rectangle inside the image
        assert int(W * area_ratio) + 1 <= w <= W - 1
        assert h == np.round(H * W * area_ratio / w)
        widths.add(w)
    assert widths == set(range(int(W * area_ratio) + 1, W))  # every allowed width occurs


def test_rectangle_has_half_the_area_and_the_published_size_law():
    _assert_published_size_law(_rectangles(0, 200), 0.5)


def test_rectangle_corner_is_placed_independently_in_x_and_y_and_reaches_every_corner():
    # The published generate_cutout_mask draws x0 ~ randint(0, W - w + 1) and y0 ~ randint(0, H - h + 1)
    # independently: a rectangle may touch any of the image's four corners.
    masks = _rectangles(1, 400)
    corners = set()
    for m in masks:
        ys, xs = np.nonzero(m)
        vertical = "top" if ys.min() == 0 else "bottom" if ys.max() == H - 1 else None
        horizontal = "left" if xs.min() == 0 else "right" if xs.max() == W - 1 else None
        if vertical and horizontal:
            corners.add((vertical, horizontal))
    assert corners == {("top", "left"), ("top", "right"), ("bottom", "left"), ("bottom", "right")}


def test_cutout_fills_the_mean_colour_zeroes_confidence_and_ignores_label_inside_only():
    images, labels, conf = _batch()
    out_im, out_lb, out_cf = map(np.asarray, _mix("cutout")(_keys(1), images, labels, conf))
    for i in range(B):
        inside = out_lb[i] == IGNORE
        assert 0 < inside.sum() < H * W
        # The published loop zeroes the normalised image: the ImageNet mean in [0, 1] images.
        np.testing.assert_array_equal(out_im[i][inside], np.broadcast_to(
            np.float32([0.485, 0.456, 0.406]), out_im[i][inside].shape))
        assert np.all(out_cf[i][inside] == 0)
        np.testing.assert_array_equal(out_im[i][~inside], images[i][~inside])
        np.testing.assert_array_equal(out_lb[i][~inside], labels[i][~inside])
        np.testing.assert_array_equal(out_cf[i][~inside], conf[i][~inside])


def test_cutmix_fills_a_half_area_rectangle_from_the_next_sample():
    images, labels, conf = _batch()
    out_im, out_lb, out_cf = map(np.asarray, _mix("cutmix")(_keys(2), images, labels, conf))
    for i in range(B):
        nxt = (i + 1) % B  # the last sample takes from the first
        from_next = np.all(out_im[i] == images[nxt], axis=-1)
        from_self = np.all(out_im[i] == images[i], axis=-1)
        np.testing.assert_array_equal(from_next, ~from_self)  # every pixel is one or the other
        ys, xs = np.nonzero(from_next)
        h, w = ys.max() - ys.min() + 1, xs.max() - xs.min() + 1
        assert from_next.sum() == h * w and h == np.round(H * W / 2 / w)
        np.testing.assert_array_equal(out_lb[i][from_next], labels[nxt][from_next])
        np.testing.assert_array_equal(out_cf[i][from_next], conf[nxt][from_next])
        np.testing.assert_array_equal(out_lb[i][from_self], labels[i][from_self])
        np.testing.assert_array_equal(out_cf[i][from_self], conf[i][from_self])


@pytest.mark.parametrize("ignore_band", [False, True])
def test_classmix_pastes_all_pixels_of_half_the_next_samples_classes(ignore_band):
    images, labels, conf = _batch(seed=3, ignore_band=ignore_band)
    chosen_sets = set()
    for seed in range(4):
        out_im, out_lb, out_cf = map(np.asarray, _mix("classmix")(_keys(seed), images, labels, conf))
        for i in range(B):
            nxt = (i + 1) % B
            from_next = np.all(out_im[i] == images[nxt], axis=-1)
            present = set(np.unique(labels[nxt])) - {IGNORE}
            chosen = set(np.unique(labels[nxt][from_next]))
            assert chosen <= present and len(chosen) == len(present) // 2
            # Exactly the pixels of the chosen classes, never ignore pixels.
            np.testing.assert_array_equal(from_next, np.isin(labels[nxt], sorted(chosen)))
            np.testing.assert_array_equal(out_lb[i], np.where(from_next, labels[nxt], labels[i]))
            np.testing.assert_array_equal(out_cf[i], np.where(from_next, conf[nxt], conf[i]))
            chosen_sets.add(frozenset(chosen))
    assert len(chosen_sets) > 1  # the half is drawn at random


def test_class_mask_with_a_single_class_takes_nothing():
    label = jnp.full((H, W), 2, jnp.int32)
    assert not np.asarray(mixing.class_mask(jax.random.key(0), label, num_classes=K)).any()


def test_none_mode_is_identity():
    images, labels, conf = _batch()
    for out, x in zip(_mix("none")(_keys(0), images, labels, conf), (images, labels, conf)):
        np.testing.assert_array_equal(np.asarray(out), x)


def test_rectangle_of_a_quarter_area_follows_the_size_law_with_ratio_a_quarter():
    masks = _rectangles(3, 200, area_ratio=0.25)
    _assert_published_size_law(masks, 0.25)
    # A quarter of the image, up to the rounding of the height (|h - H W / 4 / w| <= 1/2 row).
    assert np.all(np.abs(masks.sum(axis=(1, 2)) - H * W / 4) <= W / 2)
    assert abs(masks.sum(axis=(1, 2)).mean() / (H * W) - 0.25) < 0.02


def test_rectangle_of_the_whole_area_is_the_whole_image():
    # Where the published width range would be empty (ratio 1): the full width, hence full height.
    assert np.asarray(mixing.rectangle_mask(jax.random.key(0), H, W, area_ratio=1.0)).all()


@pytest.mark.parametrize("present, ratio, expected", [(10, 0.7, 7), (10, 0.3, 3), (5, 0.6, 3), (4, 1.0, 4),
                                                      (6, 0.5, 3), (3, 0.2, 0)])
def test_classmix_takes_the_class_ratio_of_the_classes_present_rounded_down(present, ratio, expected):
    # floor(ratio x present) by hand, in decimal: 0.7 x 10 classes is 7 (binary float32 gives 6.99...).
    label = jnp.asarray(np.arange(H * W).reshape(H, W) % present, jnp.int32)
    for seed in range(3):
        mask = np.asarray(mixing.class_mask(jax.random.key(seed), label, num_classes=10, class_ratio=ratio))
        chosen = np.unique(np.asarray(label)[mask])
        assert len(chosen) == expected
        np.testing.assert_array_equal(mask, np.isin(np.asarray(label), chosen))


def test_cutout_fills_the_given_mean_colour():
    images, labels, conf = _batch()
    mean = (0.1, 0.7, 0.25)
    fn = jax.jit(functools.partial(mixing.mix_batch, mode="cutout", num_classes=K, mean=mean))
    out_im, out_lb, _ = map(np.asarray, fn(_keys(1), images, labels, conf))
    for i in range(B):
        inside = out_lb[i] == IGNORE
        assert inside.any()
        np.testing.assert_array_equal(out_im[i][inside], np.broadcast_to(np.float32(mean), out_im[i][inside].shape))
