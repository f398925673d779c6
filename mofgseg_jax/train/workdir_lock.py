"""One training run per workdir. A second run started on a workdir in use (a job script submitted
twice, a command rerun in another terminal) would save over the first one's checkpoints and mix
their logs; it is refused instead. Process 0 holds an exclusive `flock` on `<workdir>/.train.lock`
while it trains; the kernel releases it when the process ends, however it ends, so a killed run
never leaves the workdir locked. evaluate.py and predict.py only read a run and take no lock."""

from __future__ import annotations

import fcntl
import logging
import os
import socket

from mofgseg_jax.errors import InputError

LOCK_FILE = ".train.lock"

log = logging.getLogger(__name__)


class WorkdirLock:
    """Held from `acquire` until `release` (or the process's end)."""

    def __init__(self, fd: int):
        self._fd = fd

    def release(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)  # closing the file releases its lock
            self._fd = -1


def acquire(workdir: str) -> WorkdirLock:
    """Locks `workdir` (which exists) for this training process, or raises one line saying which
    process holds it."""
    fd = os.open(os.path.join(workdir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 200, 0).decode(errors="replace").strip() or "another process"
        os.close(fd)
        raise InputError(f"--workdir {workdir}: a training run is using it ({holder}); wait for it to end or "
                         "stop it, or train into another --workdir") from None
    except OSError as e:  # a file system without locks (some NFS mounts): train, unguarded
        log.warning("%s: cannot lock it (%s); nothing stops a second run on this workdir", workdir, e.strerror)
        return WorkdirLock(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"process {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
    return WorkdirLock(fd)
