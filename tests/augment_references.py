"""Independent NumPy/colorsys references for the augmentation tests (no code under test here)."""

import colorsys

import numpy as np


def colorsys_hue(image01, shift):
    """Hue rotation by `shift` (a fraction of a turn) of `[H, W, 3]` in [0, 1], pixel by pixel via colorsys."""
    out = np.empty_like(image01)
    for idx in np.ndindex(image01.shape[:2]):
        h, s, v = colorsys.rgb_to_hsv(*image01[idx].astype(np.float64))
        out[idx] = colorsys.hsv_to_rgb((h + shift) % 1.0, s, v)
    return out


def direct_blur(image, sigma, size):
    """2-D convolution with the outer-product Gaussian, reflect padding, explicit loops over taps."""
    half = size // 2
    x = np.arange(size) - half
    k1 = np.exp(-0.5 * (x / sigma) ** 2)
    kernel = np.outer(k1, k1) / np.outer(k1, k1).sum()
    padded = np.pad(image.astype(np.float64), ((half, half), (half, half), (0, 0)), mode="reflect")
    out = np.zeros(image.shape, np.float64)
    for dy in range(size):
        for dx in range(size):
            out += kernel[dy, dx] * padded[dy:dy + image.shape[0], dx:dx + image.shape[1]]
    return out
