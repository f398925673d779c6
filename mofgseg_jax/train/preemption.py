"""Stopping a run on request: SIGTERM (a scheduler's preemption notice) or Ctrl-C.

The training loop asks `should_stop(step)` after every step; when it answers True the loop saves a
checkpoint of that step and returns, so the same command resumes from it. A second Ctrl-C stops at
once (the periodic checkpoints are still there).

One process: SIGTERM and SIGINT set a flag. Several processes (`jax.distributed`): JAX's preemption
service turns a SIGTERM to any of them into one agreed step at which every process stops (a
checkpoint is a collective save); Ctrl-C keeps its default there, since one process alone cannot
stop the others at the same step.
"""

from __future__ import annotations

import signal
import threading
from types import FrameType, TracebackType

import jax
from jax.experimental import multihost_utils


class StopRequest:
    """Context manager: installs the handlers (main thread, one process) and restores them on exit."""

    def __init__(self) -> None:
        self.signal: int | None = None  # the signal received, once one is
        self._previous: dict[int, object] = {}
        self._single = jax.process_count() == 1
        # Several processes agree on the step through JAX's preemption service (on by default).
        self._synced = not self._single and bool(jax.config.jax_enable_preemption_service)

    def __enter__(self) -> "StopRequest":
        if self._single and threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGTERM, signal.SIGINT):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous.clear()

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C: stop now
        self.signal = signum

    def should_stop(self, step: int) -> bool:
        """True when the run should save `step` and stop (every process calls this at every step)."""
        if self._synced:
            if multihost_utils.reached_preemption_sync_point(step):
                self.signal = signal.SIGTERM
                return True
            return False
        return self._single and self.signal is not None

    @property
    def name(self) -> str:
        return signal.Signals(self.signal).name if self.signal is not None else ""
