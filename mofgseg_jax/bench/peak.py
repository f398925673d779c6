"""`python launch/benchmark.py peak`: the FLOP rate XLA attains on this device, for scale.

CPUs have no datasheet peak in `step`'s MFU table, so this measures what a step could hope for: a
large square matmul and a 3x3 convolution the size of the boundary module's (320 -> 256 channels at
stride 4, the published module's first conv), forward and forward+backward, in float32 and bfloat16
(f32 accumulation): XLA's convolution (`conv3x3_*`), and the route the model takes
(`conv3x3_model_*`, `models.conv.conv3x3_same`: Winograd for float32 on CPU), its rate in the direct
convolution's FLOPs. A step's FLOPs (`step` prints them) divided by these rates is a floor on its
time. Pass the matmul rate to `step --peak-flops` for an MFU against it.
"""

from __future__ import annotations

import argparse
from typing import Any

import jax
import jax.numpy as jnp

from mofgseg_jax import cli
from mofgseg_jax.bench.common import time_calls
from mofgseg_jax.models.conv import conv3x3_same


def _parse(argv: list[str]) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="benchmark.py peak", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--matmul-size", type=int, default=2048, help="N of the N x N x N matmul")
    p.add_argument("--crop", type=int, default=256, help="crop whose stride-4 map the conv runs on")
    p.add_argument("--batch", type=int, default=2, help="images through the conv (labelled batch)")
    p.add_argument("--dtypes", default="float32,bfloat16")
    p.add_argument("--iters", type=int, default=10)
    return p.parse_args(argv)


def _conv(x: jax.Array, w: jax.Array) -> jax.Array:
    return jax.lax.conv_general_dilated(x, w, (1, 1), ((1, 1), (1, 1)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                        preferred_element_type=jnp.float32)


def _rate(fn, args, flops: float, iters: int) -> dict[str, float]:
    compiled = jax.jit(fn)
    timing = time_calls(lambda: compiled(*args), iters=iters)
    return {"gflops_per_s": flops / timing["median_s"] / 1e9, "median_s": timing["median_s"],
            "gflop": flops / 1e9}


def run(argv: list[str]) -> dict[str, Any]:
    args = _parse(argv)
    n, s = args.matmul_size, args.crop // 4
    key_a, key_b = jax.random.split(jax.random.PRNGKey(0))
    out: dict[str, Any] = {"matmul_size": n, "conv": {"batch": args.batch, "hw": s, "cin": 320,
                                                       "cout": 256, "kernel": 3}}
    conv_flops = 2.0 * args.batch * s * s * 9 * 320 * 256
    for name in args.dtypes.split(","):
        dtype = jnp.dtype(name)
        a = jax.random.normal(key_a, (n, n), dtype)
        b = jax.random.normal(key_b, (n, n), dtype)
        x = jax.random.normal(key_a, (args.batch, s, s, 320), dtype)
        w = jax.random.normal(key_b, (3, 3, 320, 256), dtype) * 0.02
        # A random cotangent: with d(sum)/dy = 1 XLA may reduce the weight gradient to sums of
        # shifted inputs, which is not the work a training step does.
        dy = jax.random.normal(key_b, (args.batch, s, s, 256), jnp.float32)  # _conv outputs float32
        def forward_backward(conv):
            def conv_grad(x, w, dy):  # returns the forward too, or XLA would drop it as unused
                y, pullback = jax.vjp(conv, x, w)
                return y, pullback(dy.astype(y.dtype))
            return conv_grad

        out[name] = {
            "matmul": _rate(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32), (a, b),
                            2.0 * n**3, args.iters),
        }
        for prefix, conv in (("conv3x3", _conv), ("conv3x3_model", conv3x3_same)):
            out[name][f"{prefix}_forward"] = _rate(conv, (x, w), conv_flops, args.iters)
            # backward = input gradient + weight gradient, each as many FLOPs as the forward
            out[name][f"{prefix}_forward_backward"] = _rate(forward_backward(conv), (x, w, dy),
                                                            3 * conv_flops, args.iters)
    return out
