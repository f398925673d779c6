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
