"""`resize_bilinear` equals torch.nn.functional.interpolate(mode='bilinear') for both align_corners."""

import jax.numpy as jnp
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from mofgseg_jax.models.resize import resize_bilinear  # noqa: E402


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw,out_hw", [((7, 9), (25, 33)), ((25, 33), (7, 9)), ((13, 5), (97, 131)),
                                          ((16, 16), (16, 48)), ((1, 4), (3, 1)), ((6, 6), (6, 6))])
def test_matches_torch_interpolate(in_hw, out_hw, align_corners):
    x = np.random.RandomState(0).randn(2, *in_hw, 3).astype(np.float32)
    ref = torch.nn.functional.interpolate(torch.from_numpy(x).permute(0, 3, 1, 2), size=out_hw, mode="bilinear",
                                          align_corners=align_corners).permute(0, 2, 3, 1).numpy()
    ours = np.asarray(resize_bilinear(jnp.asarray(x), out_hw, align_corners=align_corners))
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, atol=1e-5, rtol=0)


@pytest.mark.parametrize("align_corners", [False, True])
@pytest.mark.parametrize("in_hw,out_hw", [((7, 9), (25, 33)), ((25, 33), (7, 9)), ((17, 17), (129, 129))])
def test_gradient_matches_torch_autograd(in_hw, out_hw, align_corners):
    # The backward is written out (the transposed matrix by its non-zeros): check it against torch's.
    import jax

    rng = np.random.RandomState(1)
    x = rng.randn(2, *in_hw, 3).astype(np.float32)
    cotangent = rng.randn(2, *out_hw, 3).astype(np.float32)
    xt = torch.from_numpy(x).permute(0, 3, 1, 2).requires_grad_()
    out = torch.nn.functional.interpolate(xt, size=out_hw, mode="bilinear", align_corners=align_corners)
    out.backward(torch.from_numpy(cotangent).permute(0, 3, 1, 2))
    ref = xt.grad.permute(0, 2, 3, 1).numpy()
    _, vjp = jax.vjp(lambda v: resize_bilinear(v, out_hw, align_corners=align_corners), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(cotangent))[0]), ref, atol=2e-5, rtol=0)


def test_apply_along_axis_equals_the_dense_product_for_any_sparse_matrix():
    # Rows with 0..3 non-zeros (an all-zero row, a dense-ish one): values and gradient against NumPy.
    import jax

    from mofgseg_jax.models.resize import apply_along_axis

    m = np.zeros((6, 5), np.float32)
    m[0, [1, 4]] = [0.3, -2.0]
    m[2, 0] = 1.5
    m[3, [0, 2, 3]] = [0.1, 0.2, 0.7]
    m[5, 4] = -1.0
    x = np.random.RandomState(2).randn(2, 3, 5, 4).astype(np.float32)
    g = np.random.RandomState(3).randn(2, 3, 6, 4).astype(np.float32)
    out, vjp = jax.vjp(lambda v: apply_along_axis(m, v, axis=2), jnp.asarray(x))
    np.testing.assert_allclose(np.asarray(out), np.einsum("oi,bhic->bhoc", m, x), atol=1e-6)
    np.testing.assert_allclose(np.asarray(vjp(jnp.asarray(g))[0]), np.einsum("oi,bhoc->bhic", m, g), atol=1e-6)
    with pytest.raises(ValueError, match="axis 1"):
        apply_along_axis(m, jnp.asarray(x), axis=1)


def test_bfloat16_input_is_resized_in_float32_and_keeps_its_dtype():
    x = np.random.RandomState(4).randn(1, 5, 7, 2).astype(np.float32)
    xb = jnp.asarray(x, jnp.bfloat16)
    ours = resize_bilinear(xb, (5, 13), align_corners=False)  # one axis: one rounding to bfloat16
    assert ours.dtype == jnp.bfloat16
    exact = np.asarray(resize_bilinear(xb.astype(jnp.float32), (5, 13), align_corners=False))
    # Only the final rounding to bfloat16 differs from the float32 result of the same inputs.
    np.testing.assert_allclose(np.asarray(ours, np.float32), exact, rtol=2**-8, atol=0)
