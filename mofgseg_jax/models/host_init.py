"""Initial MOFGSeg variables drawn with NumPy on the host, with the modules' own distributions.

Why: `jax.jit(model.init)` compiles one random-number kernel per parameter; on a CPU that takes
a minute for MiT-B0 and many minutes for MiT-B5 (threefry; rbg keys are ~2x faster, still minutes
for B5). The values of an initialisation do not matter, only their distributions, so the variables
here come from `jax.eval_shape(model.init)` (tracing only, no compile) filled leaf by leaf with NumPy
draws from the distribution the module declares for that leaf (`tests/test_models.py` checks each
leaf against `model.init`'s statistics):

- backbone (PyTorch MiT `_init_weights`): Dense kernels normal(0, 0.02) (timm's `trunc_normal_`
  cuts at ±100 std there); conv kernels normal(0, sqrt(2 / fan_out)), fan_out = kh*kw*out;
  depthwise 3x3 kernels normal(0, sqrt(2 / 9)) (torch's fan_out of a depthwise conv);
- decoder: `ConvBNReLU` convs (`.../conv/kernel`, mmcv's ConvModule) kaiming normal(0,
  sqrt(2 / fan_out)); every other kernel, the boundary module's included (plain `nn.Conv2d`s in
  the published code), torch's default uniform(±1/sqrt(fan_in)), fan_in = kh*kw*in;
- every bias 0; LayerNorm/BatchNorm scale 1; BatchNorm running mean 0, variance 1.
"""

from __future__ import annotations

from typing import Any, Sequence

import jax
import jax.numpy as jnp
import numpy as np

_DENSE_STD = 0.02  # MiT Linear layers (mit.dense_init)


def leaf_rule(path: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, float]:
    """(distribution, scale) of one variable: ('const', value) | ('normal', std) | ('uniform', bound).
    `path` = (collection, module names..., leaf name)."""
    collection, name = path[0], path[-1]
    if collection == "batch_stats":
        return ("const", 1.0) if name == "var" else ("const", 0.0)
    if name == "bias":
        return ("const", 0.0)
    if name == "scale":
        return ("const", 1.0)
    if name != "kernel":
        raise ValueError(f"host_init: no initialisation rule for variable {'/'.join(path)}")
    receptive = int(np.prod(shape[:-2])) if len(shape) > 2 else 1
    fan_in, fan_out = shape[-2] * receptive, shape[-1] * receptive
    if "backbone" in path:
        if "dwconv" in path:
            return ("normal", (2.0 / 9.0) ** 0.5)
        if len(shape) == 4:
            return ("normal", (2.0 / fan_out) ** 0.5)
        return ("normal", _DENSE_STD)
    if path[-2] == "conv" and "boundary" not in path:  # ConvBNReLU (ConvModule): kaiming, fan_out
        return ("normal", (2.0 / fan_out) ** 0.5)
    return ("uniform", fan_in ** -0.5)  # torch default for Linear/Conv2d


def host_init(model: Any, sample_shape: Sequence[int], seed: int | Sequence[int] = 0) -> dict[str, Any]:
    """{'params', 'batch_stats'} of `model` as float32 NumPy arrays (no XLA compilation).

    sample_shape: NHWC image shape to trace the model with (parameters do not depend on H, W).
    seed: NumPy seed (an int or a sequence of ints, e.g. the words of a JAX key).
    """
    images = jax.ShapeDtypeStruct(tuple(sample_shape), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    shapes = jax.eval_shape(lambda x: model.init(keys, x, train=False), images)
    rng = np.random.default_rng(seed)

    def fill(path, leaf):
        names = tuple(getattr(p, "key", str(p)) for p in path)
        kind, scale = leaf_rule(names, tuple(leaf.shape))
        if kind == "const":
            return np.full(leaf.shape, scale, np.float32)
        if kind == "normal":
            return rng.standard_normal(leaf.shape, dtype=np.float32) * np.float32(scale)
        return rng.uniform(-scale, scale, leaf.shape).astype(np.float32)

    variables = jax.tree_util.tree_map_with_path(fill, dict(shapes))
    variables.setdefault("batch_stats", {})
    return variables
