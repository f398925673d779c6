"""3x3 stride-1 convolution by Winograd's minimal filtering F(4x4, 3x3) (Lavin & Gray, 2016).

Each 4x4 block of outputs is `A^T [(G g G^T) * (B^T d B)] A` for the 6x6 input tile `d` around it and
the 3x3 filter `g`: the channel contraction becomes 36 matmuls of [tiles, Cin] x [Cin, Cout], 4x fewer
multiply-adds than the direct convolution (36 per 16 outputs instead of 144), forward and backward
(autodiff transposes the linear transforms; the weight gradient is the same 36 matmuls transposed).
Why: on a CPU the boundary module's 3x3 convolutions are compute-bound at the machine's matmul
rate (issue 8); GPU libraries choose Winograd variants themselves, so `models/conv.py` uses this on
CPU only. The transforms are single matmuls with the 36x36 / 36x9 / 16x36 Kronecker products of
the 1-D transforms (memory-bound, one pass each); the tiles are 36/16 = 2.25x the input.

Accuracy: F(4x4, 3x3) in float32 differs from the direct convolution by ~1e-5 relative to the
output's scale, values and gradients (tested against PyTorch's conv2d); GPU libraries ship Winograd
variants of their own.
"""

import jax.numpy as jnp
import numpy as np
from jax import lax

# The standard F(4, 3) matrices (interpolation points 0, +-1, +-2 and infinity).
_BT = np.array([[4, 0, -5, 0, 1, 0],
                [0, -4, -4, 1, 1, 0],
                [0, 4, -4, -1, 1, 0],
                [0, -2, -1, 2, 1, 0],
                [0, 2, -1, -2, 1, 0],
                [0, 4, 0, -5, 0, 1]], np.float64)
_G = np.array([[1 / 4, 0, 0],
               [-1 / 6, -1 / 6, -1 / 6],
               [-1 / 6, 1 / 6, -1 / 6],
               [1 / 24, 1 / 12, 1 / 6],
               [1 / 24, -1 / 12, 1 / 6],
               [0, 0, 1]], np.float64)
_AT = np.array([[1, 1, 1, 1, 1, 0],
                [0, 1, -1, 2, -2, 0],
                [0, 1, 1, 4, 4, 0],
                [0, 1, -1, 8, -8, 1]], np.float64)
_OUT, _TILE = 4, 6  # outputs per tile side; input tile side (= _OUT + 3 - 1)
_HI = lax.Precision.HIGHEST  # the transforms' constants stay exact (no TF32/bf16 passes)


def _overlapping_tiles(x: jnp.ndarray, n: int, axis: int) -> jnp.ndarray:
    """Windows of 6 at stride 4 along `axis` (length >= 4n + 4): that axis -> (n, 6).

    Window i = rows 4i .. 4i+3 (one reshape) followed by rows 4i+4, 4i+5 (the same reshape of the
    array shifted by 4, first two rows): contiguous copies instead of a gather.
    """
    def blocks(start):
        part = lax.slice_in_dim(x, start, start + _OUT * n, axis=axis)
        return part.reshape(part.shape[:axis] + (n, _OUT) + part.shape[axis + 1:])

    tail = lax.slice_in_dim(blocks(_OUT), 0, _TILE - _OUT, axis=axis + 1)
    return jnp.concatenate([blocks(0), tail], axis=axis + 1)


def winograd_conv3x3(x: jnp.ndarray, kernel: jnp.ndarray, precision=None) -> jnp.ndarray:
    """= `lax.conv_general_dilated(x, kernel, (1, 1), ((1, 1), (1, 1)))` for NHWC x and HWIO kernel.

    x `[B, H, W, Cin]`, kernel `[3, 3, Cin, Cout]` -> `[B, H, W, Cout]` (zero padding 1, stride 1);
    `precision` is the channel matmuls'.
    """
    b, h, w, cin = x.shape
    if kernel.shape[:3] != (3, 3, cin):
        raise ValueError(f"winograd_conv3x3: kernel {kernel.shape} is not [3, 3, {cin}, Cout]")
    cout = kernel.shape[3]
    nh, nw = -(-h // _OUT), -(-w // _OUT)
    # Zero padding 1 before; after, up to what the last tile's shifted reshape reads (4n + 4).
    xp = jnp.pad(x, ((0, 0), (1, _OUT * nh + 3 - h), (1, _OUT * nw + 3 - w), (0, 0)))
    tiles = _overlapping_tiles(_overlapping_tiles(xp, nh, 1), nw, 3)  # [B, nh, 6, nw, 6, Cin]
    tiles = tiles.transpose(2, 4, 0, 1, 3, 5).reshape(_TILE * _TILE, -1)
    # B^T d B for every tile and channel at once: (B^T kron B^T) [36, 36] times the tiles' elements.
    input_transform = jnp.asarray(np.kron(_BT, _BT), x.dtype)
    v = jnp.dot(input_transform, tiles, precision=_HI).reshape(_TILE * _TILE, b * nh * nw, cin)
    # G g G^T: (G kron G) [36, 9] times the kernel's taps, in float32 (1/6, 1/24 are inexact in bf16).
    filter_transform = jnp.asarray(np.kron(_G, _G), jnp.float32)
    u = jnp.dot(filter_transform, kernel.astype(jnp.float32).reshape(9, -1), precision=_HI)
    u = u.reshape(_TILE * _TILE, cin, cout).astype(x.dtype)
    m = lax.dot_general(v, u, (((2,), (1,)), ((0,), (0,))), precision=precision)  # [36, tiles, Cout]
    # A^T m A: (A^T kron A^T) [16, 36] gives each tile's 4x4 outputs.
    output_transform = jnp.asarray(np.kron(_AT, _AT), x.dtype)
    y = jnp.dot(output_transform, m.reshape(_TILE * _TILE, -1), precision=_HI)
    y = y.reshape(_OUT, _OUT, b, nh, nw, cout).transpose(2, 3, 0, 4, 1, 5)
    return y.reshape(b, _OUT * nh, _OUT * nw, cout)[:, :h, :w]
