"""Where the launchers write: folders that must be writable, files that must not be replaced.

Launchers call these before any long work (loading a model, reading data), so a bad `--output` ends
in seconds with one line, not in a traceback after an hour of evaluation; and what exists is
replaced only when the user asks with `--overwrite`.
"""

from __future__ import annotations

import os
from typing import IO, Sequence

from mofgseg_jax.errors import InputNotWritableError, OutputExistsError


def check_writable(folder: str, flag: str, *, probe: str = "") -> None:
    """Creates `folder` (and its parents) if needed and writes a probe file in it; one line naming
    `flag` and `folder` when either fails. `probe`: the probe's file name (default: per process id)."""
    try:
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, probe or f".write_test_{os.getpid()}")
        with open(path, "w") as f:
            f.write("ok")
        os.remove(path)
    except OSError as e:
        raise InputNotWritableError(f"{flag} {folder}: cannot create or write there ({e.strerror or e})") from e


def refuse_existing(paths: Sequence[str], flag: str, *, overwrite: bool = False) -> None:
    """Raises `OutputExistsError` naming the first of `paths` that exists (and how many more), unless
    `overwrite`."""
    existing = [p for p in paths if os.path.lexists(p)]
    if existing and not overwrite:
        more = f" (and {len(existing) - 1} more)" if len(existing) > 1 else ""
        raise OutputExistsError(f"{flag}: {existing[0]} exists{more}; choose another {flag} or pass "
                                "--overwrite (nothing was written)")


def open_new(path: str, flag: str, *, overwrite: bool = False, binary: bool = False) -> IO:
    """`open(path, 'w')`; without `overwrite` mode 'x', so a file that appeared since
    `refuse_existing` (another run writing there) is kept too."""
    try:
        return open(path, ("w" if overwrite else "x") + ("b" if binary else ""))
    except FileExistsError as e:
        raise OutputExistsError(f"{flag}: {path} exists; choose another {flag} or pass --overwrite") from e
