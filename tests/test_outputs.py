"""Where launchers write: an output is written whole or not at all, and one that exists is kept."""

import os

import pytest

from mofgseg_jax.errors import OutputExistsError
from mofgseg_jax.outputs import open_new


def test_a_write_stopped_midway_leaves_neither_the_file_nor_a_temporary(tmp_path):
    # predict.py stopped by Ctrl-C inside PNG encoding left a 33-byte ids/<name>.png behind.
    path = tmp_path / "x.png"
    with pytest.raises(KeyboardInterrupt):
        with open_new(str(path), "--output", binary=True) as f:
            f.write(b"\x89PNG half")
            raise KeyboardInterrupt
    assert os.listdir(tmp_path) == []


def test_a_file_that_exists_is_kept_unless_overwrite(tmp_path):
    path = tmp_path / "eval.json"
    path.write_text("earlier")
    with pytest.raises(OutputExistsError, match=f"--output: {path} exists"):
        with open_new(str(path), "--output") as f:
            f.write("new")
    assert path.read_text() == "earlier" and os.listdir(tmp_path) == ["eval.json"]
    with open_new(str(path), "--output", overwrite=True) as f:
        f.write("new")
    assert path.read_text() == "new"


def test_a_written_file_has_the_usual_permissions(tmp_path):
    path = tmp_path / "eval.json"
    with open_new(str(path), "--output") as f:
        f.write("{}")
    mask = os.umask(0)
    os.umask(mask)
    assert os.stat(path).st_mode & 0o777 == 0o666 & ~mask
