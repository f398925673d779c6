"""Weighted contrastive loss against ReCo's published loop code (PyTorch, `loss_references.py`)."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.losses.contrastive import default_anchor_chunk, weighted_contrastive_loss
from tests.loss_references import reco_loss_ref

KW = dict(num_queries=32, num_negatives=16, strong_threshold=0.97, temperature=0.5,
          negative_weight=2.0)


@pytest.fixture(scope="module", autouse=True)
def _torch_single_thread():
    # The references are tiny: torch's thread pool only adds contention on a shared machine.
    torch = pytest.importorskip("torch")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@functools.partial(jax.jit, static_argnames=tuple(KW) + ("num_classes", "anchor_chunk"))
def _loss_aux_grad(key, rep, labels, probs, **kw):
    """((loss, aux), d loss / d rep), jitted once per shape and settings (inputs are arguments, not
    constants, so XLA does not constant-fold the sort at compile time)."""
    fn = lambda r: weighted_contrastive_loss(key, r, labels, probs, **kw)  # noqa: E731
    return jax.value_and_grad(fn, has_aux=True)(rep)


def _loss_and_grad(key, rep, labels, probs, **kw):
    (loss, _), grad = _loss_aux_grad(key, rep, labels, probs, **kw)
    return loss, grad


def _random_inputs(seed, n=2, h=6, w=6, d=8, k=4, ignore_frac=0.2):
    rng = np.random.RandomState(seed)
    labels = rng.randint(0, k, size=(n, h, w))
    labels[rng.rand(n, h, w) < ignore_frac] = 255
    centers = rng.randn(k, d)
    rep = (0.7 * centers[np.where(labels == 255, 0, labels)] + rng.randn(n, h, w, d))
    probs = rng.dirichlet(np.full(k, 0.3), size=(n, h, w))
    return rep.astype(np.float32), labels.astype(np.int32), probs.astype(np.float32)


def _one_pixel_per_class():
    """Two present classes (of 5), one valid and hard pixel each: every sample is the same."""
    rng = np.random.RandomState(0)
    rep = rng.randn(2, 4, 5, 6).astype(np.float32)
    probs = rng.dirichlet(np.ones(5), size=(2, 4, 5)).astype(np.float32)
    labels = np.full((2, 4, 5), 255, np.int32)
    labels[0, 1, 2], labels[1, 3, 4] = 1, 3
    probs[0, 1, 2, 1] = probs[1, 3, 4, 3] = 0.1  # below strong_threshold: hard anchors
    return rep, labels, probs


# The chunk loop's iterations: None = the backend's default (here all 32 anchors of a class at
# once, as on an accelerator); 1 and 4 take 32 and 8 iterations per class, as on a CPU at full size.
@pytest.mark.parametrize("anchor_chunk", [None, 1, 4])
def test_equals_reference_exactly_when_sampling_is_deterministic(anchor_chunk):
    rep, labels, probs = _one_pixel_per_class()
    loss, grad = _loss_and_grad(jax.random.PRNGKey(3), rep, labels, probs, num_classes=5,
                                anchor_chunk=anchor_chunk, **KW)
    ref_loss, ref_grad = reco_loss_ref(rep, labels, probs, num_classes=5, with_grad=True, **KW)
    assert abs(float(loss) - ref_loss) <= 1e-5
    np.testing.assert_allclose(np.asarray(grad), ref_grad, atol=1e-5, rtol=0)


def test_class_without_hard_anchor_is_skipped_but_counted():
    # Classes 0 (hard), 2 and 4 (confident: no hard anchor). 2 and 4 share one representation, so
    # class 0's negatives are the same vector whichever class is drawn: deterministic again.
    rep, _, probs = _one_pixel_per_class()
    labels = np.full((2, 4, 5), 255, np.int32)
    labels[0, 0, 0], labels[0, 2, 2], labels[1, 1, 1] = 0, 2, 4
    rep[1, 1, 1] = rep[0, 2, 2]
    probs[0, 0, 0] = [0.5, 0.2, 0.1, 0.1, 0.1]
    probs[0, 2, 2] = [0.0, 0.0, 1.0, 0.0, 0.0]
    probs[1, 1, 1] = [0.0, 0.0, 0.01, 0.0, 0.99]
    (loss, aux), grad = _loss_aux_grad(jax.random.PRNGKey(0), rep, labels, probs, num_classes=5, **KW)
    ref_loss, ref_grad = reco_loss_ref(rep, labels, probs, num_classes=5, with_grad=True, **KW)
    assert int(aux["num_present_classes"]) == 3 and int(aux["num_valid_classes"]) == 1
    assert abs(float(loss) - ref_loss) <= 1e-5
    np.testing.assert_allclose(np.asarray(grad), ref_grad, atol=1e-5, rtol=0)


def test_mean_over_keys_matches_reference_mean_over_seeds():
    rep, labels, probs = _random_inputs(0)
    kw = dict(KW, num_classes=4)
    samples = 200
    outs = [_loss_and_grad(key, rep, labels, probs, **kw)
            for key in jax.random.split(jax.random.PRNGKey(0), samples)]
    losses, grads = jnp.stack([o[0] for o in outs]), jnp.stack([o[1] for o in outs])
    refs = [reco_loss_ref(rep, labels, probs, seed=s, with_grad=True, **kw) for s in range(samples)]
    ref_mean = np.mean([r[0] for r in refs])
    # Standard error of each mean is ~0.2% here; 2% is a wide margin.
    assert abs(float(jnp.mean(losses)) - ref_mean) <= 0.02 * ref_mean
    # Mean gradients agree too (noisier: ~5% relative L2 at 200 samples).
    g, ref_g = np.asarray(jnp.mean(grads, 0)), np.mean([r[1] for r in refs], 0)
    assert np.linalg.norm(g - ref_g) <= 0.15 * np.linalg.norm(ref_g)
    assert float(jnp.std(losses)) > 0  # different keys, different samples


def test_gradient_reaches_rep_only_through_hard_anchors():
    rep, labels, probs = _random_inputs(1)
    k = 4
    # Make half of each class's pixels confident: they are prototypes' members and negative keys,
    # never anchors.
    rng = np.random.RandomState(1)
    easy = (labels != 255) & (rng.rand(*labels.shape) < 0.5)
    onehot = np.eye(k, dtype=np.float32)[np.where(labels == 255, 0, labels)]
    probs = np.where(easy[..., None], onehot, probs).astype(np.float32)
    hard = (labels != 255) & ~easy
    loss, grad = _loss_and_grad(jax.random.PRNGKey(0), rep, labels, probs, num_classes=k,
                                **KW)
    grad_norm = np.linalg.norm(np.asarray(grad), axis=-1)
    assert float(loss) > 0
    assert np.all(grad_norm[~hard] == 0.0)  # keys, prototypes, ignored pixels: no gradient
    assert np.count_nonzero(grad_norm[hard]) > hard.sum() // 2  # sampled anchors do get one


def test_jit_clean_no_transfers_no_host_callbacks():
    rep, labels, probs = (jnp.asarray(x) for x in _random_inputs(2))
    key = jax.random.PRNGKey(0)
    fn = lambda key, r, l, p: weighted_contrastive_loss(key, r, l, p, num_classes=4, **KW)  # noqa: E731
    fwd = jax.jit(fn)
    jax.block_until_ready((fwd(key, rep, labels, probs),  # compile outside the guard
                           _loss_aux_grad(key, rep, labels, probs, num_classes=4, **KW)))
    with jax.transfer_guard("disallow"):
        out = fwd(key, rep, labels, probs)
        out_grad = _loss_aux_grad(key, rep, labels, probs, num_classes=4, **KW)
        jax.block_until_ready((out, out_grad))
    for jaxpr in (jax.make_jaxpr(fn)(key, rep, labels, probs),
                  jax.make_jaxpr(jax.grad(lambda r: fn(key, r, labels, probs)[0]))(rep)):
        assert "callback" not in str(jaxpr)


@pytest.mark.parametrize("case", ["one_class", "all_ignored"])
def test_zero_with_fewer_than_two_classes(case):
    rep, labels, probs = _random_inputs(3)
    labels = np.where(labels == 255, 255, 2) if case == "one_class" else np.full_like(labels, 255)
    (loss, aux), grad = _loss_aux_grad(jax.random.PRNGKey(0), rep, labels.astype(np.int32), probs,
                                       num_classes=4, **KW)
    assert float(loss) == 0.0
    assert int(aux["num_present_classes"]) == (1 if case == "one_class" else 0)
    assert np.all(np.asarray(grad) == 0.0)


def test_no_nan_for_degenerate_representations_and_confident_classes():
    rep, labels, probs = _random_inputs(4)
    rep[0] = 0.0  # zero vectors: cosine must stay finite
    probs[1] = np.eye(4, dtype=np.float32)[np.where(labels[1] == 255, 0, labels[1])]
    loss, grad = _loss_and_grad(jax.random.PRNGKey(0), rep, labels, probs, num_classes=4, **KW)
    assert np.isfinite(float(loss)) and np.isfinite(np.asarray(grad)).all()
    # Every pixel confident: no class has anchors, loss 0.
    confident = np.eye(4, dtype=np.float32)[np.where(labels == 255, 0, labels)]
    loss2, grad2 = _loss_and_grad(jax.random.PRNGKey(0), rep, labels, confident, num_classes=4, **KW)
    assert float(loss2) == 0.0 and np.isfinite(np.asarray(grad2)).all()


def test_bfloat16_rep_is_computed_in_float32():
    rep, labels, probs = _random_inputs(5)
    rep16 = jnp.asarray(rep, jnp.bfloat16)
    key = jax.random.PRNGKey(0)
    (got, _), grad = _loss_aux_grad(key, rep16, labels, probs, num_classes=4, **KW)
    ref, _ = _loss_and_grad(key, rep16.astype(jnp.float32), labels, probs, num_classes=4, **KW)
    assert grad.dtype == jnp.bfloat16
    assert got.dtype == jnp.float32
    assert abs(float(got) - float(ref)) <= 1e-5


def test_gradient_reuses_the_donated_rep_buffer():
    """forward+backward with `rep` donated holds one [P, D] buffer, not two (the issue-4 memory
    budget at 4 x 256^2 x 512 depends on it)."""
    n, h, w, d, k = 2, 64, 64, 256, 4
    rep = jax.ShapeDtypeStruct((n, h, w, d), jnp.float32)
    labels = jax.ShapeDtypeStruct((n, h, w), jnp.int32)
    probs = jax.ShapeDtypeStruct((n, h, w, k), jnp.float32)

    def grad_fn(rep, key, labels, probs):
        return jax.grad(lambda r: weighted_contrastive_loss(key, r, labels, probs, num_classes=k,
                                                            **KW)[0])(rep)

    compiled = jax.jit(grad_fn, donate_argnums=0).lower(
        rep, jax.random.PRNGKey(0), labels, probs).compile()
    mem = compiled.memory_analysis()
    rep_bytes = n * h * w * d * 4
    assert mem.alias_size_in_bytes == rep_bytes  # the gradient is written into rep's buffer
    assert mem.temp_size_in_bytes < rep_bytes // 2  # and no second [P, D] temporary


def test_representation_in_parts_is_the_concatenation_with_a_gradient_per_part():
    # The train step passes the labelled and unlabelled forwards' representations separately.
    rep, labels, probs = _random_inputs(3, n=3)
    key = jax.random.key(5)
    fn = lambda r: weighted_contrastive_loss(key, r, labels, probs, num_classes=4, **KW)[0]  # noqa: E731
    whole, grad = jax.value_and_grad(fn)(jnp.asarray(rep))
    parts = (jnp.asarray(rep[:1]), jnp.asarray(rep[1:]))
    in_parts, part_grads = jax.value_and_grad(fn)(parts)
    assert float(whole) > 0
    np.testing.assert_allclose(float(in_parts), float(whole), rtol=1e-6)
    assert [g.shape for g in part_grads] == [(1,) + rep.shape[1:], (2,) + rep.shape[1:]]
    np.testing.assert_allclose(np.concatenate(part_grads), grad, rtol=1e-6, atol=1e-7)
    assert float(jnp.abs(part_grads[0]).sum()) > 0 and float(jnp.abs(part_grads[1]).sum()) > 0


def _linear_head(seed, features_dim, rep_dim):
    rng = np.random.RandomState(seed)
    return (rng.randn(features_dim, rep_dim).astype(np.float32) / np.sqrt(features_dim),
            (0.3 * rng.randn(rep_dim)).astype(np.float32))


def _factored_loss_and_grads(key, features, kernel, bias, labels, probs, **kw):
    """The loss on `features @ kernel + bias` given in factored form, and its gradients to all three."""
    fn = lambda f, w, b: weighted_contrastive_loss(key, f, labels, probs, rep_kernel=w, rep_bias=b, **kw)[0]  # noqa: E731
    return jax.jit(jax.value_and_grad(fn, argnums=(0, 1, 2)))(features, kernel, bias)


# 5 features -> a 6-d representation: the factored form; 7 -> 6: keys formed, gathered 6-wide.
@pytest.mark.parametrize("features_dim", [5, 7])
def test_factored_representation_equals_reference_exactly_when_sampling_is_deterministic(features_dim):
    _, labels, probs = _one_pixel_per_class()
    features = np.random.RandomState(2).randn(*labels.shape, features_dim).astype(np.float32)
    kernel, bias = _linear_head(1, features_dim, 6)
    loss, (g_f, g_w, g_b) = _factored_loss_and_grads(jax.random.PRNGKey(3), features, kernel, bias,
                                                     labels, probs, num_classes=5, **KW)
    rep_ref = features.astype(np.float64) @ kernel + bias
    ref_loss, ref_grad = reco_loss_ref(rep_ref.astype(np.float32), labels, probs, num_classes=5,
                                       with_grad=True, **KW)
    assert abs(float(loss) - ref_loss) <= 1e-5
    flat_f, flat_g = features.reshape(-1, features_dim), ref_grad.reshape(-1, 6)
    np.testing.assert_allclose(np.asarray(g_f), ref_grad @ kernel.T, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(g_w), flat_f.T @ flat_g, atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(g_b), flat_g.sum(0), atol=1e-5, rtol=0)


@pytest.mark.parametrize("features_dim,rep_dim", [(12, 20), (20, 12)])  # factored / keys formed
def test_factored_representation_is_the_same_loss_and_gradient_as_the_formed_one(features_dim, rep_dim):
    """Sampled case: same key, the same anchors and negatives; the gradient to the formed
    representation maps to features, kernel and bias by the chain rule."""
    _, labels, probs = _random_inputs(6, n=3, h=8, w=8)
    features = np.random.RandomState(7).randn(3, 8, 8, features_dim).astype(np.float32)
    features[..., 0] += 2.0 * np.where(labels == 255, 0, labels)  # classes apart in feature space
    kernel, bias = _linear_head(2, features_dim, rep_dim)
    key = jax.random.PRNGKey(11)
    rep = jnp.asarray(features) @ kernel + bias
    (loss, aux), grad = _loss_aux_grad(key, rep, labels, probs, num_classes=4, **KW)
    got, (g_f, g_w, g_b) = _factored_loss_and_grads(key, features, kernel, bias, labels, probs,
                                                    num_classes=4, **KW)
    assert float(loss) > 0 and int(aux["num_valid_classes"]) >= 2
    np.testing.assert_allclose(float(got), float(loss), rtol=1e-5)
    grad = np.asarray(grad).reshape(-1, rep_dim)
    np.testing.assert_allclose(np.asarray(g_f).reshape(-1, features_dim), grad @ kernel.T, atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(g_w), features.reshape(-1, features_dim).T @ grad, atol=1e-6, rtol=1e-4)
    np.testing.assert_allclose(np.asarray(g_b), grad.sum(0), atol=1e-6, rtol=1e-4)


def test_default_anchor_chunk_fills_the_backends_block():
    # float32 [C, M, D] blocks of 4 MB on CPU, 256 MB elsewhere (M = 512 negatives).
    assert default_anchor_chunk(512, 256, "cpu") == 8 and default_anchor_chunk(512, 512, "cpu") == 4
    assert default_anchor_chunk(512, 512, "gpu") == 256 and default_anchor_chunk(512, 256, "tpu") == 512
    assert default_anchor_chunk(2**20, 2**10, "cpu") == 1  # never zero
    assert default_anchor_chunk(512, 256) == default_anchor_chunk(512, 256, jax.default_backend())


@pytest.mark.parametrize("anchor_chunk", [1, 8])
def test_chunking_leaves_the_sampled_loss_and_gradient_unchanged(anchor_chunk):
    """Same key, so the same anchors and negatives; only how many anchors share a loop iteration
    differs (8 of 32 per class: a class's chunks are skipped together when it has no hard anchor)."""
    rep, labels, probs = _random_inputs(4, n=3, h=8, w=8)
    probs[labels == 2, 2] = 1.0  # class 2 has no hard anchor: its chunks are skipped
    key = jax.random.PRNGKey(5)
    (loss, aux), grad = _loss_aux_grad(key, rep, labels, probs, num_classes=4, **KW)
    (got, _), got_grad = _loss_aux_grad(key, rep, labels, probs, num_classes=4, anchor_chunk=anchor_chunk, **KW)
    assert float(loss) > 0 and int(aux["num_valid_classes"]) == 3
    np.testing.assert_allclose(float(got), float(loss), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(got_grad), np.asarray(grad), atol=1e-7, rtol=1e-5)


def test_factored_representation_rejects_a_kernel_of_the_wrong_width():
    rep, labels, probs = _random_inputs(0)
    kernel, bias = _linear_head(0, 5, 6)  # rep has 8 features
    with pytest.raises(ValueError, match="do not map 8 features"):
        weighted_contrastive_loss(jax.random.PRNGKey(0), rep, labels, probs, num_classes=4,
                                  rep_kernel=kernel, rep_bias=bias, **KW)


def test_uniform_below_is_the_high_word_of_bits_times_n():
    # Independent reference: the same bits, multiplied in numpy's uint64.
    from mofgseg_jax.losses.contrastive import _uniform_below

    key = jax.random.PRNGKey(3)
    n = np.random.RandomState(0).randint(1, 2**31, size=(64, 100)).astype(np.uint64)
    n[0, :3] = [1, 2**31 - 1, 2**16]
    bits = np.asarray(jax.random.bits(key, n.shape, jnp.uint32)).astype(np.uint64)
    got = np.asarray(_uniform_below(key, n.shape, jnp.asarray(n.astype(np.int32))))
    np.testing.assert_array_equal(got, ((bits * n) >> 32).astype(np.int64))
    assert got[0, 0] == 0 and np.all((got >= 0) & (got < n))


def test_uniform_below_draws_every_value_equally_often():
    from mofgseg_jax.losses.contrastive import _uniform_below

    draws = np.asarray(_uniform_below(jax.random.PRNGKey(0), (70000,), jnp.int32(7)))
    counts = np.bincount(draws, minlength=7)
    chi2 = np.sum((counts - 10000.0) ** 2 / 10000.0)
    assert counts.size == 7 and chi2 < 22.5  # chi-square, 6 degrees of freedom: p = 0.001


def test_negative_sampling_temporaries_stay_below_one_class_comparison_array():
    """The [K, Q, M, K] class comparison behind the negative classes is fused, never stored (K=14,
    Q=256, M=512: 98 MB as int32; an earlier form held three)."""
    n, h, w, d, k, q, m = 2, 32, 32, 64, 14, 256, 512
    shapes = (jax.ShapeDtypeStruct((n, h, w, d), jnp.float32), jax.random.PRNGKey(0),
              jax.ShapeDtypeStruct((n, h, w), jnp.int32), jax.ShapeDtypeStruct((n, h, w, k), jnp.float32))

    def grad_fn(rep, key, labels, probs):
        return jax.grad(lambda r: weighted_contrastive_loss(key, r, labels, probs, num_classes=k,
                                                            num_queries=q, num_negatives=m)[0])(rep)

    compiled = jax.jit(grad_fn, donate_argnums=0).lower(*shapes).compile()
    assert compiled.memory_analysis().temp_size_in_bytes < k * q * m * k * 4


def test_inactive_anchor_chunks_are_zero_and_leave_the_others_unchanged():
    from mofgseg_jax.losses.contrastive import _anchor_ce

    rng = np.random.RandomState(0)
    a, d, p, m, chunk = 8, 6, 20, 5, 2
    anchors = jnp.asarray(rng.randn(a, d), jnp.float32)
    offsets, pos = (jnp.asarray(rng.randn(a), jnp.float32) for _ in range(2))
    keys = jnp.asarray(rng.randn(p, d), jnp.float32)
    inv = jnp.asarray(rng.rand(p) + 0.5, jnp.float32)
    idx = jnp.asarray(rng.randint(0, p, (a, m)), jnp.int32)
    active = jnp.asarray([True, True, False, False, True, True, False, False])

    def ce_and_grad(flags):
        ce = _anchor_ce(anchors, offsets, pos, keys, inv, idx, flags, 2.0, 0.5, chunk)
        grad = jax.grad(lambda x: jnp.sum(jnp.where(flags, _anchor_ce(
            x, offsets, pos, keys, inv, idx, flags, 2.0, 0.5, chunk), 0.0)))(anchors)
        return np.asarray(ce), np.asarray(grad)

    all_ce, all_grad = ce_and_grad(jnp.ones(a, bool))
    ce, grad = ce_and_grad(active)
    on = np.asarray(active)
    assert np.all(all_ce > 0) and np.all(ce[~on] == 0)
    np.testing.assert_array_equal(ce[on], all_ce[on])
    np.testing.assert_array_equal(grad[on], all_grad[on])
    assert np.all(grad[~on] == 0)


def test_a_pixel_whose_own_probability_equals_the_strong_threshold_is_not_a_hard_anchor():
    # Hard anchors: own-class prob strictly below strong_threshold (ReCo's `prob_seg < strong_threshold`).
    # Class 3's only pixel sits exactly on the threshold (0.75, exact in float32): skipped but counted.
    rep, labels, probs = _one_pixel_per_class()
    probs[1, 3, 4, 3] = 0.75
    kw = dict(KW, strong_threshold=0.75)
    (loss, aux), grad = _loss_aux_grad(jax.random.PRNGKey(3), rep, labels, probs, num_classes=5, **kw)
    ref_loss, ref_grad = reco_loss_ref(rep, labels, probs, num_classes=5, with_grad=True, **kw)
    assert int(aux["num_valid_classes"]) == 1
    assert abs(float(loss) - ref_loss) <= 1e-5
    np.testing.assert_allclose(np.asarray(grad), ref_grad, atol=1e-5, rtol=0)


PUBLISHED = dict(strong_threshold=0.97, num_queries=256, num_negatives=512, temperature=0.5, negative_weight=2.0)


def test_defaults_are_the_published_settings():
    # DESIGN.md §3 step 6: strong_threshold 0.97, 256 queries, 512 negatives, temperature 0.5,
    # negative weight 2.0. (a) Against the reference, given them explicitly, where sampling is
    # deterministic: the logits' settings (T, weight, M).
    rep, labels, probs = _one_pixel_per_class()
    loss, _ = weighted_contrastive_loss(jax.random.PRNGKey(3), rep, labels, probs, num_classes=5)
    ref_loss, _ = reco_loss_ref(rep, labels, probs, num_classes=5, **PUBLISHED)
    assert abs(float(loss) - ref_loss) <= 1e-5
    # (b) The threshold and Q decide which pixels are drawn, which (a) cannot see: with own-class
    # probabilities either side of 0.97, the defaults draw what the published settings draw from
    # one key, and a neighbouring threshold or another Q draws something else.
    rep, labels, probs = _random_inputs(5, k=3)
    own = np.take_along_axis(probs, np.where(labels == 255, 0, labels)[..., None], -1)[..., 0]
    np.put_along_axis(probs, np.where(labels == 255, 0, labels)[..., None],
                      np.where(np.arange(own.size).reshape(own.shape) % 2, 0.965, 0.975)[..., None], -1)
    key = jax.random.PRNGKey(4)

    def loss_with(**kw):
        return float(weighted_contrastive_loss(key, rep, labels, probs, num_classes=3, **kw)[0])

    assert loss_with() == loss_with(**PUBLISHED)
    for other in (dict(strong_threshold=0.96), dict(strong_threshold=0.98), dict(num_queries=128)):
        assert loss_with(**{**PUBLISHED, **other}) != loss_with(), other


def test_negative_keys_are_uniform_over_all_valid_pixels_of_their_class_not_only_hard_ones():
    """Class 1: one hard pixel (the anchor, representation u). Class 3: two confident pixels (no
    hard anchor of its own), u and -u: each negative is u or -u with probability 1/2. With cosines
    1 (positive), +-1 (negatives), weight 2 and T = 0.5, an anchor with j negatives equal to u has
    CE = log(e^2 + j e^4 + (M - j) e^-4) - 2, j ~ Binomial(M, 1/2); the loss is the mean over the
    Q anchors of class 1 divided by the 2 present classes. Expected value summed over the binomial
    here; drawing only from hard pixels (none in class 3) would give j = M (0.35 higher)."""
    from math import lgamma

    q, m = 256, 512
    rep = np.zeros((2, 4, 5, 6), np.float32)
    labels = np.full((2, 4, 5), 255, np.int32)
    probs = np.full((2, 4, 5, 5), 0.2, np.float32)
    u = np.array([1.0, 2.0, -1.0, 0.5, 0.0, 3.0], np.float32)
    labels[0, 1, 2], rep[0, 1, 2], probs[0, 1, 2] = 1, u, [0.3, 0.1, 0.2, 0.2, 0.2]
    for (i, y, x), sign in (((0, 3, 0), 1.0), ((1, 2, 2), -1.0)):
        labels[i, y, x], rep[i, y, x], probs[i, y, x] = 3, sign * u, [0.0, 0.0, 0.0, 1.0, 0.0]
    kw = dict(KW, num_queries=q, num_negatives=m)
    (loss, aux), _ = _loss_aux_grad(jax.random.PRNGKey(0), rep, labels, probs, num_classes=5, **kw)
    j = np.arange(m + 1)
    pmf = np.exp([lgamma(m + 1) - lgamma(k + 1) - lgamma(m - k + 1) - m * np.log(2.0) for k in j])
    ce = np.log(np.exp(2.0) + j * np.exp(4.0) + (m - j) * np.exp(-4.0)) - 2.0
    expected = float(np.sum(pmf * ce)) / 2
    assert int(aux["num_present_classes"]) == 2 and int(aux["num_valid_classes"]) == 1
    # Sampling spread of the mean over 256 anchors: ~0.0015.
    assert abs(float(loss) - expected) <= 0.01
