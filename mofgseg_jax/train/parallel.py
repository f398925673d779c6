"""Mapping the per-device train step over all devices (DESIGN.md §7).

Default: `jax.shard_map` under `jax.jit` on a 1-D ('data',) mesh of every device (all hosts):
the state and rng are replicated (P()), the batch is sharded on its leading axis (P('data')), the
state is donated. Alternative (`parallel.mode='pmap'`): `jax.pmap` over the same body, with the
state replicated along a leading device axis.

`make_parallel(config, body)` bundles the choice so the loop never branches on the mode:

    par = make_parallel(config, make_train_step(config, model))
    state = par.put_state(state)
    state, metrics = par.step(state, par.put_batch(host_batch), rng)
    host_metrics = par.get_metrics(metrics)      # floats, only every log_every steps
    host_state = par.get_state(state)            # single-copy state (checkpoints, evaluation)
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mofgseg_jax.errors import InputError
from mofgseg_jax.train.step import AXIS

PARALLEL_MODES = ("shard_map", "pmap")  # `parallel.mode`

Body = Callable[[Any, Any, jax.Array], tuple[Any, dict[str, jax.Array]]]


def make_mesh(devices: list | None = None) -> Mesh:
    """1-D ('data',) mesh over `devices` (default: every device of every process)."""
    devices = list(devices) if devices is not None else jax.devices()
    return jax.make_mesh((len(devices),), (AXIS,), devices=devices)


def shard_map_step(body: Body, mesh: Mesh, *, donate: bool = True) -> Callable:
    """jit(shard_map(body)): state/rng replicated, batch split on axis 0 over 'data'.

    check_vma=False: the body is written as a pmap body (explicit pmean of gradients, BN stats
    synced by axis name); with varying-manual-axes checking on, autodiff would also insert a psum
    of the gradients of the replicated params, and the two mappings would disagree.
    """
    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(AXIS), P()), out_specs=(P(), P()),
                           check_vma=False)
    replicated, sharded = NamedSharding(mesh, P()), NamedSharding(mesh, P(AXIS))
    # Explicit shardings both ways: the state comes back with exactly the sharding it went in with
    # (left to inference, outputs read P(None,) vs the input's P() and step 2 compiled again).
    return jax.jit(mapped, in_shardings=(replicated, sharded, replicated), out_shardings=(replicated, replicated),
                   donate_argnums=(0,) if donate else ())


def replicate_on_mesh(tree: Any, mesh: Mesh) -> Any:
    """Places a host/single-device pytree fully replicated on the mesh."""
    return jax.device_put(tree, NamedSharding(mesh, P()))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """This process's part of the global batch -> global arrays sharded on axis 0 over 'data'.

    Each leaf's leading size must divide evenly over this process's devices. Single-host: the
    host batch is the global batch.
    """
    sharding = NamedSharding(mesh, P(AXIS))
    local = len(mesh.local_devices)

    def put(x):
        x = np.asarray(x)
        if x.shape[0] % local:
            raise ValueError(f"batch leaf of shape {x.shape}: leading size {x.shape[0]} does not split "
                             f"over {local} local devices; make the per-process batch a multiple of it")
        return jax.make_array_from_process_local_data(sharding, x)

    return jax.tree.map(put, batch)


def pmap_step(body: Body, *, donate: bool = True, devices: list | None = None) -> Callable:
    """pmap(body) over local devices: state replicated per device, batch [D, B/D, ...], rng broadcast."""
    return jax.pmap(body, axis_name=AXIS, in_axes=(0, 0, None), donate_argnums=(0,) if donate else (),
                    devices=devices)


def replicate(tree: Any, devices: list | None = None) -> Any:
    """Stacks a copy per local device (pmap layout)."""
    devices = list(devices) if devices is not None else jax.local_devices()
    sharding = NamedSharding(Mesh(np.array(devices), (AXIS,)), P(AXIS))
    n = len(devices)
    return jax.tree.map(lambda x: jax.device_put(np.broadcast_to(np.asarray(x), (n,) + np.shape(x)), sharding),
                        tree)


def unreplicate(tree: Any) -> Any:
    """First device's copy of a pmap-replicated pytree."""
    return jax.tree.map(lambda x: x[0], tree)


def split_batch_for_pmap(batch: Any, num_devices: int | None = None) -> Any:
    """[B, ...] -> [D, B/D, ...] over local devices (pmap input layout)."""
    d = num_devices or jax.local_device_count()

    def split(x):
        x = np.asarray(x)
        if x.shape[0] % d:
            raise ValueError(f"batch leaf of shape {x.shape}: leading size {x.shape[0]} does not split "
                             f"over {d} devices")
        return x.reshape((d, x.shape[0] // d) + x.shape[1:])

    return jax.tree.map(split, batch)


@dataclasses.dataclass(frozen=True)
class Parallel:
    """The mapped step and the placement helpers for one parallel mode."""

    mode: str
    step: Callable  # (state, batch, rng) -> (state, metrics), on placed state/batch
    put_state: Callable[[Any], Any]
    put_batch: Callable[[Any], Any]
    get_state: Callable[[Any], Any]
    mesh: Mesh | None = None

    def get_metrics(self, metrics: dict[str, jax.Array]) -> dict[str, float]:
        """Fetches metrics to the host as floats (one transfer; call every log_every steps only)."""
        host = jax.device_get(metrics)
        if self.mode == "pmap":
            host = {k: np.asarray(v)[0] for k, v in host.items()}
        return {k: float(v) for k, v in host.items()}


def make_parallel(config: Any, body: Body, *, mesh: Mesh | None = None, donate: bool = True) -> Parallel:
    """Maps `body` as `config.parallel.mode` says ('shard_map' default, or 'pmap')."""
    mode = str(config.parallel.mode)
    if mode == "shard_map":
        mesh = mesh or make_mesh()
        return Parallel(mode, shard_map_step(body, mesh, donate=donate),
                        put_state=lambda s: replicate_on_mesh(s, mesh),
                        put_batch=lambda b: shard_batch(b, mesh),
                        get_state=lambda s: s, mesh=mesh)
    if mode == "pmap":
        devices = list(mesh.local_devices) if mesh is not None else jax.local_devices()
        return Parallel(mode, pmap_step(body, donate=donate, devices=devices),
                        put_state=lambda s: replicate(s, devices),
                        put_batch=lambda b: split_batch_for_pmap(b, len(devices)),
                        get_state=unreplicate, mesh=mesh)
    raise InputError(f"parallel.mode={mode!r}: choose from {', '.join(PARALLEL_MODES)}")
