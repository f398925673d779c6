"""Non-overlapping convolutions as matmuls: same values and gradients as XLA's convolution."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import lax

from mofgseg_jax.models.conv import Conv, matmul_conv


def _reference(x, w, stride, padding):
    return lax.conv_general_dilated(x, w, stride, padding, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                    precision=lax.Precision.HIGHEST)


@pytest.mark.parametrize("kernel, stride, padding, size, tol", [
    (1, 1, "VALID", 9, 1e-5),        # decoder heads, boundary reductions: the matmul path
    (2, 2, "VALID", 9, 1e-5),        # MiT spatial reduction, odd size: VALID drops the last row/column
    (4, 4, ((0, 0), (0, 0)), 16, 1e-5),
    # Boundary module: Winograd on CPU, whose float32 error is ~1e-5 of the output's scale
    # (the tolerance is relative to the largest reference value here, ~10).
    (3, 1, ((1, 1), (1, 1)), 9, 1e-5 * 20),
    (3, 1, "SAME", 9, 1e-5 * 20),
    (3, 2, ((1, 1), (1, 1)), 9, 1e-5),  # overlapping windows: XLA's convolution
    (7, 4, ((3, 3), (3, 3)), 16, 1e-5),
])
def test_values_and_gradients_match_lax_convolution(kernel, stride, padding, size, tol):
    rs = np.random.RandomState(kernel)
    x = jnp.asarray(rs.randn(2, size, size + 1, 5), jnp.float32)
    w = jnp.asarray(rs.randn(kernel, kernel, 5, 3), jnp.float32)
    dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))

    def ours(x, w):
        return matmul_conv(x, w, (stride, stride), padding, dimension_numbers=dn,
                                 precision=lax.Precision.HIGHEST)

    np.testing.assert_allclose(ours(x, w), _reference(x, w, (stride, stride), padding), rtol=1e-5, atol=tol)
    cot = jnp.asarray(rs.randn(*ours(x, w).shape), jnp.float32)
    got = jax.vjp(ours, x, w)[1](cot)
    want = jax.vjp(lambda x, w: _reference(x, w, (stride, stride), padding), x, w)[1](cot)
    for g, r in zip(got, want):
        np.testing.assert_allclose(g, r, rtol=1e-4, atol=10 * tol)


def test_a_1x1_conv_lowers_to_a_dot_with_nn_conv_parameters():
    x = jnp.ones((1, 4, 4, 6))
    conv, plain = Conv(8, (1, 1)), __import__("flax.linen", fromlist=["Conv"]).Conv(8, (1, 1))
    params = conv.init(jax.random.key(0), x)
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain.init(jax.random.key(0), x))
    hlo = jax.jit(conv.apply).lower(params, x).as_text()
    assert "dot_general" in hlo and "convolution" not in hlo
    np.testing.assert_allclose(conv.apply(params, x), plain.apply(params, x), rtol=1e-6)
