"""launch/gpu_check.sh picks its runs from RUNS (or BACKBONES x DTYPES x MODES) and refuses bad ones
before it installs or compiles anything. The GPU part itself runs only on a lent GPU machine."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "launch" / "gpu_check.sh"
pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")


def _run(**env):
    return subprocess.run(["bash", str(SCRIPT)], env={**os.environ, "DRY_RUN": "1", **env},
                          capture_output=True, text=True, timeout=60)


def test_default_runs_are_every_backbone_dtype_and_mode_b0_and_sup_first():
    out = _run()
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == [f"{b}:{d}:{m}" for b in ("b0", "b5") for d in ("float32", "bfloat16")
                                  for m in ("sup", "semi")]


def test_runs_keep_the_given_order_and_modes_may_be_comma_separated():
    assert _run(RUNS="b5:bfloat16:semi b0:float32:sup").stdout.split() == ["b5:bfloat16:semi", "b0:float32:sup"]
    assert _run(BACKBONES="b5", DTYPES="bfloat16", MODES="semi,sup").stdout.split() == [
        "b5:bfloat16:semi", "b5:bfloat16:sup"]


def test_a_bad_run_is_one_line_naming_it():
    out = _run(RUNS="b5:bfloat16:semi b5:fp8:sup")
    assert out.returncode == 2 and out.stdout == ""
    assert out.stderr.strip().splitlines() == [
        "gpu_check.sh: RUNS entry 'b5:fp8:sup' is not backbone:dtype:mode (e.g. b5:bfloat16:semi)"]


_FAKE_PYTHON = """#!/usr/bin/env bash
# Stands in for a CUDA python: a GPU is visible, torch is not, and `benchmark.py step` echoes its
# arguments as JSON (and fails for MiT-B5, to check that the script goes on with the next run).
case "$1" in
  -) cat > /dev/null ;;
  -c) case "$2" in *device_count*) echo 1 ;; *torch*) exit 1 ;; esac ;;
  launch/benchmark.py) shift; [[ " $* " == *" --backbone b5 "* ]] && exit 3
     printf '{"args": "%s"}\\n' "$*" ;;
esac
"""


def _fake_python(tmp_path):
    fake = tmp_path / "python"
    fake.write_text(_FAKE_PYTHON)
    fake.chmod(0o755)
    return fake


def test_each_run_writes_its_own_json_and_a_failed_run_does_not_stop_the_rest(tmp_path):
    fake = _fake_python(tmp_path)
    out = tmp_path / "out"
    result = _run(DRY_RUN="", PYTHON=str(fake), SKIP_INSTALL="1", OUT=str(out),
                  RUNS="b5:bfloat16:semi b0:float32:sup b0:bfloat16:semi")
    assert result.returncode == 1  # the B5 run failed
    assert "# step b5 bfloat16 semi FAILED" in result.stderr
    assert sorted(p.name for p in out.iterdir()) == ["step_b0_bfloat16_semi.json", "step_b0_float32_sup.json"]
    args = (out / "step_b0_float32_sup.json").read_text()
    for expected in ("--backbone b0", "--crop 513", "--dtype float32", "--batch-labeled 2", "--batch-unlabeled 2",
                     "--modes sup", "--no-reference"):
        assert expected in args
    assert "--compare" not in args


def test_compare_sets_reach_every_run(tmp_path):
    fake = _fake_python(tmp_path)
    out = tmp_path / "out"
    result = _run(DRY_RUN="", PYTHON=str(fake), SKIP_INSTALL="1", OUT=str(out), RUNS="b0:float32:semi",
                  COMPARE="loss.contrastive_anchor_chunk=8 model.conv3x3=xla,dtype=bfloat16")
    assert result.returncode == 0, result.stderr
    args = (out / "step_b0_float32_semi.json").read_text()
    assert args.endswith("--compare loss.contrastive_anchor_chunk=8 --compare model.conv3x3=xla,dtype=bfloat16\"}\n")
