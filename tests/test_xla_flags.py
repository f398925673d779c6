"""Importing the package sets its XLA:CPU flag defaults (memory-minimising schedule, no YNNPACK
convolutions), each unless XLA_FLAGS already names it."""

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


DEFAULTS = ["--xla_cpu_enable_concurrency_optimized_scheduler=false",
            "--xla_cpu_experimental_ynn_fusion_type=-individual_convolution"]


def test_flags_are_added_and_other_flags_are_kept():
    flags = _flags_after_import("--xla_force_host_platform_device_count=2")
    assert flags.split() == ["--xla_force_host_platform_device_count=2", *DEFAULTS]
    assert _flags_after_import(None).split() == DEFAULTS


def test_a_users_own_choice_wins():
    mine = "--xla_cpu_enable_concurrency_optimized_scheduler=true"
    assert _flags_after_import(mine).split() == [mine, DEFAULTS[1]]
    mine = "--xla_cpu_experimental_ynn_fusion_type="
    assert _flags_after_import(mine).split() == [mine, DEFAULTS[0]]


def test_this_xla_accepts_the_flags():
    # An unknown flag or value aborts XLA at its first compile: compile once in a fresh process.
    env = {k: v for k, v in os.environ.items() if k != "XLA_FLAGS"}
    code = "import mofgseg_jax, jax, jax.numpy as jnp; print(float(jax.jit(jnp.sum)(jnp.ones(3))))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "3.0", out.stderr[-2000:]
