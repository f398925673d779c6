"""Bilinear resize of NHWC maps with PyTorch `F.interpolate(mode='bilinear')` semantics.

`jax.image.resize` uses half-pixel centres (= align_corners=False) but antialiases when it shrinks,
and has no align_corners=True mode; the network needs both exactly as PyTorch computes them.
Each axis is resized by a small constant interpolation matrix ([out, in], two non-zeros per row,
the weights PyTorch uses): a matmul is exact at HIGHEST precision, its gradient is a matmul too
(deterministic, unlike the scatter-add behind a gather's gradient), and it maps onto tensor cores.
"""

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax


def interpolation_matrix(in_size: int, out_size: int, align_corners: bool) -> np.ndarray:
    """[out_size, in_size] float32 matrix M with resized = M @ x along one axis (torch's weights)."""
    dst = np.arange(out_size, dtype=np.float64)
    if align_corners:
        scale = (in_size - 1) / (out_size - 1) if out_size > 1 else 0.0
        src = dst * scale
    else:
        # PyTorch with an output size (no scale_factor): scale = in/out, half-pixel centres, clamp at 0.
        src = np.maximum((dst + 0.5) * (in_size / out_size) - 0.5, 0.0)
    lo = np.minimum(np.floor(src).astype(np.int64), in_size - 1)
    hi = np.minimum(lo + 1, in_size - 1)
    w_hi = src - lo
    m = np.zeros((out_size, in_size), np.float64)
    rows = np.arange(out_size)
    np.add.at(m, (rows, lo), 1.0 - w_hi)
    np.add.at(m, (rows, hi), w_hi)
    return m.astype(np.float32)


@jax.custom_vjp
def apply_along_axis1(m: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """`m` [O, I] applied along axis 1 of `x` [N, I, X]: [N, O, X], as a batched matmul.

    Why not `jnp.einsum("oi,nix->nox", m, x)`: that is a dot_general without batch dimensions, whose
    result has m's row axis first, and XLA:CPU transposes around it. With `m` broadcast to a batch
    axis every operand and the result stay row-major. It pays for wide rows (X = W x 256 channels in
    the decoder: its resizes 13-17 -> 10 ms per forward, 2 images, 2-core EPYC); for narrow ones (14
    logit channels at full size) the einsum is 5-7x faster, so `resize_bilinear` keeps it.

    Both passes contract the broadcast matrix on its axis 1 (the forward takes m^T): XLA:CPU hands
    that form to its own batched matmul, while the other (contracting m's last axis) goes to
    YNNPACK, 1.6-2.6x slower for the decoder's W resize ([128, 64, 56] x [128, 56, C], Intel Xeon:
    forward 5.3 -> 3.3 ms at C = 256, 19.5 -> 7.5 ms at C = 768). Hence the custom VJP.
    """
    return _contract_axis1(m.T, x)


def _contract_axis1(a: jnp.ndarray, x: jnp.ndarray) -> jnp.ndarray:
    """a [I, O] broadcast over x's batch axis: [N, I, O] x [N, I, X] -> [N, O, X] (contracting I)."""
    batched = jnp.broadcast_to(a, (x.shape[0],) + a.shape)
    return lax.dot_general(batched, x, (((1,), (1,)), ((0,), (0,))), precision=lax.Precision.HIGHEST)


def _apply_along_axis1_fwd(m, x):
    return _contract_axis1(m.T, x), (m, x)


def _apply_along_axis1_bwd(residuals, cotangent):
    m, x = residuals
    # m's cotangent for completeness: the model's matrices are constants, and XLA drops it unused.
    m_cotangent = jnp.einsum("nox,nix->oi", cotangent, x, precision=lax.Precision.HIGHEST)
    return m_cotangent, _contract_axis1(m, cotangent)


apply_along_axis1.defvjp(_apply_along_axis1_fwd, _apply_along_axis1_bwd)


def resize_bilinear(x: jnp.ndarray, size: tuple[int, int], *, align_corners: bool) -> jnp.ndarray:
    """Resizes `x` [B,H,W,C] to [B,size[0],size[1],C], bilinear, as torch `F.interpolate` does.

    align_corners=False: half-pixel centres, no antialiasing (also when shrinking), like torch.
    align_corners=True: corner pixels of input and output coincide.
    """
    out_h, out_w = int(size[0]), int(size[1])
    _, h, w, _ = x.shape
    hp = lax.Precision.HIGHEST  # no TF32 / bf16 passes: the weights must stay exact
    if h != out_h:
        m = jnp.asarray(interpolation_matrix(h, out_h, align_corners), x.dtype)
        x = jnp.einsum("oh,bhwc->bowc", m, x, precision=hp)
    if w != out_w:
        m = jnp.asarray(interpolation_matrix(w, out_w, align_corners), x.dtype)
        x = jnp.einsum("ow,bhwc->bhoc", m, x, precision=hp)
    return x
