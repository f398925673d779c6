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
