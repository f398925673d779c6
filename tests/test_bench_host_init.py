"""Host-side initialisation (the fast path of `init_variables`) and the shift-and-add depthwise conv.

Both exist for speed (issue 8); these tests pin that they change nothing else: every leaf of
`host_init` has the distribution `model.init` draws from, and the depthwise conv equals the
grouped `lax` convolution (forward and gradients).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mofgseg_jax.models import build_model
from mofgseg_jax.models.host_init import host_init
from mofgseg_jax.models.mit import DepthwiseConv3x3
from mofgseg_jax.train.state import init_variables

# Wide enough layers for per-leaf statistics; one block per stage keeps model.init's compile short.
TINY = dict(backbone="b0", num_classes=5, depths=(1, 1, 1, 1), dims=(32, 64, 160, 256), embed_dim=64, rep_dim=32)


@pytest.fixture(scope="module")
def both():
    model = build_model(TINY)
    shape = (1, 32, 32, 3)
    keys = {"params": jax.random.key(0, impl="rbg"), "dropout": jax.random.key(1, impl="rbg")}
    reference = jax.jit(lambda k: model.init(k, jnp.zeros(shape), train=False))(keys)
    return model, host_init(model, shape, seed=0), jax.device_get(reference)


def test_host_init_has_the_same_tree_shapes_and_dtypes_as_model_init(both):
    _, host, reference = both
    assert jax.tree.structure(host) == jax.tree.structure(dict(reference))
    for a, b in zip(jax.tree.leaves(host), jax.tree.leaves(reference)):
        assert a.shape == b.shape and a.dtype == b.dtype


def test_host_init_draws_each_leaf_from_model_inits_distribution(both):
    _, host, reference = both
    flat_host = jax.tree_util.tree_flatten_with_path(host)[0]
    flat_ref = jax.tree.leaves(reference)
    for (path, a), b in zip(flat_host, flat_ref):
        name = jax.tree_util.keystr(path)
        a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
        if b.std() == 0:  # constants (biases, norms, running stats) match exactly
            np.testing.assert_array_equal(a, b, err_msg=name)
            continue
        assert abs(a.mean()) < 0.2 * b.std() + 1e-3, name
        tol = 0.25 if b.size < 200 else 0.1  # sampling error of the std of n draws
        assert abs(a.std() / b.std() - 1) < tol, (name, a.std(), b.std())
        # Same support: truncated and uniform leaves share their bound, normals their tail scale.
        assert abs(np.abs(a).max() / np.abs(b).max() - 1) < 0.35, (name, np.abs(a).max(), np.abs(b).max())


def test_init_variables_is_seeded_by_the_key_and_needs_no_value_under_tracing():
    model = build_model(TINY)
    a = init_variables(model, jax.random.key(0), (1, 32, 32, 3))
    b = init_variables(model, jax.random.key(0), (1, 32, 32, 3))
    c = init_variables(model, jax.random.key(1), (1, 32, 32, 3))
    leaf = lambda v: np.asarray(v["params"]["backbone"]["block1_0"]["attn"]["q"]["kernel"])  # noqa: E731
    np.testing.assert_array_equal(leaf(a), leaf(b))
    assert not np.array_equal(leaf(a), leaf(c))
    shapes = jax.eval_shape(lambda k: init_variables(model, k, (1, 32, 32, 3)), jax.random.key(0))
    assert jax.tree.structure(shapes) == jax.tree.structure(a)


def test_shift_and_add_depthwise_conv_equals_the_grouped_convolution():
    rs = np.random.RandomState(0)
    x = jnp.asarray(rs.randn(2, 7, 9, 6), jnp.float32)
    module = DepthwiseConv3x3()
    variables = {"params": {"kernel": jnp.asarray(rs.randn(3, 3, 1, 6), jnp.float32),
                            "bias": jnp.asarray(rs.randn(6), jnp.float32)}}

    def grouped(x, p):
        y = lax.conv_general_dilated(x, p["kernel"], (1, 1), ((1, 1), (1, 1)),
                                     dimension_numbers=("NHWC", "HWIO", "NHWC"), feature_group_count=6,
                                     precision=lax.Precision.HIGHEST)
        return y + p["bias"]

    def ours(x, p):
        return module.apply({"params": p}, x)

    np.testing.assert_allclose(ours(x, variables["params"]), grouped(x, variables["params"]), rtol=1e-5, atol=1e-5)
    loss = lambda f: lambda x, p: jnp.sum(jnp.sin(f(x, p)))  # noqa: E731
    g_ours = jax.grad(loss(ours), argnums=(0, 1))(x, variables["params"])
    g_ref = jax.grad(loss(grouped), argnums=(0, 1))(x, variables["params"])
    for a, b in zip(jax.tree.leaves(g_ours), jax.tree.leaves(g_ref)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-4)
