"""The optimiser against torch.optim.SGD / AdamW + poly LambdaLR, and gradient accumulation semantics."""

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
import optax
import pytest

from mofgseg_jax.train import optim


def _cfg(**kw):
    c = ml_collections.ConfigDict(dict(lr=0.05, lr_multi=10.0, momentum=0.9, weight_decay=1e-2, power=0.9,
                                       warmup_steps=0, accumulate_steps=1))
    c.update(kw)
    return c


def _toy(seed=0):
    rs = np.random.RandomState(seed)
    params = {"backbone": {"w": rs.randn(5, 4).astype(np.float32) * 0.5},
              "decode_head": {"w": rs.randn(4, 3).astype(np.float32) * 0.5, "b": rs.randn(3).astype(np.float32)}}
    x = rs.randn(8, 5).astype(np.float32)
    y = rs.randn(8, 3).astype(np.float32)
    return params, x, y


def _loss(params, x, y):
    h = jnp.tanh(x @ params["backbone"]["w"])
    return jnp.mean((h @ params["decode_head"]["w"] + params["decode_head"]["b"] - y) ** 2)


def _matches_torch(cfg, total, seed, torch_optimizer, atol):
    """Runs our optimiser and `torch_optimizer(param_groups)` + poly LambdaLR side by side on a toy
    regression with two parameter groups; checks every parameter after every step."""
    import torch

    params, x, y = _toy(seed)
    tx, _ = optim.make_optimizer(cfg, total)
    p = jax.tree.map(jnp.asarray, params)
    opt_state = tx.init(p)

    tp = {k: torch.tensor(v, requires_grad=True) for k, v in
          [("bw", params["backbone"]["w"]), ("hw", params["decode_head"]["w"]), ("hb", params["decode_head"]["b"])]}
    topt = torch_optimizer([{"params": [tp["bw"]], "lr": cfg.lr},
                            {"params": [tp["hw"], tp["hb"]], "lr": cfg.lr * cfg.lr_multi}])
    warm = cfg.warmup_steps  # mmseg: lr x (1e-6 + (1 - 1e-6) it / W) for it < W

    def factor(it):
        scale = 1e-6 + (1 - 1e-6) * it / warm if it < warm else 1.0
        return (1 - it / total) ** cfg.power * scale

    sched = torch.optim.lr_scheduler.LambdaLR(topt, factor)
    tx_, ty_ = torch.tensor(x), torch.tensor(y)

    for _ in range(total):
        grads = jax.grad(_loss)(p, x, y)
        updates, opt_state = tx.update(grads, opt_state, p)
        p = optax.apply_updates(p, updates)

        topt.zero_grad()
        h = torch.tanh(tx_ @ tp["bw"])
        ((h @ tp["hw"] + tp["hb"] - ty_) ** 2).mean().backward()
        topt.step()
        sched.step()
        for ours, ref in [(p["backbone"]["w"], tp["bw"]), (p["decode_head"]["w"], tp["hw"]),
                          (p["decode_head"]["b"], tp["hb"])]:
            np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy(), atol=atol, rtol=0)


def test_sgd_momentum_weight_decay_poly_two_groups_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = _cfg()
    _matches_torch(cfg, 6, 0, lambda groups: torch.optim.SGD(
        groups, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay), atol=1e-6)


def test_adamw_decoupled_decay_poly_two_groups_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = _cfg(name="adamw", lr=0.01, lr_multi=3.0)
    _matches_torch(cfg, 6, 1, lambda groups: torch.optim.AdamW(
        groups, lr=cfg.lr, weight_decay=cfg.weight_decay), atol=2e-6)


def test_adamw_with_linear_warmup_matches_torch():
    torch = pytest.importorskip("torch")
    cfg = _cfg(name="adamw", lr=0.01, lr_multi=3.0, warmup_steps=4)
    _matches_torch(cfg, 8, 2, lambda groups: torch.optim.AdamW(
        groups, lr=cfg.lr, weight_decay=cfg.weight_decay), atol=2e-6)


