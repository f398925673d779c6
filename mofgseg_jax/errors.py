"""Errors for bad input, and how the launchers report them: one line, no traceback.

Bad input is a config value or flag, a file or folder, a dataset or a checkpoint that is wrong. The
code that finds it raises one of these types with a message that names the key or the path and
what is wrong; `one_line_errors` turns that into `error: <message>` on stderr. Every other exception
is a bug and keeps its traceback. Each type also derives from the built-in one it replaces, so
`except ValueError` (or `FileNotFoundError`, ...) still catches it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
from typing import Iterator

# Set to 1 to see the traceback of an input error too (e.g. to find which call raised it).
TRACEBACK_ENV = "MOFGSEG_TRACEBACK"


class InputError(ValueError):
    """A config value, flag, file or folder is wrong; the message says which and how."""


class InputNotFoundError(InputError, FileNotFoundError):
    """A file or folder that the input names does not exist (or holds nothing usable)."""


class InputNotWritableError(InputError, PermissionError):
    """A folder that the run must write into cannot be created or written."""


class OutputExistsError(InputError, FileExistsError):
    """A file or folder that the run would write exists already; it is kept (pass --overwrite)."""


class UnreadableInputError(InputError, RuntimeError):
    """A stored file (a checkpoint) exists but cannot be read."""


class TrainingDivergedError(InputError, FloatingPointError):
    """Training produced non-finite values (most often a learning rate too high for the batch); the
    message names the step and the values. No bug: the code did what the config asked."""


@contextlib.contextmanager
def one_line_errors() -> Iterator[None]:
    """Ends the program with `error: <message>` (exit status 1) on an `InputError` raised inside, and
    with one line and status 130 (128 + SIGINT) on Ctrl-C: a stop the user asked for, not a bug.

    Launchers wrap their `main` in it. `MOFGSEG_TRACEBACK=1` re-raises instead, traceback and all.
    """
    try:
        yield
    except (InputError, KeyboardInterrupt) as e:
        if os.environ.get(TRACEBACK_ENV, "") not in ("", "0"):
            raise
        sys.stdout.flush()
        if isinstance(e, KeyboardInterrupt):
            print("\nstopped by Ctrl-C", file=sys.stderr)  # the newline ends a progress bar's line
            sys.exit(128 + signal.SIGINT)
        sys.exit(f"error: {e}")
