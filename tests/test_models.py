"""The MOFGSeg network's contract: output shapes and dtypes, train/eval behaviour, options.

Numerical parity with Hugging Face SegFormer is in test_weights.py; resize semantics in
test_resize.py. Variables here come from `jax.eval_shape` filled with NumPy noise (a compiled
`init` of the whole network is slow on a shared CPU); one test covers the real `init`.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.models import build_model

# A tiny network (the preset's heads 1,2,5,8 need dims divisible by them).
TINY = dict(backbone="b0", num_classes=5, depths=(1, 1, 1, 1), dims=(16, 32, 80, 128), embed_dim=32, rep_dim=24)
B, H, W = 2, 37, 53  # not multiples of 32


def _noise_variables(model, shape, seed=0):
    shapes = jax.eval_shape(lambda x: model.init({"params": jax.random.key(0)}, x), jnp.zeros(shape))
    rng = np.random.RandomState(seed)

    def fill(path, s):
        name = path[-1].key
        base = 1.0 if name in ("var", "scale") else 0.0
        scale = 0.0 if name == "var" else 0.1
        return jnp.asarray(base + scale * rng.randn(*s.shape), s.dtype)

    return jax.tree_util.tree_map_with_path(fill, shapes)


@functools.lru_cache(maxsize=None)
def _tiny(**overrides):
    model = build_model(dict(TINY, **overrides))
    x = jnp.asarray(np.random.RandomState(0).randn(B, H, W, 3), jnp.float32)
    return model, _noise_variables(model, x.shape), x


@functools.lru_cache(maxsize=None)
def _eval_out(**overrides):
    model, variables, x = _tiny(**overrides)
    return jax.jit(lambda v, x: model.apply(v, x, train=False))(variables, x)


def test_outputs_have_input_resolution_for_any_size():
    out = _eval_out()
    assert out["logits"].shape == (B, H, W, 5)
    assert out["rep"].shape == (B, H, W, 24)
    assert out["edge"].shape == (B, H, W, 1)
    assert all(v.dtype == jnp.float32 for v in out.values())
    assert float(out["edge"].min()) >= 0.0 and float(out["edge"].max()) <= 1.0  # a probability


def test_top_level_collections_split_backbone_from_decoder():
    _, variables, _ = _tiny()
    assert set(variables) == {"params", "batch_stats"}
    assert set(variables["params"]) == {"backbone", "decode_head", "boundary"}
    assert set(variables["batch_stats"]) == {"decode_head", "boundary"}


def test_rep_at_stride4_keeps_representation_at_quarter_resolution():
    out = _eval_out(rep_at_stride4=True)
    assert out["rep"].shape == (B, 10, 14, 24)  # ceil(37/4), ceil(53/4), as torch's strided conv gives
    assert out["logits"].shape == (B, H, W, 5)
    np.testing.assert_allclose(out["logits"], _eval_out()["logits"], atol=1e-6)


def test_train_mode_updates_batch_stats_and_draws_dropout_from_the_rng():
    model, variables, x = _tiny()

    @jax.jit
    def train_apply(v, x, key):
        return model.apply(v, x, train=True, rngs={"dropout": key}, mutable=["batch_stats"])

    out_a, mutated = train_apply(variables, x, jax.random.key(1))
    out_b, _ = train_apply(variables, x, jax.random.key(2))
    changed = jax.tree.map(lambda a, b: bool(jnp.any(a != b)), mutated["batch_stats"], variables["batch_stats"])
    assert all(jax.tree.leaves(changed))
    assert float(jnp.max(jnp.abs(out_a["logits"] - out_b["logits"]))) > 1e-3  # dropout / drop path differ



def test_edge_images_limits_the_boundary_module_to_the_leading_images():
    model, variables, x = _tiny()
    full = _eval_out()
    first = jax.jit(lambda v, x: model.apply(v, x, train=False, edge_images=1))(variables, x)
    assert first["edge"].shape == (1, H, W, 1)
    # Round-off only: the batch size changes the blocking of the (Winograd, on CPU) conv's matmuls.
    np.testing.assert_allclose(first["edge"], full["edge"][:1], atol=5e-6)
    np.testing.assert_array_equal(first["logits"], full["logits"])
    none = jax.jit(lambda v, x: model.apply(v, x, train=False, edge_images=0))(variables, x)
    assert "edge" not in none
    # In training, the boundary BatchNorm statistics come from those images only; the whole
    # batch_stats tree is still returned, so the train state keeps its structure.
    _, mutated = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                             mutable=["batch_stats"], edge_images=0)
    assert jax.tree.structure(mutated["batch_stats"]) == jax.tree.structure(variables["batch_stats"])
    unchanged = jax.tree.map(lambda a, b: bool(jnp.all(a == b)), mutated["batch_stats"]["boundary"],
                             variables["batch_stats"]["boundary"])
    assert all(jax.tree.leaves(unchanged))


def test_groups_give_what_separate_calls_in_order_give():
    """One call on (labelled, unlabelled) groups = two calls chained through batch_stats: each group
    normalised by its own BatchNorm statistics, running statistics updated group after group, the
    edge for the first group only. Checked in training with dropout and drop path off."""
    model, variables, x = _tiny(drop_path_rate=0.0, dropout_rate=0.0)
    y = jnp.flip(x, axis=2) * 0.5 + 0.3  # a second group with other statistics
    kw = dict(train=True, mutable=["batch_stats"], rep_as_features=True)

    @jax.jit
    def separate(v, x, y):
        out_x, stats = model.apply(v, x, edge_images=1, **kw)
        out_y, stats = model.apply({"params": v["params"], **stats}, y, edge_images=0, **kw)
        return (out_x, out_y), stats

    grouped = jax.jit(lambda v, x, y: model.apply(v, (x, y), edge_images=1, **kw))
    (want_x, want_y), want_stats = separate(variables, x, y)
    (got_x, got_y), got_stats = grouped(variables, x, y)
    assert set(got_x) == {"logits", "rep_features", "edge"} and set(got_y) == {"logits", "rep_features"}
    for got, want in ((got_x, want_x), (got_y, want_y)):
        for name in want:  # round-off only: the backbone's matmuls see 2x the rows
            np.testing.assert_allclose(got[name], want[name], atol=2e-5, rtol=1e-5)
    assert float(jnp.max(jnp.abs(got_x["logits"] - got_y["logits"]))) > 1e-2  # the groups differ
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5, rtol=1e-5), got_stats, want_stats)
    # The chain matters: statistics after one group alone differ from after both.
    _, first_only = model.apply(variables, x, edge_images=1, **kw)
    diff = jax.tree.map(lambda a, b: float(jnp.max(jnp.abs(a - b))), first_only["batch_stats"]["decode_head"],
                        got_stats["batch_stats"]["decode_head"])
    assert max(jax.tree.leaves(diff)) > 1e-3
    # Evaluation (running statistics): each group's outputs are the single call's.
    eval_groups = jax.jit(lambda v, x, y: model.apply(v, [x, y], train=False))(variables, x, y)
    single = jax.jit(lambda v, y: model.apply(v, y, train=False))(variables, y)
    np.testing.assert_allclose(eval_groups[1]["logits"], single["logits"], atol=2e-5, rtol=1e-5)
    assert "edge" in eval_groups[0] and "edge" not in eval_groups[1]


def test_bfloat16_compute_with_remat_keeps_float32_params_and_outputs():
    _, variables, x = _tiny()
    bf16 = build_model(dict(TINY, dtype="bfloat16", remat=True))
    shapes = jax.eval_shape(lambda x: bf16.init({"params": jax.random.key(0)}, x), x)
    assert all(s.dtype == jnp.float32 for s in jax.tree.leaves(shapes))
    out16 = jax.jit(lambda v, x: bf16.apply(v, x))(variables, x)
    assert all(v.dtype == jnp.float32 for v in out16.values())
    ref = _eval_out()["logits"]
    err = float(jnp.max(jnp.abs(out16["logits"] - ref)))
    assert err < 0.05 * float(jnp.max(jnp.abs(ref))) + 0.05, err


def test_batchnorm_statistics_sync_over_the_named_axis():
    model = build_model(TINY, bn_axis_name="data")
    _, variables, x = _tiny()
    xs = x[:, None].repeat(1, axis=1)  # [devices=2, per-device batch 1, H, W, 3], different images

    def body(x):
        _, mutated = model.apply(variables, x, train=True, rngs={"dropout": jax.random.key(0)},
                                 mutable=["batch_stats"])
        return mutated["batch_stats"]

    stats = jax.pmap(body, axis_name="data")(xs)
    for leaf in jax.tree.leaves(stats):
        np.testing.assert_allclose(leaf[0], leaf[1], rtol=1e-5, atol=1e-6)  # same on both devices


def test_init_gives_torch_like_initial_weights():
    model = build_model(TINY)
    x = jnp.zeros((1, 32, 32, 3))
    # 'rbg' keys: XLA on CPU compiles ~100 threefry initialisers 3x slower than rbg ones.
    keys = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}
    variables = jax.jit(lambda keys, x: model.init(keys, x))(keys, x)
    assert all(bool(jnp.all(jnp.isfinite(v))) for v in jax.tree.leaves(variables))
    block = variables["params"]["backbone"]["block2_0"]
    dw = block["mlp"]["dwconv"]["dwconv"]["kernel"]  # torch: normal(0, sqrt(2 / (3*3*1)))
    assert abs(float(jnp.std(dw)) - (2 / 9) ** 0.5) < 0.05
    # timm's trunc_normal_(std=.02) cuts at +-2 in absolute units (100 std): std 0.02, not the
    # 0.0176 of a normal cut at +-2 std. 4096 draws: the estimate's error is ~0.0002.
    assert abs(float(jnp.std(block["attn"]["q"]["kernel"])) - 0.02) < 0.001
    assert float(jnp.abs(block["attn"]["q"]["bias"]).max()) == 0.0
    # Decoder: mmcv ConvModule, kaiming normal with fan_out. Boundary module: plain nn.Conv2d,
    # torch's default uniform(+-1/sqrt(fan_in)).
    fuse = np.asarray(variables["params"]["decode_head"]["linear_fuse"]["conv"]["kernel"])
    assert abs(fuse.std() / (2 / (np.prod(fuse.shape[:2]) * fuse.shape[3])) ** 0.5 - 1) < 0.05
    boundary = variables["params"]["boundary"]
    for name in ("reduce1", "reduce4", "block1", "block2"):
        kernel = np.asarray(boundary[name]["conv"]["kernel"])
        bound = np.prod(kernel.shape[:3]) ** -0.5
        assert np.abs(kernel).max() <= bound and abs(kernel.std() / (bound / 3 ** 0.5) - 1) < 0.05, name


def test_builds_from_the_project_config_with_preset_defaults():
    from configs.common import apply_variant, base_config

    config = base_config()
    config.model.num_classes = 4
    config.model.backbone = "b2"
    model = build_model(config.model)
    assert model.embed_dim == 768 and model.rep_dim == 512  # b2+ decoder width
    assert tuple(model.backbone.depths) == (3, 4, 6, 3) and model.backbone.block_ln_eps == 1e-6
    smoke = apply_variant(base_config(), "smoke")
    smoke.model.num_classes = 4
    model = build_model(smoke.model)
    shapes = jax.eval_shape(lambda x: model.apply(_noise_variables(model, x.shape), x), jnp.zeros((1, 64, 64, 3)))
    assert shapes["logits"].shape == (1, 64, 64, 4)


def test_bad_config_is_one_clear_error():
    with pytest.raises(ValueError, match=r"^model.backbone='b9': unknown MiT preset; choose from b0, b1, b2, b3, b4, b5$"):
        build_model(dict(backbone="b9", num_classes=3))
    with pytest.raises(ValueError, match="model.num_classes"):
        build_model(dict(backbone="b0", num_classes=0))
    with pytest.raises(ValueError, match=r"^model.num_heads=\(1, 2, 5, 8\): stage 3's width 64 \(model.dims=\(16, 32, 64, "
                                         r"128\)\) is not divisible by its 5 heads$"):
        build_model(dict(TINY, dims=(16, 32, 64, 128)))
    with pytest.raises(ValueError, match=r"^model.sr_ratios=\(8, 4, 2\): expected \(\) for the preset's values or 4 "):
        build_model(dict(TINY, sr_ratios=(8, 4, 2)))


def test_num_heads_splits_the_same_parameters_into_that_many_heads_per_stage():
    model, variables, x = _tiny()
    other = build_model(dict(TINY, num_heads=(2, 4, 8, 8)))
    assert tuple(other.backbone.num_heads) == (2, 4, 8, 8) and tuple(model.backbone.num_heads) == (1, 2, 5, 8)
    # Heads leave the parameter shapes as they are, not what the network computes.
    assert jax.tree.map(jnp.shape, _noise_variables(other, x.shape)) == jax.tree.map(jnp.shape, variables)
    ours, theirs = model.apply(variables, x)["logits"], other.apply(variables, x)["logits"]
    assert float(jnp.max(jnp.abs(ours - theirs))) > 1e-3


def test_sr_ratios_and_mlp_ratio_set_the_key_value_reduction_and_the_ffn_width():
    _, variables, _ = _tiny(sr_ratios=(2, 2, 1, 1), mlp_ratio=2.0)
    backbone = variables["params"]["backbone"]
    assert backbone["block1_0"]["attn"]["sr"]["kernel"].shape == (2, 2, 16, 16)  # kernel = stride = 2
    assert backbone["block2_0"]["attn"]["sr"]["kernel"].shape == (2, 2, 32, 32)
    assert "sr" not in backbone["block3_0"]["attn"] and "norm" not in backbone["block3_0"]["attn"]  # ratio 1
    assert backbone["block1_0"]["mlp"]["fc1"]["kernel"].shape == (16, 32)  # 16 * 2.0
    assert backbone["block4_0"]["mlp"]["fc2"]["kernel"].shape == (256, 128)
    published = _tiny()[1]["params"]["backbone"]  # the preset's (8, 4, 2, 1) and 4
    assert published["block1_0"]["attn"]["sr"]["kernel"].shape == (8, 8, 16, 16)
    assert published["block1_0"]["mlp"]["fc1"]["kernel"].shape == (16, 64)


def test_eam_mid_dim_sets_the_boundary_convs_width():
    model, variables, x = _tiny(eam_mid_dim=16)
    boundary = variables["params"]["boundary"]
    assert boundary["block1"]["conv"]["kernel"].shape == (3, 3, 256 + 64, 16)  # concat(c4-, c1-branch)
    assert boundary["block2"]["conv"]["kernel"].shape == (3, 3, 16, 16)
    assert boundary["edge"]["kernel"].shape == (1, 1, 16, 1)
    assert model.apply(variables, x)["edge"].shape == (B, H, W, 1)
    published = _tiny()[1]["params"]["boundary"]["block2"]["conv"]["kernel"]
    assert published.shape == (3, 3, 256, 256)  # the default stays the published width
    with pytest.raises(ValueError, match=r"^model.eam_mid_dim=0: expected an integer > 0$"):
        build_model(dict(TINY, eam_mid_dim=0))


def test_eam_low_and_high_dims_set_the_boundary_modules_reductions_of_c1_and_c4():
    model, variables, x = _tiny(eam_low_dim=8, eam_high_dim=24)
    boundary = variables["params"]["boundary"]
    assert boundary["reduce1"]["conv"]["kernel"].shape == (1, 1, 16, 8)  # c1 has 16 channels here
    assert boundary["reduce4"]["conv"]["kernel"].shape == (1, 1, 128, 24)  # c4 has 128
    assert boundary["block1"]["conv"]["kernel"].shape == (3, 3, 24 + 8, 256)  # concat(c4-, c1-branch)
    assert model.apply(variables, x)["edge"].shape == (B, H, W, 1)
    published = _tiny()[1]["params"]["boundary"]
    assert (published["reduce1"]["conv"]["kernel"].shape[-1], published["reduce4"]["conv"]["kernel"].shape[-1]) == (64, 256)
    with pytest.raises(ValueError, match=r"^model.eam_low_dim=-1: expected an integer > 0$"):
        build_model(dict(TINY, eam_low_dim=-1))


def test_conv3x3_picks_how_the_boundary_convs_are_computed_not_what_they_compute():
    model, variables, x = _tiny()  # 'auto': Winograd here (float32 on CPU)
    xla_model = _tiny(conv3x3="xla")[0]

    def edge_hlo(m):
        return jax.jit(lambda v, x: m.apply(v, x)["edge"]).lower(variables, x).as_text()

    # The boundary module's two 3x3 convs are XLA convolutions only with 'xla'.
    assert edge_hlo(xla_model).count("stablehlo.convolution") == edge_hlo(model).count("stablehlo.convolution") + 2
    ours, theirs = model.apply(variables, x), xla_model.apply(variables, x)
    np.testing.assert_array_equal(ours["logits"], theirs["logits"])
    np.testing.assert_allclose(ours["edge"], theirs["edge"], atol=1e-5)
    with pytest.raises(ValueError, match=r"model.conv3x3='fft': choose from auto, winograd, xla"):
        build_model(dict(TINY, conv3x3="fft"))


def test_depthwise_conv_value_and_gradients_match_a_grouped_convolution():
    from mofgseg_jax.models.mit import depthwise3x3

    rs = np.random.RandomState(3)
    x = jnp.asarray(rs.randn(2, 9, 13, 6), jnp.float32)
    kernel = jnp.asarray(rs.randn(3, 3, 6), jnp.float32)

    def grouped(x, k):  # XLA's own grouped convolution: an independent path
        return jax.lax.conv_general_dilated(x, k[:, :, None, :], (1, 1), ((1, 1), (1, 1)),
                                            dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6)

    def loss(conv):
        return lambda x, k: jnp.sum(jnp.sin(conv(x, k)) * jnp.arange(6.0))

    np.testing.assert_allclose(depthwise3x3(x, kernel), grouped(x, kernel), atol=1e-5)
    ours = jax.grad(loss(depthwise3x3), (0, 1))(x, kernel)
    reference = jax.grad(loss(grouped), (0, 1))(x, kernel)
    for a, b in zip(ours, reference):
        np.testing.assert_allclose(a, b, atol=1e-4, rtol=1e-5)


def test_erf_gelu_matches_torch_gelu_and_its_gradient():
    torch = pytest.importorskip("torch")
    from mofgseg_jax.models.mit import erf_gelu

    x = np.concatenate([np.linspace(-12, 12, 2001), np.random.RandomState(4).randn(1000) * 3]).astype(np.float32)
    xt = torch.tensor(x, requires_grad=True)
    torch.nn.functional.gelu(xt).sum().backward()  # torch's default: the exact (erf) GELU
    np.testing.assert_allclose(erf_gelu(jnp.asarray(x)), torch.nn.functional.gelu(xt).detach().numpy(),
                               atol=1e-6, rtol=1e-6)
    np.testing.assert_allclose(jax.grad(lambda v: jnp.sum(erf_gelu(v)))(jnp.asarray(x)), xt.grad.numpy(),
                               atol=1e-6, rtol=1e-5)


@pytest.mark.parametrize("stride4", [False, True])
def test_rep_as_features_maps_to_the_representation_through_the_head(stride4):
    from mofgseg_jax.models.mofgseg import representation_head

    model, variables, x = _tiny(rep_at_stride4=stride4)
    rngs = {"dropout": jax.random.key(1)}  # train mode: the same dropout draw in both calls
    run = jax.jit(lambda v, x, as_features: model.apply(v, x, train=True, rngs=rngs, mutable=["batch_stats"],
                                                        rep_as_features=as_features)[0],
                  static_argnums=2)
    formed, factored = run(variables, x, False), run(variables, x, True)
    assert "rep" not in factored and factored["rep_features"].shape[-1] == 32
    kernel, bias = representation_head(variables["params"])
    assert kernel.shape == (32, 24) and bias.shape == (24,)
    np.testing.assert_allclose(factored["rep_features"] @ kernel + bias, formed["rep"], atol=2e-5, rtol=1e-5)
    np.testing.assert_allclose(factored["logits"], formed["logits"], atol=0)


def test_decoder_dropout_drops_whole_channels_as_torch_dropout2d():
    """Dropout2d: each (image, channel) of the fused features is zeroed everywhere or kept and scaled by
    1 / (1 - p), never per pixel. Compared with the same network without dropout (drop path off)."""
    p = 0.5
    model, variables, x = _tiny(rep_at_stride4=True, drop_path_rate=0.0, dropout_rate=p)
    plain = _tiny(rep_at_stride4=True, drop_path_rate=0.0, dropout_rate=0.0)[0]

    def features(m):
        out, _ = m.apply(variables, x, train=True, rngs={"dropout": jax.random.key(3)}, mutable=["batch_stats"],
                         rep_as_features=True, edge_images=0)
        return np.asarray(out["rep_features"])  # the head's input: the dropout's output, at stride 4

    dropped, ref = features(model), features(plain)
    kinds = []
    for b in range(ref.shape[0]):
        for c in range(ref.shape[-1]):
            if not np.any(ref[b, ..., c]):
                continue  # all zero after the ReLU: dropped and kept look alike
            if np.all(dropped[b, ..., c] == 0):
                kinds.append("dropped")
            else:
                np.testing.assert_allclose(dropped[b, ..., c], ref[b, ..., c] / (1 - p), rtol=1e-5, atol=1e-6)
                kinds.append("kept")
    assert {"dropped", "kept"} <= set(kinds), kinds


def test_bn_momentum_and_eps_from_the_config_drive_every_batchnorm():
    """Each BatchNorm of the decoder and the boundary module, checked against the formulas in NumPy:
    eval y = (x - mean) / sqrt(var + eps) * scale + bias; train running mean = m * old + (1 - m) *
    batch mean (flax's momentum convention, PyTorch's 1 - momentum). Settings away from the defaults."""
    import flax.linen as nn

    m, eps = 0.6, 0.3
    model = build_model(dict(TINY, bn_momentum=m, bn_eps=eps, drop_path_rate=0.0, dropout_rate=0.0))
    _, variables, x = _tiny()

    def run(train):
        calls = {}

        def record(next_fun, args, kwargs, context):
            out = next_fun(*args, **kwargs)
            if isinstance(context.module, nn.BatchNorm) and context.method_name == "__call__":
                calls[context.module.path] = (np.asarray(args[0]), np.asarray(out))
            return out

        with nn.intercept_methods(record):
            result = model.apply(variables, x, train=train, mutable=["batch_stats"] if train else False)
        return calls, result

    def leaf(tree, path):
        for part in path:
            tree = tree[part]
        return np.asarray(tree)

    calls, _ = run(train=False)
    assert {p[0] for p in calls} == {"decode_head", "boundary"} and len(calls) == 5  # linear_fuse + EAM's 4
    for path, (inp, out) in calls.items():
        stats, params = variables["batch_stats"], variables["params"]
        want = ((inp - leaf(stats, path + ("mean",))) / np.sqrt(leaf(stats, path + ("var",)) + eps)
                * leaf(params, path + ("scale",)) + leaf(params, path + ("bias",)))
        np.testing.assert_allclose(out, want, rtol=1e-4, atol=1e-5, err_msg=str(path))
    calls, (_, mutated) = run(train=True)
    for path, (inp, _) in calls.items():
        want = m * leaf(variables["batch_stats"], path + ("mean",)) + (1 - m) * inp.mean(axis=(0, 1, 2))
        np.testing.assert_allclose(leaf(mutated["batch_stats"], path + ("mean",)), want, rtol=1e-4, atol=1e-5,
                                   err_msg=str(path))
