"""Shared by the config tests: the shipped configs by name, and the launchers' flag parsing."""

import importlib
from pathlib import Path

# Every shipped config (a new one is covered by the config tests without a list to edit).
NAMES = tuple(sorted(p.stem for p in (Path(__file__).resolve().parents[1] / "configs").glob("*.py")
                     if p.stem not in ("__init__", "common")))


def load_config(name, arg=None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


def parse_config_flags(*argv):
    """The launchers' flag parsing (`config_flags.DEFINE_config_file(..., lock_config=True)`)."""
    from absl import flags
    from ml_collections import config_flags

    argv = ["launch/train.py", *argv]
    values = flags.FlagValues()
    config_flags.DEFINE_config_file("config", None, "", flag_values=values, lock_config=True, sys_argv=argv)
    values(argv)
    return values.config
