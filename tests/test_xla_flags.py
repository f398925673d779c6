"""Importing the package selects XLA:CPU's memory-minimising schedule, unless XLA_FLAGS decides."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PRINT_FLAGS = "import os, mofgseg_jax; print(os.environ['XLA_FLAGS'])"


def _flags_after_import(xla_flags: str | None) -> str:
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    if xla_flags is not None:
        env["XLA_FLAGS"] = xla_flags
    out = subprocess.run([sys.executable, "-c", PRINT_FLAGS], cwd=ROOT, env=env, capture_output=True,
                         text=True, check=True)
    return out.stdout.strip()


def test_flag_is_added_and_other_flags_are_kept():
    flags = _flags_after_import("--xla_force_host_platform_device_count=2")
    assert flags.split() == ["--xla_force_host_platform_device_count=2",
                             "--xla_cpu_enable_concurrency_optimized_scheduler=false"]
    assert _flags_after_import(None) == "--xla_cpu_enable_concurrency_optimized_scheduler=false"


def test_a_users_own_choice_wins():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert _flags_after_import(mine) == mine
