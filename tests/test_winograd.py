"""Winograd F(4x4, 3x3): the same convolution as PyTorch's conv2d, values and gradients; where it is used."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mofgseg_jax.models.conv import Conv
from mofgseg_jax.models.winograd import winograd_conv3x3


def _torch_conv_and_grads(x, kernel, cotangent):
    """PyTorch's conv2d (padding 1) of NHWC x with an HWIO kernel, and the vjp of `cotangent`."""
    torch = pytest.importorskip("torch")
    xt = torch.tensor(np.asarray(x, np.float64).transpose(0, 3, 1, 2), requires_grad=True)
    wt = torch.tensor(np.asarray(kernel, np.float64).transpose(3, 2, 0, 1), requires_grad=True)
    out = torch.nn.functional.conv2d(xt, wt, padding=1)
    out.backward(torch.tensor(np.asarray(cotangent, np.float64).transpose(0, 3, 1, 2)))
    return (out.detach().numpy().transpose(0, 2, 3, 1), xt.grad.numpy().transpose(0, 2, 3, 1),
            wt.grad.numpy().transpose(2, 3, 1, 0))


@pytest.mark.parametrize("batch, height, width, cin, cout", [
    (2, 16, 16, 8, 4),   # whole tiles
    (1, 13, 7, 5, 3),    # partial last tiles in both directions
    (2, 1, 2, 3, 6),     # smaller than one tile
    (1, 6, 10, 32, 16),  # wider channel contraction
])
def test_matches_torch_conv2d_values_and_gradients(batch, height, width, cin, cout):
    rs = np.random.RandomState(height * width)
    x = jnp.asarray(rs.randn(batch, height, width, cin), jnp.float32)
    kernel = jnp.asarray(rs.randn(3, 3, cin, cout) / np.sqrt(9 * cin), jnp.float32)
    cotangent = jnp.asarray(rs.randn(batch, height, width, cout), jnp.float32)
    out, vjp = jax.vjp(lambda x, k: winograd_conv3x3(x, k, precision=jax.lax.Precision.HIGHEST), x, kernel)
    want_out, want_dx, want_dk = _torch_conv_and_grads(x, kernel, cotangent)
    assert out.shape == want_out.shape
    for got, want in zip((out, *vjp(cotangent)), (want_out, want_dx, want_dk)):
        # F(4, 3)'s float32 error is ~1e-5 of the values' scale (the transforms multiply by up to 8).
        np.testing.assert_allclose(got, want, rtol=0, atol=3e-5 * np.abs(want).max())


def test_rejects_a_kernel_that_is_not_3x3_over_the_input_channels():
    with pytest.raises(ValueError, match=r"kernel \(3, 3, 4, 2\) is not \[3, 3, 5, Cout\]"):
        winograd_conv3x3(jnp.ones((1, 4, 4, 5)), jnp.ones((3, 3, 4, 2)))


def _lowered(conv, x):
    params = conv.init(jax.random.key(0), x)
    return params, jax.jit(conv.apply).lower(params, x).as_text()


def test_conv_uses_winograd_for_float32_3x3_on_cpu_and_xla_otherwise():
    assert jax.default_backend() == "cpu"
    x = jnp.asarray(np.random.RandomState(0).randn(2, 9, 8, 6), jnp.float32)
    ours, plain = Conv(4, (3, 3), padding=((1, 1), (1, 1))), nn.Conv(4, (3, 3), padding=((1, 1), (1, 1)))
    params, hlo = _lowered(ours, x)
    assert "convolution" not in hlo  # the Winograd route: matmuls and reshapes only
    assert jax.tree.map(jnp.shape, params) == jax.tree.map(jnp.shape, plain.init(jax.random.key(0), x))
    np.testing.assert_allclose(ours.apply(params, x), plain.apply(params, x), rtol=0, atol=1e-5 * 10)
    # bfloat16 compute and strided 3x3 windows keep XLA's convolution.
    assert "convolution" in _lowered(Conv(4, (3, 3), padding=((1, 1), (1, 1)), dtype=jnp.bfloat16), x)[1]
    assert "convolution" in _lowered(Conv(4, (3, 3), strides=(2, 2), padding=((1, 1), (1, 1))), x)[1]
