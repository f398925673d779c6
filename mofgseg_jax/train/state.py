"""The train state: step, student params + BatchNorm stats, optimiser state, and the EMA teacher."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax import struct
from flax.training import train_state

from mofgseg_jax.models.host_init import host_init
from mofgseg_jax.train import optim


class TrainState(train_state.TrainState):
    """flax TrainState plus `batch_stats` and `teacher` = {'params', 'batch_stats'}.

    `step` counts calls of the train step (micro-steps); with `optim.accumulate_steps = k` the
    optimiser updates (and the EMA) happen every k-th call, and `num_updates(k)` counts them.
    """

    batch_stats: Any
    teacher: Any
    # Backbone lr as a function of the optimiser-update count (reported in the metrics).
    lr_fn: Callable = struct.field(pytree_node=False, default=None)

    def num_updates(self, accumulate_steps: int = 1) -> jax.Array:
        return self.step // accumulate_steps


def total_steps_from_config(config: Any) -> int:
    """`train.num_steps` when set; otherwise the caller must pass total_steps explicitly."""
    steps = int(config.train.num_steps)
    if steps <= 0:
        raise ValueError("create_train_state: config.train.num_steps is 0; pass total_steps= "
                         "(num_epochs × steps per epoch) so the poly schedule knows the run length")
    return steps


def init_variables(model: nn.Module, rng: jax.Array, sample_shape: Sequence[int]) -> dict[str, Any]:
    """{'params', 'batch_stats'} of `model`, initialised with its own distributions, seeded by `rng`.

    Drawn with NumPy on the host (`mofgseg_jax.models.host_init`): `jit(model.init)` compiles one
    random-number kernel per parameter, a minute for MiT-B0 and many for MiT-B5 on a CPU. Under
    tracing (e.g. `jax.eval_shape` of the whole state) `rng` has no value: abstract zeros are returned.
    """
    if isinstance(rng, jax.core.Tracer):
        shapes = jax.eval_shape(lambda: host_init_shapes(model, sample_shape))
        return jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), shapes)
    seed = np.asarray(jax.random.key_data(rng) if jnp.issubdtype(rng.dtype, jax.dtypes.prng_key) else rng)
    variables = host_init(model, sample_shape, seed=[int(v) for v in seed.ravel()])
    return jax.tree.map(jnp.asarray, variables)


def host_init_shapes(model: nn.Module, sample_shape: Sequence[int]) -> dict[str, Any]:
    """Abstract {'params', 'batch_stats'} of `model` (for tracing without values)."""
    images = jax.ShapeDtypeStruct(tuple(sample_shape), jnp.float32)
    keys = {"params": jax.random.key(0), "dropout": jax.random.key(1)}
    variables = dict(model.init(keys, jnp.zeros(images.shape, images.dtype), train=False))
    variables.setdefault("batch_stats", {})
    return variables


def create_train_state(config: Any, model: nn.Module, rng: jax.Array, sample_shape: Sequence[int], *,
                       total_steps: int | None = None, variables: dict[str, Any] | None = None,
                       load_pretrained: Callable | None = None) -> TrainState:
    """Initialises the student, copies it into the teacher, builds the optimiser.

    config: the full config (`model`, `optim`, `train`).
    sample_shape: image shape used to initialise, e.g. (1, crop, crop, 3) (NHWC, float32).
    total_steps: train-step calls over the whole run (default `config.train.num_steps`); the poly
      schedule runs over total_steps // optim.accumulate_steps optimiser updates.
    variables: ready {'params', 'batch_stats'} to start from instead of initialising (rng unused then).
    load_pretrained: override of `mofgseg_jax.weights.load_pretrained` (tests).
    When `config.model.pretrained` is set, its weights replace the initial ones (student and teacher).
    """
    if total_steps is None:
        total_steps = total_steps_from_config(config)
    if variables is None:
        variables = init_variables(model, rng, sample_shape)
    pretrained = str(config.model.get("pretrained", "") or "")
    if pretrained:
        if load_pretrained is None:
            from mofgseg_jax.weights import load_pretrained  # noqa: PLC0415 (only when used)
        variables = load_pretrained(pretrained, variables,
                                    reinit_classifier=bool(config.model.get("reinit_classifier", False)))
    tx, lr_fn = optim.make_optimizer(config.optim, optim.total_updates_for(total_steps, config.optim.accumulate_steps))
    params, batch_stats = variables["params"], variables["batch_stats"]
    # Separate buffers: the teacher must not alias the student (the step donates the whole state).
    teacher = jax.tree.map(jnp.copy, {"params": params, "batch_stats": batch_stats})
    state = TrainState.create(apply_fn=model.apply, params=params, tx=tx, batch_stats=batch_stats,
                              teacher=teacher, lr_fn=lr_fn)
    # A strongly typed step counter: a weak-typed 0 would compile the step again after a restore.
    return state.replace(step=jnp.zeros((), jnp.int32))