def test_negative_warmup_is_one_clear_error():
    with pytest.raises(ValueError, match="warmup_steps"):
        optim.make_optimizer(_cfg(warmup_steps=-1), 5)


def test_unknown_optimizer_name_is_one_clear_error():
    with pytest.raises(ValueError, match="optim.name"):
        optim.make_optimizer(_cfg(name="lamb"), 5)


def test_poly_schedule_values():
    sched = optim.poly_schedule(0.01, 10, 0.9)
    for it in (0, 3, 9, 10, 12):
        expected = 0.01 * max(1 - it / 10, 0.0) ** 0.9
        assert float(sched(jnp.asarray(it))) == pytest.approx(expected, rel=1e-6, abs=1e-12)


def test_param_labels_split_backbone_from_the_rest():
    params, _, _ = _toy()
    labels = optim.param_labels(params)
    assert labels == {"backbone": {"w": "backbone"}, "decode_head": {"w": "decoder", "b": "decoder"}}


def test_accumulating_two_half_batches_equals_one_full_batch_step_and_schedule_counts_updates():
    params, x, y = _toy(1)
    updates_total = 3
    full_tx, _ = optim.make_optimizer(_cfg(), updates_total)
    acc_tx, _ = optim.make_optimizer(_cfg(accumulate_steps=2), updates_total)
    pf = pa = jax.tree.map(jnp.asarray, params)
    sf, sa = full_tx.init(pf), acc_tx.init(pa)
    for _ in range(updates_total):
        # One full-batch update ...
        u, sf = full_tx.update(jax.grad(_loss)(pf, x, y), sf, pf)
        pf = optax.apply_updates(pf, u)
        # ... equals two micro-steps on the halves (the loss is a mean over equal halves).
        for half in (slice(0, 4), slice(4, 8)):
            u, sa = acc_tx.update(jax.grad(_loss)(pa, x[half], y[half]), sa, pa)
            pa = optax.apply_updates(pa, u)
        # The poly schedule saw 1 update per 2 micro-steps: trajectories stay equal at every update.
        jax.tree.map(lambda a, b: np.testing.assert_allclose(np.asarray(a), np.asarray(b), atol=1e-6, rtol=0),
                     pa, pf)
    assert int(sa.gradient_step) == updates_total


def test_bad_accumulate_steps_is_rejected():
    with pytest.raises(ValueError, match="accumulate_steps"):
        optim.make_optimizer(_cfg(accumulate_steps=0), 5)


def test_linear_warmup_scales_the_lr_from_1e_6_then_leaves_the_schedule():
    # mmseg: lr * (1e-6 + (1 - 1e-6) * it / W) for it < W, hand-computed here.
    warmed = optim.with_linear_warmup(optim.poly_schedule(0.01, 10, 0.9), 4)
    for it in (0, 1, 3, 4, 7):
        poly = 0.01 * (1 - it / 10) ** 0.9
        expected = poly * (1e-6 + (1 - 1e-6) * it / 4) if it < 4 else poly
        assert float(warmed(jnp.asarray(it))) == pytest.approx(expected, rel=1e-6, abs=0)


def test_reported_lr_schedule_is_the_backbone_group_not_the_decoders():
    _, lr_fn = optim.make_optimizer(_cfg(lr_multi=10.0), 10)  # decoder at 0.5, backbone at 0.05
    for it in (0, 5):
        assert float(lr_fn(jnp.asarray(it))) == pytest.approx(0.05 * (1 - it / 10) ** 0.9, rel=1e-6)


def test_total_updates_count_only_complete_accumulations():
    # MultiSteps applies an update every k-th micro-step: 7 micro-steps with k = 2 make 3 updates.
    assert optim.total_updates_for(7, 2) == 3 and optim.total_updates_for(8, 2) == 4
    assert optim.total_updates_for(6, 1) == 6
