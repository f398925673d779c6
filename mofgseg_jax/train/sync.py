"""A barrier across the processes of a multi-host run (a no-op in a single process)."""

import jax


def barrier(name: str) -> None:
    """All processes wait here: one process changed files (a config, a checkpoint's metrics, a demo
    dataset) that the others read next. `name` must be the same on every process and unique per use."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils  # noqa: PLC0415

        multihost_utils.sync_global_devices(name)
