"""What the launchers share: flag parsing in which every bad flag, override or config file is one
line, and quiet library logs. The absl launchers that take `--config` (launch/train.py, evaluate.py,
predict.py) use `parse_flags` and `run`; the argparse ones use `ArgumentParser`.

`parse_flags` also loads the config file: ml_collections defers some load errors until the config is
first used, which in train.py came after train.log had been created.
"""

from __future__ import annotations

import argparse
import difflib
import re
import sys
from typing import Callable

from absl import app, flags

# Words that a bare boolean flag leaves over: absl reads `--config.loss.ohem False` as
# `--config.loss.ohem` (True) and a positional argument 'False'.
_BOOLEAN_WORDS = ("true", "false")


def parse_flags(argv: list[str]) -> list[str]:
    """absl parsing of `argv` plus the config file; exits with one line, `error: ...`, on a bad
    flag, override, config file or left-over argument, before the launcher creates anything."""
    try:
        rest = flags.FLAGS(argv)
        if "config" in flags.FLAGS and flags.FLAGS.config is not None:
            flags.FLAGS.config.keys()  # raises the OSError that ml_collections deferred
    except (OSError, SyntaxError) as e:
        _exit(f"--config {_config_argument(argv)}: {_reason(e)}")
    except flags.Error as e:
        missing = re.findall(r"Flag (--\w+) must have a value other than None", str(e))
        if missing:  # mark_flags_as_required: one message per flag, the first --config's if it is missing
            _exit(f"missing required flag{'s' if len(missing) > 1 else ''} {', '.join(missing)} "
                  "(--helpshort lists the flags)")
        # absl reports a config file's ValueError/TypeError as `flag --config=...: <traceback text>`.
        if str(e).startswith("flag --config="):
            _exit(f"--config {_config_argument(argv)}: {_reason(e)}")
        _exit(f"{' '.join(str(e).split())} (--helpshort lists the flags)")
    except (AttributeError, KeyError, ValueError, TypeError) as e:
        bad = [a for a in argv[1:] if a.startswith("--config.")]
        message = " ".join(str(e).replace("\\n", "\n").replace("\\'", "").replace("'", "").split())
        _exit(f"bad --config override ({' '.join(bad) or 'in the config file'}): unknown key or value: {message}")
    if len(rest) > 1:
        _exit(_leftover(argv, rest[1:]))
    return rest


def _exit(message: str) -> None:
    sys.exit(f"error: {message}")


class ArgumentParser(argparse.ArgumentParser):
    """argparse for the launchers without `--config`: a bad flag is one line, `error: ...` (exit
    status 1, as every other bad input), where argparse prints its usage and exits with 2; an
    unknown flag names the closest known one, as absl does."""

    def error(self, message: str) -> None:  # type: ignore[override]
        hint = "--help lists the flags"
        match = re.match(r"unrecognized arguments: (-\S+)", message)
        close = match and difflib.get_close_matches(match[1].split("=")[0], list(self._option_string_actions), n=1)
        if close:
            hint = f"did you mean {close[0]}? {hint}"
        _exit(f"{message} ({hint})")


def _config_argument(argv: list[str]) -> str:
    """The value given to --config (`path[:variant]`)."""
    for i, arg in enumerate(argv):
        if re.match(r"--?config=", arg):
            return arg.split("=", 1)[1]
        if re.fullmatch(r"--?config", arg) and i + 1 < len(argv):
            return argv[i + 1]
    return "?"


def _reason(e: BaseException) -> str:
    """The innermost exception's last line: the config file's own message (e.g. "unknown config
    variant 'x'"), not the traceback text that ml_collections and absl wrap around it."""
    while (e.__cause__ or e.__context__) is not None:
        e = e.__cause__ or e.__context__
    if isinstance(e, SyntaxError):
        return f"{type(e).__name__}: {e}"
    lines = [line.strip() for line in str(e).splitlines() if line.strip()]
    return lines[-1] if lines else type(e).__name__


def _leftover(argv: list[str], rest: list[str]) -> str:
    """One line on arguments that no flag took; names the usual cause, a value after a space where
    the flag takes it after '=' only (a bool, or a key that takes any Python literal)."""
    for i in range(2, len(argv)):
        word, before = argv[i], argv[i - 1]
        name = before.lstrip("-")
        if (word in rest and before.startswith("-") and "=" not in before and name in flags.FLAGS
                and flags.FLAGS[name].boolean):
            fixed = f"write {before}={word}"
            if word.lower() in _BOOLEAN_WORDS:
                return f"{before} {word}: {fixed} (a boolean flag takes its value after '=')"
            return f"{before} {word}: {fixed} (this key takes its value after '='; alone it means True)"
    return f"unexpected argument{'s' if len(rest) > 1 else ''} {' '.join(rest)}: every argument is a --flag"


def setup_logging() -> None:
    """Our progress and results (the 'mofgseg' logger) at INFO on stderr; libraries' absl logs
    (orbax logs every checkpoint it opens or saves at INFO) at WARNING."""
    import logging as py_logging  # noqa: PLC0415

    from absl import logging  # noqa: PLC0415

    logging.set_verbosity(logging.WARNING)
    ours = py_logging.getLogger("mofgseg")
    if not ours.handlers:
        handler = py_logging.StreamHandler(sys.stderr)
        handler.setFormatter(py_logging.Formatter("%(asctime)s %(message)s", "%H:%M:%S"))
        ours.addHandler(handler)
    ours.setLevel(py_logging.INFO)
    ours.propagate = False


def config_source() -> str:
    """How messages name the config: `--config <file[:variant]>`, or the run's stored copy."""
    if "config" in flags.FLAGS and flags.FLAGS.config is not None:
        return f"--config {flags.FLAGS['config'].config_filename}"
    return "the run's stored config"


def run(main: Callable[[list[str]], int | None]) -> None:
    """A launcher's `if __name__ == '__main__'`: `main` under absl with `parse_flags`, input errors
    as one line (`errors.one_line_errors`)."""
    from mofgseg_jax.errors import one_line_errors  # noqa: PLC0415
    from mofgseg_jax.train.host_memory import reexec_with_huge_page_malloc  # noqa: PLC0415

    reexec_with_huge_page_malloc()  # before any work: glibc reads its tunables at start only
    with one_line_errors():
        app.run(main, flags_parser=parse_flags)
