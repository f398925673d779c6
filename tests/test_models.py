"""The MOFGSeg network: output contract, train/eval behaviour, and parity with Hugging Face SegFormer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.models import build_model

TINY = dict(backbone="b0", num_classes=5, depths=(1, 1, 1, 1), dims=(16, 32, 80, 128), embed_dim=32, rep_dim=24)


@functools.lru_cache(maxsize=None)
def _tiny(**overrides):
    cfg = dict(TINY, **overrides)
    model = build_model(cfg)
    x = jnp.asarray(np.random.RandomState(0).randn(2, 37, 53, 3), jnp.float32)
    variables = jax.jit(lambda x: model.init({"params": jax.random.key(0), "dropout": jax.random.key(1)}, x))(x)
    return model, variables, x


def test_outputs_have_input_resolution_for_any_size():
    model, variables, x = _tiny()
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert out["logits"].shape == (2, 37, 53, 5) and out["logits"].dtype == jnp.float32
    assert out["rep"].shape == (2, 37, 53, 24)
    assert out["edge"].shape == (2, 37, 53, 1)
    assert float(out["edge"].min()) >= 0.0 and float(out["edge"].max()) <= 1.0


def test_top_level_collections_split_backbone_from_decoder():
    _, variables, _ = _tiny()
    assert set(variables) == {"params", "batch_stats"}
    assert set(variables["params"]) == {"backbone", "decode_head", "boundary"}
    assert set(variables["batch_stats"]) == {"decode_head", "boundary"}


def test_rep_at_stride4_keeps_representation_at_quarter_resolution():
    model, variables, x = _tiny(rep_at_stride4=True)
    out = jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)
    assert out["rep"].shape == (2, 10, 14, 24)  # ceil(37/4), ceil(53/4) as torch's conv gives
    assert out["logits"].shape == (2, 37, 53, 5)


def test_train_mode_updates_batch_stats_and_uses_dropout_rng():
    model, variables, x = _tiny()

    @jax.jit
    def train_apply(v, x, key):
        return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

    out_a, mutated = train_apply(variables, x, jax.random.key(1))
    out_b, _ = train_apply(variables, x, jax.random.key(2))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), mutated["batch_stats"], variables["batch_stats"])
    assert all(jax.tree.leaves(changed))
    assert float(jnp.max(jnp.abs(out_a["logits"] - out_b["logits"]))) > 0  # dropout / drop path differ


def test_bfloat16_compute_keeps_float32_params_and_outputs():
    model, variables, x = _tiny()
    bf16, _, _ = _tiny(dtype="bfloat16", remat=True)
    out32 = jax.jit(lambda v, x: model.apply(v, x))(variables, x)
    out16 = jax.jit(lambda v, x: bf16.apply(v, x))(variables, x)
    assert all(a.dtype == jnp.float32 for a in jax.tree.leaves(variables))
    assert all(a.dtype == jnp.float32 for a in out16.values())
    np.testing.assert_allclose(out16["logits"], out32["logits"], atol=0.25)


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match="model.backbone"):
        build_model(dict(backbone="b9", num_classes=3))
    with pytest.raises(ValueError, match="model.num_classes"):
        build_model(dict(backbone="b0", num_classes=0))
