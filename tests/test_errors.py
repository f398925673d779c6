"""Bad input ends a launcher in one line; everything else keeps its traceback."""

import pytest

from mofgseg_jax.data.errors import DataError
from mofgseg_jax.errors import InputError, InputNotFoundError, OutputExistsError, one_line_errors
from mofgseg_jax.train.checkpoint import ShapeMismatchError
from mofgseg_jax.weights import CheckpointError


def test_an_input_error_becomes_one_error_line(monkeypatch):
    monkeypatch.delenv("MOFGSEG_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        with one_line_errors():
            raise InputNotFoundError("--input x.jpg: no such file or folder")
    assert exit_info.value.code == "error: --input x.jpg: no such file or folder"


def test_ctrl_c_is_one_line_and_exit_status_130(monkeypatch, capsys):
    # predict.py, prepare_data.py, make_demo_data.py ... stopped by Ctrl-C printed a traceback.
    monkeypatch.delenv("MOFGSEG_TRACEBACK", raising=False)
    with pytest.raises(SystemExit) as exit_info:
        with one_line_errors():
            raise KeyboardInterrupt
    assert exit_info.value.code == 130 and capsys.readouterr().err.strip() == "stopped by Ctrl-C"


def test_other_errors_keep_their_traceback(monkeypatch):
    monkeypatch.delenv("MOFGSEG_TRACEBACK", raising=False)
    with pytest.raises(ValueError, match="a bug"):
        with one_line_errors():
            raise ValueError("a bug")


def test_the_traceback_of_an_input_error_on_request(monkeypatch):
    monkeypatch.setenv("MOFGSEG_TRACEBACK", "1")
    with pytest.raises(InputError, match="model.backbone"):
        with one_line_errors():
            raise InputError("model.backbone='b9': unknown MiT preset")


def test_input_errors_are_still_the_builtin_types_callers_catch():
    assert issubclass(InputNotFoundError, FileNotFoundError)
    assert issubclass(OutputExistsError, FileExistsError)
    for error in (DataError, CheckpointError, ShapeMismatchError):
        assert issubclass(error, InputError) and issubclass(error, ValueError)
