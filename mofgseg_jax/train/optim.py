"""The optimiser of DESIGN.md §3 step 7: SGD + momentum, coupled weight decay, poly schedule.

`optim.name='adamw'` swaps SGD for AdamW (decoupled weight decay, same groups and poly schedule):
SegFormer's own recipe, used by the demo config because a tiny MiT trained from scratch with SGD
learns colour but not texture within a CPU-sized budget (measured; see configs/demo.py).

PyTorch semantics (`torch.optim.SGD(momentum, weight_decay)` + a poly `LambdaLR` stepped once per
iteration): the decay is added to the gradient *before* the momentum trace, and the learning rate
multiplies the trace. Two parameter groups: `params['backbone']` at the base lr, everything else
(decode head, boundary module) at lr × lr_multi. With `accumulate_steps > 1` the whole thing is
wrapped in `optax.MultiSteps`, so the schedule counts optimiser updates, not micro-steps.
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
import optax

from mofgseg_jax.errors import InputError

BACKBONE = "backbone"
DECODER = "decoder"
OPTIMIZERS = ("sgd", "adamw")  # `optim.name`


def poly_schedule(base_lr: float, total_updates: int, power: float) -> optax.Schedule:
    """lr(it) = base_lr · (1 − it/total)^power, `it` = optimiser updates done so far (0-based).

    Clamped at 0 once `it ≥ total` (a negative base would give NaN under a fractional power).
    """
    if total_updates <= 0:
        raise ValueError(f"poly schedule: total_updates must be > 0, got {total_updates}")

    def schedule(count: jax.Array) -> jax.Array:
        frac = jnp.clip(1.0 - count.astype(jnp.float32) / total_updates, 0.0, 1.0)
        return base_lr * frac**power

    return schedule


def with_linear_warmup(schedule: optax.Schedule, warmup_updates: int,
                       start_ratio: float = 1e-6) -> optax.Schedule:
    """mmseg's linear warm-up (SegFormer's recipe): for it < W the lr is scaled by
    start_ratio + (1 − start_ratio) · it/W, then `schedule` unchanged (it keeps counting from 0, so
    the poly decay still ends at `total_updates`). W = 0 returns `schedule` itself."""
    if warmup_updates < 0:
        raise InputError(f"optim.warmup_steps must be >= 0, got {warmup_updates}")
    if warmup_updates == 0:
        return schedule

    def warmed(count: jax.Array) -> jax.Array:
        frac = jnp.clip(count.astype(jnp.float32) / warmup_updates, 0.0, 1.0)
        return schedule(count) * (start_ratio + (1.0 - start_ratio) * frac)

    return warmed


def param_labels(params: Any) -> Any:
    """'backbone' for every leaf under params['backbone'], 'decoder' for the rest (same tree)."""
    return {name: jax.tree.map(lambda _, n=name: BACKBONE if n == BACKBONE else DECODER, sub)
            for name, sub in params.items()}


def _sgd(schedule: optax.Schedule, momentum: float, weight_decay: float) -> optax.GradientTransformation:
    # Order matters: torch adds wd·p to the gradient, then updates the momentum buffer with it.
    return optax.chain(
        optax.add_decayed_weights(weight_decay),
        optax.trace(decay=momentum, nesterov=False),
        optax.scale_by_learning_rate(schedule),
    )


def _adamw(schedule: optax.Schedule, weight_decay: float) -> optax.GradientTransformation:
    return optax.adamw(schedule, weight_decay=weight_decay)


def make_optimizer(optim_cfg: Any, total_updates: int) -> tuple[optax.GradientTransformation, Callable]:
    """Returns (tx, backbone_schedule).

    optim_cfg: `name` ('sgd' | 'adamw'), `lr`, `lr_multi`, `momentum` (sgd), `weight_decay`, `power`,
    `warmup_steps` (optimiser updates of linear warm-up; 0 = none, as published), `accumulate_steps`.
    total_updates: optimiser updates over the whole run (= train micro-steps // accumulate_steps).
    The returned schedule (of the update count) is what the step reports as `lr`.
    """
    warmup = int(optim_cfg.warmup_steps)
    base = with_linear_warmup(poly_schedule(optim_cfg.lr, total_updates, optim_cfg.power), warmup)
    decoder = with_linear_warmup(
        poly_schedule(optim_cfg.lr * optim_cfg.lr_multi, total_updates, optim_cfg.power), warmup)
    name = str(getattr(optim_cfg, "name", "sgd"))
    if name == "sgd":
        groups = {BACKBONE: _sgd(base, optim_cfg.momentum, optim_cfg.weight_decay),
                  DECODER: _sgd(decoder, optim_cfg.momentum, optim_cfg.weight_decay)}
    elif name == "adamw":
        groups = {BACKBONE: _adamw(base, optim_cfg.weight_decay), DECODER: _adamw(decoder, optim_cfg.weight_decay)}
    else:
        raise InputError(f"optim.name={name!r}: choose from {', '.join(OPTIMIZERS)}")
    tx = optax.multi_transform(groups, param_labels)
    k = int(getattr(optim_cfg, "accumulate_steps", 1))
    if k < 1:
        raise InputError(f"optim.accumulate_steps must be >= 1, got {k}")
    if k > 1:
        # Averages k micro-step gradients, then applies one inner update (inner count = updates).
        tx = optax.MultiSteps(tx, every_k_schedule=k).gradient_transformation()
    return tx, base


def total_updates_for(total_steps: int, accumulate_steps: int) -> int:
    """Optimiser updates in a run of `total_steps` micro-steps."""
    return max(int(total_steps) // int(accumulate_steps), 1)
