"""Rescale/pad/crop and flip against PIL resize + NumPy reflect padding (the published round trip)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from PIL import Image

from mofgseg_jax.augment import geometric

# Odd sizes: (v + 0.5) * H / h is then never an integer, so nearest sampling has no ties whose
# outcome would depend on float rounding (PIL computes in double, we in float32).
H, W = 15, 21
IGNORE = 255


def _inputs(seed=0):
    rng = np.random.default_rng(seed)
    image = rng.random((H, W, 3), dtype=np.float32)
    label = rng.integers(0, 6, (H, W)).astype(np.int32)
    conf = rng.uniform(0.1, 1.0, (H, W)).astype(np.float32)
    return image, label, conf


def _pil_rescale_crop(image, label, conf, scaled, offset):
    """The published transform: PIL resize (BILINEAR / NEAREST), pad right/bottom, crop."""
    sh, sw = scaled
    resized = np.stack([np.asarray(Image.fromarray(image[..., c]).resize((sw, sh), Image.BILINEAR))
                        for c in range(3)], axis=-1)
    lbl = np.asarray(Image.fromarray(label.astype(np.uint8)).resize((sw, sh), Image.NEAREST)).astype(np.int32)
    cf = np.asarray(Image.fromarray(conf).resize((sw, sh), Image.NEAREST))
    pad = ((0, max(H - sh, 0)), (0, max(W - sw, 0)))
    resized = np.pad(resized, pad + ((0, 0),), mode="reflect")
    lbl = np.pad(lbl, pad, constant_values=IGNORE)
    cf = np.pad(cf, pad, constant_values=0.0)
    oy, ox = offset
    return resized[oy:oy + H, ox:ox + W], lbl[oy:oy + H, ox:ox + W], cf[oy:oy + H, ox:ox + W]


@functools.cache
def _rescale_crop():
    return jax.jit(geometric.rescale_crop, static_argnames=("ignore_index", "min_scale"))


@pytest.mark.parametrize("scaled, offset", [
    ((15, 21), (0, 0)),    # identity
    ((11, 13), (0, 0)),    # smaller: reflect padding on both axes
    ((22, 40), (5, 17)),   # larger: crop inside
    ((9, 30), (0, 4)),     # mixed: pad rows, crop columns
    ((8, 11), (0, 0)),     # about half: deepest reflection
])
def test_rescale_crop_matches_pil_resize_pad_crop(scaled, offset):
    image, label, conf = _inputs()
    ours = _rescale_crop()(jnp.asarray(image), jnp.asarray(label), jnp.asarray(conf),
                           scaled_size=scaled, offset=offset)
    ref = _pil_rescale_crop(image, label, conf, scaled, offset)
    np.testing.assert_allclose(np.asarray(ours[0]), ref[0], atol=2e-6, rtol=0)
    np.testing.assert_array_equal(np.asarray(ours[1]), ref[1])
    np.testing.assert_array_equal(np.asarray(ours[2]), ref[2])


@pytest.mark.parametrize("min_scale", [0.5, 1.0])  # the number of taps follows min_scale
def test_rescale_crop_matches_pil_on_random_sizes_and_offsets(min_scale):
    image, label, conf = _inputs(1)
    rng = np.random.default_rng(0)
    for _ in range(25):
        # floor(size * U(min_scale, 2))
        scaled = (int(rng.integers(int(H * min_scale), 31)), int(rng.integers(int(W * min_scale), 43)))
        offset = (int(rng.integers(0, max(scaled[0], H) - H + 1)),
                  int(rng.integers(0, max(scaled[1], W) - W + 1)))
        ours = _rescale_crop()(jnp.asarray(image), jnp.asarray(label), jnp.asarray(conf),
                               scaled_size=scaled, offset=offset, min_scale=min_scale)
        ref = _pil_rescale_crop(image, label, conf, scaled, offset)
        np.testing.assert_allclose(np.asarray(ours[0]), ref[0], atol=2e-6, rtol=0,
                                   err_msg=str((scaled, offset)))
        np.testing.assert_array_equal(np.asarray(ours[1]), ref[1])
        np.testing.assert_array_equal(np.asarray(ours[2]), ref[2])


def test_random_rescale_crop_pads_only_bottom_rows_and_right_columns():
    image, label, conf = (jnp.asarray(x) for x in _inputs())
    fn = jax.jit(jax.vmap(lambda k: geometric.random_rescale_crop(k, image, label, conf)))
    _, labels, confs = map(np.asarray, fn(jax.random.split(jax.random.key(0), 32)))
    saw_padding = saw_crop_only = False
    for lbl, cf in zip(labels, confs):
        pad = lbl == IGNORE
        rows, cols = pad.all(axis=1), pad.all(axis=0)
        # Padding is exactly a band of bottom rows plus a band of right columns.
        np.testing.assert_array_equal(pad, rows[:, None] | cols[None, :])
        assert not rows.any() or rows[-1] and np.all(np.diff(rows.astype(int)) >= 0)
        assert not cols.any() or cols[-1] and np.all(np.diff(cols.astype(int)) >= 0)
        np.testing.assert_array_equal(cf == 0, pad)
        saw_padding |= pad.any()
        saw_crop_only |= not pad.any()
    assert saw_padding and saw_crop_only  # U(0.5, 2) draws both kinds


def test_hflip_mirrors_image_label_and_confidence_together():
    image, label, conf = (jnp.asarray(x) for x in _inputs())
    flipped = geometric.random_hflip(jax.random.key(0), image, label, conf, prob=1.0)
    kept = geometric.random_hflip(jax.random.key(0), image, label, conf, prob=0.0)
    for out, same, x in zip(flipped, kept, (image, label, conf)):
        np.testing.assert_array_equal(np.asarray(out), np.asarray(x)[:, ::-1])
        np.testing.assert_array_equal(np.asarray(same), np.asarray(x))


def test_random_rescale_crop_resizes_to_floor_s_h_by_floor_s_w_and_crops_at_every_offset():
    # s fixed at 1.1: PIL's resize to floor(1.1 H) x floor(1.1 W) = 16 x 23, then a crop whose origin
    # is uniform over all 2 x 3 positions of that image, both ends included (torchvision
    # RandomCrop.get_params). Each output must be the PIL reference at exactly one of them.
    image, label, conf = _inputs(2)
    scale = 1.1
    scaled = (int(H * np.float32(scale)), int(W * np.float32(scale)))
    assert scaled == (16, 23)
    offsets = [(y, x) for y in range(scaled[0] - H + 1) for x in range(scaled[1] - W + 1)]
    refs = {o: _pil_rescale_crop(image, label, conf, scaled, o) for o in offsets}
    fn = jax.jit(jax.vmap(lambda k: geometric.random_rescale_crop(
        k, jnp.asarray(image), jnp.asarray(label), jnp.asarray(conf), scale_range=(scale, scale))))
    outs = [np.asarray(x) for x in fn(jax.random.split(jax.random.key(4), 48))]
    seen = set()
    for im, lb, cf in zip(*outs):
        matches = [o for o, (ri, rl, rc) in refs.items()
                   if np.allclose(im, ri, atol=2e-6, rtol=0) and np.array_equal(lb, rl) and np.array_equal(cf, rc)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert seen == set(offsets)
