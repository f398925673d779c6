"""The procedural demo dataset: deterministic, published raw layout, valid masks, splits."""

import hashlib
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mofgseg_jax.data import demo
from mofgseg_jax.data.specs import load_spec
from mofgseg_jax.data.splits import read_list, split_files
from mofgseg_jax.errors import InputNotWritableError, OutputExistsError

REPO = Path(__file__).resolve().parents[1]


def _digest(root):
    h = hashlib.sha256()
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        h.update(str(path.relative_to(root)).encode() + path.read_bytes())
    return h.hexdigest()


def test_generation_is_deterministic_and_seed_dependent(tmp_path):
    kwargs = dict(num_train=6, num_val=2, size=32, ratios=("1_2",))
    demo.generate(str(tmp_path / "a"), seed=1, **kwargs)
    demo.generate(str(tmp_path / "b"), seed=1, **kwargs)
    demo.generate(str(tmp_path / "c"), seed=2, **kwargs)
    assert _digest(tmp_path / "a") == _digest(tmp_path / "b") != _digest(tmp_path / "c")


def test_layout_masks_and_splits(tmp_path):
    summary = demo.generate(str(tmp_path), num_train=32, num_val=4, size=48)
    spec = load_spec("demo")
    assert summary["classes"] == list(spec.class_names)
    assert sorted(p.name for p in (tmp_path / "gt_jpg" / "train").iterdir())[0] == "00000.jpg"
    mask = np.asarray(Image.open(tmp_path / "label_png" / "val" / "00003.png"))
    image = np.asarray(Image.open(tmp_path / "gt_jpg" / "val" / "00003.jpg"))
    assert mask.shape == (48, 48) and image.shape == (48, 48, 3) and mask.max() < spec.num_classes
    for ratio, n in (("1_16", 2), ("1_8", 4), ("1_4", 8), ("all", 32)):
        files = split_files(str(tmp_path), ratio)
        labeled = {e.image for e in read_list(files["labeled"])}
        unlabeled = {e.image for e in read_list(files["unlabeled"])}
        assert len(labeled) == n
        assert (labeled | unlabeled) == {f"gt_jpg/train/{i:05d}.jpg" for i in range(32)}
        assert ratio == "all" or not labeled & unlabeled
    assert len(read_list(files["val"])) == 4


def test_every_class_appears(tmp_path):
    summary = demo.generate(str(tmp_path), num_train=24, num_val=1, size=48, ratios=("1_2",))
    assert all(f > 0.03 for f in summary["class_pixel_fraction"])


def test_ensure_generates_only_when_missing(tmp_path):
    assert demo.ensure(str(tmp_path / "d"), num_train=4, num_val=1, size=16, ratios=("1_2",))
    assert not demo.ensure(str(tmp_path / "d"), num_train=4, num_val=1, size=16, ratios=("1_2",))


def test_generation_refuses_a_folder_that_holds_files_and_writes_nothing(tmp_path):
    # A user's dataset whose split lists live elsewhere (data.split_dir): no splits/val.txt in it.
    user = tmp_path / "mine"
    (user / "gt_jpg" / "train").mkdir(parents=True)
    (user / "gt_jpg" / "train" / "00000.jpg").write_bytes(b"my photo")
    for write in (lambda: demo.generate(str(user), num_train=2, num_val=1, size=16, ratios=("1_2",)),
                  lambda: demo.ensure(str(user), num_train=2, num_val=1, size=16, ratios=("1_2",))):
        with pytest.raises(OutputExistsError, match=rf"^{re.escape(str(user))}: the folder holds files"):
            write()
    assert sorted(str(p.relative_to(user)) for p in user.rglob("*")) == ["gt_jpg", "gt_jpg/train",
                                                                         "gt_jpg/train/00000.jpg"]
    assert (user / "gt_jpg" / "train" / "00000.jpg").read_bytes() == b"my photo"


def test_overwrite_generates_into_a_folder_that_holds_files(tmp_path):
    (tmp_path / "notes.txt").write_text("kept")
    demo.generate(str(tmp_path), overwrite=True, num_train=2, num_val=1, size=16, ratios=("1_2",))
    assert (tmp_path / "notes.txt").read_text() == "kept" and (tmp_path / "splits" / "val.txt").is_file()
    assert not demo.ensure(str(tmp_path))  # complete: its marker says so


def test_ensure_accepts_a_demo_dataset_written_before_the_marker_existed(tmp_path):
    demo.generate(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))
    (tmp_path / demo.MARKER_FILE).unlink()
    before = _digest(tmp_path)
    assert not demo.ensure(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))
    assert _digest(tmp_path) == before


def test_ensure_generates_again_over_an_interrupted_generation(tmp_path):
    demo.generate(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))
    complete = _digest(tmp_path)
    marker = tmp_path / demo.MARKER_FILE
    marker.write_text(marker.read_text().replace('"complete": true', '"complete": false'))
    (tmp_path / "splits" / "val.txt").unlink()  # stopped before the split lists
    assert demo.ensure(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))
    assert _digest(tmp_path) == complete


def test_a_root_that_cannot_be_created_is_one_line_naming_it(tmp_path):
    # make_demo_data.py --out on a read-only file system (and training's data.root) ended in makedirs'
    # traceback; a path below a file fails the same way without root's privileges.
    (tmp_path / "a_file").write_text("kept")
    root = tmp_path / "a_file" / "demo"
    with pytest.raises(InputNotWritableError, match=rf"^--out {re.escape(str(root))}: cannot create or write"):
        demo.generate(str(root), num_train=2, num_val=1, size=16, ratios=("1_2",), flag="--out")
    with pytest.raises(InputNotWritableError, match=rf"^data.root {re.escape(str(root))}: "):
        demo.ensure(str(root), num_train=2, num_val=1, size=16, ratios=("1_2",))


def test_a_stopped_generation_is_refused_as_such_not_as_a_foreign_folder(tmp_path):
    demo.generate(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))
    marker = tmp_path / demo.MARKER_FILE
    marker.write_text(marker.read_text().replace('"complete": true', '"complete": false'))
    with pytest.raises(OutputExistsError, match="holds a demo generation that was stopped or is still running"):
        demo.generate(str(tmp_path), num_train=2, num_val=1, size=16, ratios=("1_2",))


def test_make_demo_data_refuses_a_folder_that_holds_files_unless_overwrite(tmp_path):
    (tmp_path / "notes.txt").write_text("kept")
    command = [sys.executable, "launch/make_demo_data.py", "--out", str(tmp_path), "--num-train", "2",
               "--num-val", "1", "--size", "16", "--splits", "1_2"]
    proc = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 1 and proc.stderr.startswith(f"error: {tmp_path}: the folder holds files")
    assert "Traceback" not in proc.stderr and sorted(p.name for p in tmp_path.iterdir()) == ["notes.txt"]
    proc = subprocess.run(command + ["--overwrite"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "notes.txt").read_text() == "kept" and (tmp_path / "splits" / "val.txt").is_file()
