"""One training run per workdir: a second one is refused in one line, and the lock goes with the
run that held it (released at its end, or by the kernel when its process dies)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from mofgseg_jax.errors import InputError
from mofgseg_jax.train import workdir_lock


def test_a_second_lock_on_a_workdir_in_use_is_refused_naming_the_holder(tmp_path):
    held = workdir_lock.acquire(str(tmp_path))
    with pytest.raises(InputError, match=rf"^--workdir {tmp_path}: a training run is using it "
                                         rf"\(process {os.getpid()} on .+\); wait for it"):
        workdir_lock.acquire(str(tmp_path))
    held.release()
    workdir_lock.acquire(str(tmp_path)).release()  # free again


def test_a_killed_holder_leaves_the_workdir_free(tmp_path):
    code = ("import os, sys; sys.path.insert(0, sys.argv[2]); from mofgseg_jax.train import workdir_lock; "
            "workdir_lock.acquire(sys.argv[1]); os.kill(os.getpid(), 9)")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path), str(Path(__file__).resolve().parents[1])],
                          timeout=60)
    assert proc.returncode == -9
    workdir_lock.acquire(str(tmp_path)).release()


def test_a_file_system_without_locks_trains_unguarded_with_a_warning(tmp_path, monkeypatch, caplog):
    def no_locks(fd, operation):
        raise OSError(37, "No locks available")

    monkeypatch.setattr(workdir_lock.fcntl, "flock", no_locks)
    workdir_lock.acquire(str(tmp_path)).release()
    assert "cannot lock it (No locks available)" in caplog.text
