"""Supervised CE / OHEM equal loop references (PyTorch CE semantics, U2PL's OHEM)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.losses.supervised import cross_entropy, ohem_cross_entropy
from tests.loss_references import cross_entropy_ref, ohem_ref


def _inputs(seed, b=2, h=6, w=7, k=5, ignore_frac=0.25, scale=3.0):
    rng = np.random.RandomState(seed)
    logits = (rng.randn(b, h, w, k) * scale).astype(np.float32)
    labels = rng.randint(0, k, size=(b, h, w))
    labels[rng.rand(b, h, w) < ignore_frac] = 255
    return logits, labels.astype(np.int32)


@pytest.mark.parametrize("seed", [0, 1])
def test_cross_entropy_matches_loop_reference(seed):
    logits, labels = _inputs(seed)
    got = float(jax.jit(cross_entropy)(logits, labels))
    assert abs(got - cross_entropy_ref(logits, labels)) <= 1e-5


def test_cross_entropy_is_zero_without_labelled_pixels():
    logits, labels = _inputs(0)
    got = cross_entropy(logits, np.full_like(labels, 255))
    assert float(got) == 0.0


def test_cross_entropy_accepts_bfloat16_logits():
    logits, labels = _inputs(3)
    got = float(cross_entropy(jnp.asarray(logits, jnp.bfloat16), labels))
    ref = cross_entropy_ref(np.asarray(jnp.asarray(logits, jnp.bfloat16).astype(jnp.float32)), labels)
    assert abs(got - ref) <= 1e-5


@pytest.mark.parametrize("min_kept,thresh", [
    (1000, 0.7),  # fewer labelled pixels than min_kept: keep all of them
    (10, 0.7),    # min_kept-th smallest prob below thresh: threshold = thresh
    (40, 0.05),   # min_kept-th smallest prob above thresh: threshold = that prob
    (0, 0.5),     # no minimum: threshold = thresh
])
def test_ohem_matches_u2pl_reference(min_kept, thresh):
    logits, labels = _inputs(4)
    fn = jax.jit(lambda lg, lb: ohem_cross_entropy(lg, lb, thresh=thresh, min_kept=min_kept))
    got = float(fn(logits, labels))
    ref = ohem_ref(logits, labels, thresh=thresh, min_kept=min_kept)
    if min_kept == 0:  # U2PL keeps every pixel when min_kept == 0; ours applies thresh
        ref = ohem_ref(logits, labels, thresh=thresh, min_kept=1)
    assert abs(got - ref) <= 1e-5


def test_ohem_keeps_at_least_min_kept_pixels():
    logits, labels = _inputs(5, scale=10.0)  # confident logits: few pixels below thresh
    probs = jax.nn.softmax(jnp.asarray(logits), -1)
    valid = labels != 255
    p_true = np.take_along_axis(np.asarray(probs), np.where(valid, labels, 0)[..., None], -1)[..., 0]
    kth = np.sort(p_true[valid])[29]
    kept = valid & (p_true <= max(0.7, kth))
    assert kept.sum() >= 30
    manual = cross_entropy(logits, np.where(kept, labels, 255))
    assert abs(float(ohem_cross_entropy(logits, labels, min_kept=30)) - float(manual)) <= 1e-5


def test_jit_clean_no_transfers_no_host_callbacks():
    logits, labels = (jnp.asarray(x) for x in _inputs(6))
    fns = [jax.jit(jax.value_and_grad(cross_entropy)),
           jax.jit(jax.value_and_grad(lambda lg, lb: ohem_cross_entropy(lg, lb, min_kept=20)))]
    outs = [fn(logits, labels) for fn in fns]  # compile outside the guard
    with jax.transfer_guard("disallow"):
        outs = [fn(logits, labels) for fn in fns]
        jax.block_until_ready(outs)
    for fn in (cross_entropy, ohem_cross_entropy):
        assert "callback" not in str(jax.make_jaxpr(jax.grad(fn))(logits, labels))


def test_labels_outside_the_classes_are_ignored_like_the_ignore_label():
    # Ids in [K, 255) (e.g. a mask of another dataset) carry no class: they are left out of the mean.
    logits, labels = _inputs(7)
    labels[0, :2] = 5  # K = 5
    labels[1, 3, :4] = 200
    ref = cross_entropy_ref(logits, np.where(labels >= 5, 255, labels))
    assert abs(float(cross_entropy(logits, labels)) - ref) <= 1e-5


def test_ohem_default_threshold_is_the_published_0_7():
    # True-class probabilities 0.699 and 0.701 (logit a, four zeros: p = e^a / (e^a + 4)): with
    # min_kept below them, the first is kept and the second dropped only by a threshold in
    # [0.699, 0.701).
    logits, labels = _inputs(4)
    for x, p in ((0, 0.699), (1, 0.701)):
        labels[0, x], logits[0, x] = 0, [np.log(4 * p / (1 - p)), 0.0, 0.0, 0.0, 0.0]
    got = float(ohem_cross_entropy(logits, labels, min_kept=10))
    assert abs(got - ohem_ref(logits, labels, thresh=0.7, min_kept=10)) <= 1e-5
    for other in (0.698, 0.702):
        assert abs(got - ohem_ref(logits, labels, thresh=other, min_kept=10)) > 1e-3
