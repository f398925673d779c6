"""Small random draws shared by the perturbations."""

from __future__ import annotations

import jax
import jax.numpy as jnp


def uniform_int(key: jax.Array, low, high) -> jax.Array:
    """One int32 uniform on {low, ..., high - 1} (bounds may be traced; requires high > low).

    floor(low + U[0, 1) (high - low)) rather than `jax.random.randint`: the same law up to float32
    resolution (bias < 2^-23 per value for the ranges here, image sizes), and each `randint` costs
    ~0.2 s of XLA compile time on CPU against ~0.05 s for a uniform -- with a dozen draws per
    perturbation, that was most of its compile time.
    """
    u = jax.random.uniform(key, ())
    low = jnp.asarray(low, jnp.int32)
    span = jnp.asarray(high, jnp.int32) - low
    return low + jnp.minimum(jnp.floor(u * span).astype(jnp.int32), span - 1)
