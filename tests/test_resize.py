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


def test_apply_along_axis1_values_and_gradients_match_torch_autograd():
    import jax

    from mofgseg_jax.models.resize import apply_along_axis1, interpolation_matrix

    rs = np.random.RandomState(1)
    m = interpolation_matrix(5, 12, align_corners=False) + rs.randn(12, 5).astype(np.float32)  # any matrix
    x = rs.randn(3, 5, 7).astype(np.float32)
    cotangent = rs.randn(3, 12, 7).astype(np.float32)
    m_t = torch.tensor(m, requires_grad=True)
    x_t = torch.tensor(x, requires_grad=True)
    ref = torch.einsum("oi,nix->nox", m_t, x_t)
    ref.backward(torch.from_numpy(cotangent))

    ours, vjp = jax.vjp(apply_along_axis1, jnp.asarray(m), jnp.asarray(x))
    m_grad, x_grad = vjp(jnp.asarray(cotangent))
    np.testing.assert_allclose(np.asarray(ours), ref.detach().numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(x_grad), x_t.grad.numpy(), atol=1e-5, rtol=0)
    np.testing.assert_allclose(np.asarray(m_grad), m_t.grad.numpy(), atol=1e-4, rtol=0)
