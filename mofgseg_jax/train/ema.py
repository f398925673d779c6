"""The EMA teacher of DESIGN.md §3 step 8.

teacher ← decay · teacher + (1 − decay) · student with decay = min(1 − 1/(t+1), cap), t = number of
optimiser updates before this one (so the first update copies the student: decay 0). Batch stats
are averaged the same way unless `average_batch_stats=False` — the published code's behaviour, where
the teacher's BatchNorm running stats stay at their initial values (DESIGN.md §6).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax


def ema_decay(num_updates: jax.Array | int, cap: float) -> jax.Array:
    """min(1 − 1/(t+1), cap) for t = updates done before this one."""
    t = jnp.asarray(num_updates, jnp.float32)
    return jnp.minimum(1.0 - 1.0 / (t + 1.0), cap)


def update_teacher(teacher: dict[str, Any], params: Any, batch_stats: Any, num_updates: jax.Array | int,
                   *, cap: float, average_batch_stats: bool = True) -> dict[str, Any]:
    """Returns the new teacher {'params', 'batch_stats'} after one optimiser update.

    teacher: {'params': tree, 'batch_stats': tree}; params/batch_stats: the student's, after the update.
    num_updates: optimiser updates done before this one (t above).
    """
    step_size = 1.0 - ema_decay(num_updates, cap)
    new_params = optax.incremental_update(params, teacher["params"], step_size)
    if average_batch_stats:
        new_stats = optax.incremental_update(batch_stats, teacher["batch_stats"], step_size)
    else:
        new_stats = teacher["batch_stats"]
    return {"params": new_params, "batch_stats": new_stats}
