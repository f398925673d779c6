"""Pseudo-label loss equals ReCo's `compute_unsupervised_loss` (with 0 instead of NaN)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.losses.unsupervised import pseudo_label_loss
from tests.loss_references import pseudo_label_ref


def _inputs(seed, b=3, h=6, w=5, k=4):
    rng = np.random.RandomState(seed)
    logits = (rng.randn(b, h, w, k) * 3).astype(np.float32)
    target = rng.randint(0, k, size=(b, h, w))
    confidence = rng.uniform(0.5, 1.0, size=(b, h, w)).astype(np.float32)
    drop = rng.rand(b, h, w) < 0.3  # cut-out / low confidence: ignore with confidence 0
    target[drop] = 255
    confidence[drop] = 0.0
    return logits, target.astype(np.int32), confidence


@pytest.mark.parametrize("seed,strong", [(0, 0.97), (1, 0.8), (2, 0.6)])
def test_pseudo_label_loss_matches_reco_reference(seed, strong):
    logits, target, conf = _inputs(seed)
    fn = jax.jit(lambda a, b, c: pseudo_label_loss(a, b, c, strong_threshold=strong))
    got = float(fn(logits, target, conf))
    assert abs(got - pseudo_label_ref(logits, target, conf, strong_threshold=strong)) <= 1e-5


def test_pseudo_label_loss_with_an_image_without_valid_pixels():
    logits, target, conf = _inputs(3)
    target[1] = 255
    conf[1] = 0.0
    got = float(pseudo_label_loss(logits, target, conf, strong_threshold=0.8))
    assert np.isfinite(got)
    assert abs(got - pseudo_label_ref(logits, target, conf, strong_threshold=0.8)) <= 1e-5


def test_pseudo_label_loss_is_zero_not_nan_when_no_pixel_has_positive_ce():
    logits, target, conf = _inputs(4)
    assert float(pseudo_label_loss(logits, np.full_like(target, 255), conf)) == 0.0
    # Saturated logits: CE is exactly 0 in float32 everywhere.
    sharp = np.full_like(logits, -1e4)
    sharp[..., 0] = 1e4
    got = pseudo_label_loss(sharp, np.zeros_like(target), conf)
    grad = jax.grad(lambda x: pseudo_label_loss(x, np.zeros_like(target), conf))(sharp)
    assert float(got) == 0.0 and np.isfinite(np.asarray(grad)).all()


def test_jit_clean_no_transfers_no_host_callbacks():
    logits, target, conf = (jnp.asarray(x) for x in _inputs(5))
    fn = jax.jit(jax.value_and_grad(pseudo_label_loss))
    fn(logits, target, conf)  # compile outside the guard
    with jax.transfer_guard("disallow"):
        jax.block_until_ready(fn(logits, target, conf))
    assert "callback" not in str(jax.make_jaxpr(jax.grad(pseudo_label_loss))(logits, target, conf))


def test_valid_pixels_with_zero_ce_drop_out_of_the_mean():
    # DESIGN.md §3 step 6: the mean runs over the pixels whose CE > 0. Image 0 is saturated on its
    # pseudo-label (CE exactly 0 in float32) in its left half: those pixels are valid but not counted.
    logits, target, conf = _inputs(6)
    target[0, :, :3] = 1
    logits[0, :, :3] = -1e4
    logits[0, :, :3, 1] = 1e4
    got = float(pseudo_label_loss(logits, target, conf, strong_threshold=0.8))
    ref = pseudo_label_ref(logits, target, conf, strong_threshold=0.8)
    assert abs(got - ref) <= 1e-5


def test_a_confidence_equal_to_the_strong_threshold_counts_as_confident():
    # w_b counts pixels with confidence >= strong_threshold (0.75: exact in float32).
    logits, target, conf = _inputs(7)
    conf[conf > 0] = 0.5
    conf[:, :2] = np.where(target[:, :2] != 255, 0.75, 0.0)
    got = float(pseudo_label_loss(logits, target, conf, strong_threshold=0.75))
    ref = pseudo_label_ref(logits, target, conf, strong_threshold=0.75)
    assert ref > 0 and abs(got - ref) <= 1e-5


def test_default_strong_threshold_is_the_published_0_97():
    # Confidences just either side of 0.97: only a threshold in [0.9699, 0.9701) splits them so.
    logits, target, conf = _inputs(8)
    conf[conf > 0] = np.where(np.arange(conf[conf > 0].size) % 2, 0.9699, 0.9701)
    got = float(pseudo_label_loss(logits, target, conf))
    assert abs(got - pseudo_label_ref(logits, target, conf, strong_threshold=0.97)) <= 1e-5
    for other in (0.9698, 0.9702):
        assert abs(got - pseudo_label_ref(logits, target, conf, strong_threshold=other)) > 1e-3
