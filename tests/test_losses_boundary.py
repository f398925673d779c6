"""Edge targets and the boundary Dice loss equal pixel-loop references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.losses.boundary import dice_loss, edge_targets
from tests.loss_references import dice_ref, edge_targets_ref


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
