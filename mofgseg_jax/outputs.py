"""Where the launchers write: folders that must be writable, files that must not be replaced.

Launchers call these before any long work (loading a model, reading data), so a bad `--output` ends
in seconds with one line, not in a traceback after an hour of evaluation; what exists is replaced
only when the user asks with `--overwrite`; and a file is written whole or not at all (`open_new`).
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from typing import IO, Iterator, Sequence

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


@contextlib.contextmanager
def open_new(path: str, flag: str, *, overwrite: bool = False, binary: bool = False) -> Iterator[IO]:
    """A file to write `path` through: a temporary file beside it, moved into place when the `with`
    block ends without an exception and deleted when it does not (an error, Ctrl-C), so `path`
    never holds half a file that a rerun refuses as existing or a reader takes for a result.
    Without `overwrite` the move fails if `path` appeared since `refuse_existing` (another run
    writing there): that file is kept."""
    fd, tmp = tempfile.mkstemp(dir=os.path.dirname(os.path.abspath(path)),
                               prefix=f".{os.path.basename(path)}.", suffix=".tmp")
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp's 0600 would hide the result from other users
        with os.fdopen(fd, "wb" if binary else "w") as f:
            yield f
        _place(tmp, path, flag, overwrite=overwrite)
    finally:
        if os.path.lexists(tmp):
            os.remove(tmp)


def _place(tmp: str, path: str, flag: str, *, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, path)
        return
    try:
        os.link(tmp, path)  # atomic and exclusive: fails if `path` exists
    except FileExistsError as e:
        raise _exists(path, flag) from e
    except OSError:  # a file system without hard links: check, then move (exclusive but for a race)
        if os.path.lexists(path):
            raise _exists(path, flag) from None
        os.replace(tmp, path)


def _exists(path: str, flag: str) -> OutputExistsError:
    return OutputExistsError(f"{flag}: {path} exists; choose another {flag} or pass --overwrite")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
