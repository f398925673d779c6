"""Edge targets and the boundary Dice loss equal pixel-loop references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.losses.boundary import dice_loss, edge_targets
from tests.loss_references import dice_ref, edge_targets_ref, edge_targets_void_ref


def _labels(seed, b=2, h=9, w=11, k=3):
    rng = np.random.RandomState(seed)
    # Blocky regions (so there are interiors and borders) plus scattered ignore.
    coarse = rng.randint(0, k, size=(b, (h + 2) // 3, (w + 2) // 3))
    labels = np.repeat(np.repeat(coarse, 3, axis=1), 3, axis=2)[:, :h, :w]
    labels[rng.rand(b, h, w) < 0.15] = 255
    return labels.astype(np.int32)


@pytest.mark.parametrize("connectivity,width", [(8, 1), (4, 1), (8, 2), (4, 3)])
def test_edge_targets_match_pixel_loop(connectivity, width):
    labels = _labels(connectivity + width)
    fn = jax.jit(lambda x: edge_targets(x, connectivity=connectivity, width=width))
    got = np.asarray(fn(labels))
    np.testing.assert_array_equal(got, edge_targets_ref(labels, connectivity=connectivity, width=width))


def test_edge_targets_ignore_is_never_boundary_and_does_not_make_boundaries():
    labels = np.zeros((1, 5, 5), np.int32)
    labels[0, 2, :] = 255  # a stripe of ignore inside one class
    edge = np.asarray(edge_targets(labels))
    assert edge.sum() == 0


def test_edge_targets_mark_both_sides_of_a_class_border():
    labels = np.zeros((1, 4, 6), np.int32)
    labels[0, :, 3:] = 1
    edge = np.asarray(edge_targets(labels, connectivity=4))
    expected = np.zeros((1, 4, 6), np.float32)
    expected[0, :, 2:4] = 1
    np.testing.assert_array_equal(edge, expected)


def _padded(labels, pad_bottom, pad_right):
    """Crop padding as `transforms.random_crop` makes it: labels 255 and `inside` 0 bottom/right."""
    b, h, w = labels.shape
    padded = np.pad(labels, ((0, 0), (0, pad_bottom), (0, pad_right)), constant_values=255)
    inside = np.pad(np.ones((b, h, w), np.uint8), ((0, 0), (0, pad_bottom), (0, pad_right)))
    return padded, inside


def _void_edges(labels, inside=None, **kwargs):
    fn = jax.jit(lambda x, m: edge_targets(x, ignore_is_region=True, inside=m, **kwargs))
    return np.asarray(fn(labels, inside))


@pytest.mark.parametrize("connectivity,width", [(8, 1), (4, 1), (8, 2), (4, 2)])
def test_void_as_region_matches_pixel_loop_with_padding_bottom_right(connectivity, width):
    labels, inside = _padded(_labels(10 + connectivity + width), 3, 4)  # scattered 255 inside, then padding
    got = _void_edges(labels, inside, connectivity=connectivity, width=width)
    np.testing.assert_array_equal(got, edge_targets_void_ref(labels, inside, connectivity, width))
    assert np.all(got[inside == 0] == 0)


@pytest.mark.parametrize("connectivity,width", [(8, 1), (4, 2)])
def test_void_as_region_matches_pixel_loop_after_a_flip(connectivity, width):
    labels, inside = _padded(_labels(20 + width), 2, 5)
    labels, inside = labels[:, :, ::-1], inside[:, :, ::-1]  # padding now on the left
    got = _void_edges(labels, inside, connectivity=connectivity, width=width)
    np.testing.assert_array_equal(got, edge_targets_void_ref(labels, inside, connectivity, width))
    assert np.all(got[inside == 0] == 0)


@pytest.mark.parametrize("connectivity,width", [(8, 1), (4, 1), (8, 2), (4, 2)])
def test_a_void_band_around_an_object_makes_edges_on_both_sides(connectivity, width):
    # Pascal VOC style: class 1 object in class 0 background, outlined by a 1-pixel void band.
    labels = np.zeros((1, 12, 12), np.int32)
    labels[0, 3:9, 3:9] = 255
    labels[0, 4:8, 4:8] = 1
    got = _void_edges(labels, None, connectivity=connectivity, width=width)
    np.testing.assert_array_equal(got, edge_targets_void_ref(labels, None, connectivity, width))
    assert np.all(got[0, 3:9, 3:9][labels[0, 3:9, 3:9] == 255] == 1)  # the whole band
    assert np.all(got[0, 4:8, 4:8][[0, -1], :] == 1) and np.all(got[0, 4:8, 4:8][:, [0, -1]] == 1)  # object rim
    assert np.all(got[0, 2, 3:9] == 1)  # the background just outside the band
    # The old rule sees no class next to another class here: no edge at all.
    assert float(edge_targets(labels, connectivity=connectivity, width=width).sum()) == 0


def test_padding_is_never_boundary_and_makes_no_boundary():
    labels, inside = _padded(np.zeros((1, 6, 7), np.int32), 3, 2)  # one class, then padding (255)
    assert _void_edges(labels, inside).sum() == 0
    labels[0, :6, 5:7] = 255  # void band at the image's right edge, next to the padding
    got = _void_edges(labels, inside, connectivity=4)
    np.testing.assert_array_equal(got, edge_targets_void_ref(labels, inside, 4))
    expected = np.zeros_like(got)
    expected[0, :6, 4:6] = 1  # class 0 | void border only; void | padding is none
    np.testing.assert_array_equal(got, expected)


def test_void_as_region_without_inside_counts_every_255_as_void():
    labels, _ = _padded(np.zeros((1, 4, 4), np.int32), 2, 0)
    got = _void_edges(labels, None, connectivity=4)
    expected = np.zeros_like(got)
    expected[0, 3:5] = 1  # without `inside`, padding would be a void region
    np.testing.assert_array_equal(got, expected)


def test_old_rule_is_the_default_and_inside_does_not_change_it():
    labels, inside = _padded(_labels(3), 2, 3)
    old = edge_targets_ref(labels, connectivity=8, width=2)
    np.testing.assert_array_equal(np.asarray(edge_targets(labels, width=2)), old)
    np.testing.assert_array_equal(np.asarray(edge_targets(labels, width=2, inside=inside)), old)


@pytest.mark.parametrize("seed", [0, 1])
def test_dice_loss_matches_reference(seed):
    rng = np.random.RandomState(seed)
    prob = rng.rand(3, 7, 8).astype(np.float32)
    target = (rng.rand(3, 7, 8) < 0.3).astype(np.float32)
    got = float(jax.jit(dice_loss)(prob, target))
    assert abs(got - dice_ref(prob, target)) <= 1e-5
    # The model's [B, H, W, 1] edge map is accepted as is.
    assert abs(float(dice_loss(prob[..., None], target)) - got) <= 1e-7


def test_dice_loss_of_empty_target_and_zero_prob_is_zero():
    z = jnp.zeros((2, 4, 4))
    assert float(dice_loss(z, z)) == 0.0


def test_jit_clean_no_transfers_no_host_callbacks():
    labels = jnp.asarray(_labels(7))
    prob = jnp.full(labels.shape + (1,), 0.3)
    fn = jax.jit(jax.value_and_grad(lambda p, lb: dice_loss(p, edge_targets(lb, width=2))))
    fn(prob, labels)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        jax.block_until_ready(fn(prob, labels))
    assert "callback" not in str(jax.make_jaxpr(
        jax.grad(lambda p, lb: dice_loss(p, edge_targets(lb))))(prob, labels))
    inside = jnp.ones(labels.shape, jnp.uint8)
    void = jax.jit(lambda lb, m: edge_targets(lb, ignore_is_region=True, inside=m, width=2))
    void(labels, inside)
    with jax.transfer_guard("disallow"):
        jax.block_until_ready(void(labels, inside))


def test_dice_loss_with_smooth_half_matches_the_numpy_formula():
    rng = np.random.RandomState(4)
    prob = rng.rand(2, 6, 5).astype(np.float32)
    target = (rng.rand(2, 6, 5) < 0.4).astype(np.float32)
    p, t = prob.astype(np.float64).reshape(2, -1), target.astype(np.float64).reshape(2, -1)
    expected = np.mean(1 - (2 * (p * t).sum(1) + 0.5) / ((p * p).sum(1) + (t * t).sum(1) + 0.5))
    assert float(dice_loss(prob, target, smooth=0.5)) == pytest.approx(expected, abs=1e-6)
    assert abs(float(dice_loss(prob, target)) - expected) > 1e-3  # the default +1 gives another value
