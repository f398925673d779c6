"""Bilinear resize of NHWC maps with PyTorch `F.interpolate(mode='bilinear')` semantics.

`jax.image.resize` uses half-pixel centres (= align_corners=False) but antialiases when it shrinks,
and has no align_corners=True mode; the network needs both exactly as PyTorch computes them.
Each axis is resized by a small constant interpolation matrix ([out, in], two non-zeros per row,
the weights PyTorch uses), applied by its non-zeros only (`apply_along_axis`): each output is two
gathered inputs times their weights, and the gradient is the transposed matrix applied the same way
(a few non-zeros per row, no scatter-add: deterministic). Why not a matmul with the dense matrix:
the products with its zeros made the step's resizes compute-bound and XLA:CPU transposed around
them; gathered from its non-zeros, a resize is one fused memory-bound loop (issue 8).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np


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


def _nonzeros_by_row(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """[O, I] -> (columns, weights), each [O, K]: row o's non-zeros, K the most of any row (the rest
    padded with weight 0 at column 0)."""
    count = max(int(np.max(np.count_nonzero(m, axis=1), initial=0)), 1)
    columns = np.zeros((m.shape[0], count), np.int32)
    weights = np.zeros((m.shape[0], count), np.float32)
    for row in range(m.shape[0]):
        nonzero = np.flatnonzero(m[row])
        columns[row, :nonzero.size], weights[row, :nonzero.size] = nonzero, m[row, nonzero]
    return columns, weights


def _gather_rows(x: jnp.ndarray, axis: int, columns: np.ndarray, weights: np.ndarray) -> jnp.ndarray:
    """sum_k weights[:, k] * x[columns[:, k]] along `axis`, in float32: XLA fuses the gathers (constant
    indices) and the multiply-adds into one loop."""
    shape = [1] * x.ndim
    shape[axis] = columns.shape[0]
    x32 = x.astype(jnp.float32)
    out = 0.0
    for k in range(columns.shape[1]):
        out = out + weights[:, k].reshape(shape) * jnp.take(x32, columns[:, k], axis=axis, mode="clip")
    return out.astype(x.dtype)


@functools.lru_cache(maxsize=None)
def _along_axis(matrix: bytes, shape: tuple[int, int], axis: int):
    """The custom-VJP function x -> m applied along `axis` of x, for the float32 matrix `m` (bytes,
    so that it can key the cache: one function per matrix and axis, traced once per shape)."""
    m = np.frombuffer(matrix, np.float32).reshape(shape)
    forward, backward = _nonzeros_by_row(m), _nonzeros_by_row(np.ascontiguousarray(m.T))

    @jax.custom_vjp
    def apply(x):
        return _gather_rows(x, axis, *forward)

    def apply_bwd(_, g):
        # The transpose of a linear map: m^T along the same axis, by its non-zeros as well.
        return (_gather_rows(g, axis, *backward),)

    apply.defvjp(lambda x: (apply(x), None), apply_bwd)
    return apply


def apply_along_axis(m: np.ndarray, x: jnp.ndarray, axis: int) -> jnp.ndarray:
    """`m` [O, I] (a NumPy constant, e.g. `interpolation_matrix`) applied along `axis` of `x` (size I
    there; O in the result), computed from m's non-zeros; float32 inside, `x.dtype` out."""
    m = np.ascontiguousarray(m, np.float32)
    if x.shape[axis] != m.shape[1]:
        raise ValueError(f"apply_along_axis: axis {axis} of {x.shape} is not the matrix's {m.shape[1]} columns")
    return _along_axis(m.tobytes(), m.shape, axis % x.ndim)(x)


def resize_bilinear(x: jnp.ndarray, size: tuple[int, int], *, align_corners: bool) -> jnp.ndarray:
    """Resizes `x` [B,H,W,C] to [B,size[0],size[1],C], bilinear, as torch `F.interpolate` does.

    align_corners=False: half-pixel centres, no antialiasing (also when shrinking), like torch.
    align_corners=True: corner pixels of input and output coincide.
    """
    for axis, out_size in ((1, int(size[0])), (2, int(size[1]))):
        if x.shape[axis] != out_size:
            x = apply_along_axis(interpolation_matrix(x.shape[axis], out_size, align_corners), x, axis)
    return x
