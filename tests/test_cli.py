"""End to end through the real CLIs: train the demo smoke config, read TensorBoard back, evaluate,
predict; and the clear one-line errors for bad inputs."""

import json
import os
import re
import signal
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO = Path(__file__).resolve().parents[1]


def cli_env(tmp_path_factory) -> dict:
    """2 fake CPU devices, and one persistent compilation cache per test session (the smoke train
    step is compiled once and reused by every test that runs the same program)."""
    env = dict(os.environ)
    env.update(XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def run(args, env, timeout=900):
    return subprocess.run([sys.executable, *args], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return cli_env(tmp_path_factory)


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, env):
    """`python launch/train.py --config configs/demo.py:smoke --workdir W` (demo data generated on
    first use into data.root)."""
    base = tmp_path_factory.mktemp("cli")
    workdir, data_root = base / "run", base / "demo_data"
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(workdir),
                "--config.data.root", str(data_root)], env)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return workdir, data_root, proc


def test_train_cli_writes_config_checkpoints_predictions_and_summary(smoke_run):
    workdir, _, proc = smoke_run
    config = json.loads((workdir / "config.json").read_text())
    assert config["data"]["name"] == "demo" and config["train"]["num_steps"] == 4
    assert (workdir / "checkpoints" / "4").is_dir()
    assert list((workdir / "predictions").glob("step_*.png"))
    assert "student mIoU" in proc.stdout and "tensorboard --logdir" in proc.stdout


def test_tensorboard_events_hold_losses_miou_per_class_iou_and_images(smoke_run):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    workdir, _, _ = smoke_run
    events = EventAccumulator(str(workdir), size_guidance={"images": 0, "scalars": 0}).Reload()
    scalars = set(events.Tags()["scalars"])
    for tag in ("train/loss", "train/supervised_loss", "train/unsupervised_loss", "train/contrastive_loss",
                "train/boundary_loss", "train/lr", "eval/student/mIoU", "eval/teacher/mIoU",
                "eval/student/IoU/stripes_fine", "eval/teacher/IoU/checker"):
        assert tag in scalars, (tag, sorted(scalars))
    assert [e.step for e in events.Scalars("train/loss")] == [2, 4]
    assert "eval/predictions" in events.Tags()["images"]


def test_evaluate_cli_prints_and_writes_miou_json(smoke_run, env, tmp_path):
    workdir, data_root, _ = smoke_run
    out = tmp_path / "eval.json"
    proc = run(["launch/evaluate.py", "--workdir", str(workdir), "--data_root", str(data_root),
                "--output", str(out)], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    assert report["step"] == 4 and report["mode"] == "original"
    assert set(report["student"]["iou"]) == {"smooth", "stripes_fine", "stripes_coarse", "stripes_wavy",
                                             "grain_fine", "grain_coarse", "dots", "checker"}
    # The same checkpoint and data as the evaluation inside training: the same numbers.
    assert json.loads(proc.stdout)["teacher"]["miou"] == report["teacher"]["miou"]
    assert 0 <= report["student"]["miou"] <= 100


def test_predict_cli_writes_palette_and_id_pngs(smoke_run, env, tmp_path):
    from mofgseg_jax.data.specs import load_spec

    workdir, data_root, _ = smoke_run
    images = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[:2]
    proc = run(["launch/predict.py", "--workdir", str(workdir), "--input", ",".join(map(str, images)),
                "--output", str(tmp_path / "pred")], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    palette = {tuple(c) for c in load_spec("demo").palette}
    for image in images:
        ids = np.asarray(Image.open(tmp_path / "pred" / "ids" / (image.stem + ".png")))
        color = np.asarray(Image.open(tmp_path / "pred" / "color" / (image.stem + ".png")).convert("RGB"))
        assert ids.shape == color.shape[:2] == np.asarray(Image.open(image)).shape[:2]
        assert ids.max() < 8
        assert {tuple(c) for c in color.reshape(-1, 3)} <= palette


def test_unknown_config_key_is_a_one_line_error(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path),
                "--config.optim.lrr", "0.1"], env, timeout=120)
    assert proc.returncode != 0
    assert 'Did you mean "lr"' in proc.stderr and "Traceback" not in proc.stderr


def only_line(proc) -> str:
    """The one line a launcher printed on stderr (and failed with)."""
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr[-3000:]
    return lines[0]


def test_a_missing_config_file_is_one_line_and_creates_no_workdir(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/nope.py", "--workdir", str(tmp_path / "run")], env,
               timeout=120)
    assert only_line(proc).startswith("error: --config configs/nope.py: ")
    assert "No such file" in proc.stderr and not (tmp_path / "run").exists()


def test_a_config_file_with_a_syntax_error_is_one_line_naming_it(env, tmp_path):
    config = tmp_path / "broken.py"
    config.write_text("def get_config(:\n")
    proc = run(["launch/train.py", "--config", str(config), "--workdir", str(tmp_path / "run")], env, timeout=120)
    assert only_line(proc).startswith(f"error: --config {config}: SyntaxError: ")
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("variant", ["bogus", "smoke,"])
def test_an_unknown_variant_is_one_line_with_the_choices(env, tmp_path, variant):
    proc = run(["launch/train.py", "--config", f"configs/demo.py:{variant}", "--workdir", str(tmp_path)], env,
               timeout=120)
    assert only_line(proc).startswith(f"error: --config configs/demo.py:{variant}: unknown config variant ")
    assert "choose from semi, sup" in proc.stderr


@pytest.mark.parametrize("key, value", [("loss.ohem", "True"), ("ema.batch_stats", "False")])
def test_a_boolean_override_with_its_value_after_a_space_says_to_write_equals(env, tmp_path, key, value):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                f"--config.{key}", value], env, timeout=120)
    assert only_line(proc) == (f"error: --config.{key} {value}: write --config.{key}={value} "
                               "(a boolean flag takes its value after '=')")
    assert not (tmp_path / "run").exists()


def test_a_literal_override_with_its_value_after_a_space_says_to_write_equals(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                "--config.data.eval_pad_size", "512"], env, timeout=120)
    assert only_line(proc).startswith(
        "error: --config.data.eval_pad_size 512: write --config.data.eval_pad_size=512 (")


def test_a_bad_flag_value_is_one_line(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                "--config.optim.lr", "fast"], env, timeout=120)
    assert only_line(proc).startswith("error: flag --config.optim.lr=fast: could not convert string to float")


def test_a_stray_argument_is_one_line_without_the_usage(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                "stray"], env, timeout=120)
    assert only_line(proc) == "error: unexpected argument stray: every argument is a --flag"


@pytest.mark.parametrize("launcher, missing", [("train", "--config, --workdir"), ("predict", "--input, --output")])
def test_missing_required_flags_are_one_line_naming_them_all(env, tmp_path, launcher, missing):
    # absl's message for a missing --config began `flag --config=None`, read as a bad config file.
    proc = run([f"launch/{launcher}.py"], env, timeout=120)
    assert only_line(proc) == f"error: missing required flags {missing} (--helpshort lists the flags)"
    assert proc.returncode == 1


@pytest.mark.parametrize("args, message", [
    (["launch/convert_weights.py", "--src", "a.pth", "--out", "w", "--overwite"],
     "error: unrecognized arguments: --overwite (did you mean --overwrite? --help lists the flags)"),
    (["launch/make_splits.py"], "error: the following arguments are required: --root (--help lists the flags)"),
    (["launch/make_demo_data.py", "--out", "d", "--num-train", "many"],
     "error: argument --num-train: invalid int value: 'many' (--help lists the flags)"),
    (["launch/prepare_data.py", "--dataset", "demo", "--raw", "r"],
     "error: the following arguments are required: --out (--help lists the flags)"),
    (["launch/compare.py", "--seeds", "a"], "error: --seeds 'a': expected comma-separated integers "
     "(--help lists the flags)"),
    (["launch/benchmark.py", "peak", "--bogus"], "error: unrecognized arguments: --bogus (--help lists the flags)"),
])
def test_the_argparse_launchers_report_a_bad_flag_in_one_line_with_status_1(env, args, message):
    # argparse's own error() printed the usage and exited with 2, unlike every other bad input.
    proc = run(args, env, timeout=120)
    assert only_line(proc) == message and proc.returncode == 1


def test_predict_refuses_a_pad_multiple_under_1(env, tmp_path):
    # 0 and negative values were taken as 1 (unpadded) without a word.
    proc = run(["launch/predict.py", "--workdir", str(tmp_path), "--input", str(tmp_path), "--output",
                str(tmp_path / "out"), "--pad_multiple=0"], env, timeout=120)
    assert only_line(proc) == "error: flag --pad_multiple=0: 0 is not a positive integer (--helpshort lists the flags)"


def test_make_splits_of_a_layout_whose_train_and_val_share_a_folder_is_an_error_line(env, tmp_path):
    (tmp_path / "JPEGImages").mkdir()
    (tmp_path / "JPEGImages" / "a.jpg").write_bytes(b"")
    proc = run(["launch/make_splits.py", "--root", str(tmp_path), "--dataset", "pascal"], env, timeout=120)
    assert only_line(proc) == ("error: --dataset pascal: train and val images share one folder (JPEGImages); "
                               "pass --train-list and --val-list")
    assert not (tmp_path / "splits").exists()


@pytest.mark.parametrize("launcher", ["evaluate", "predict"])
def test_evaluate_and_predict_report_a_mistyped_override_in_one_line(env, tmp_path, launcher):
    proc = run([f"launch/{launcher}.py", "--workdir", str(tmp_path), "--input", str(tmp_path), "--output",
                str(tmp_path / "out"), "--config", "configs/demo.py:smoke", "--config.eval.mdoe", "x"], env, timeout=120)
    assert 'Did you mean "mode"' in only_line(proc)


def test_a_dataset_config_without_its_data_root_is_a_one_line_error(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/uavseg.py:smoke", "--workdir", str(tmp_path / "run")],
               env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data.root is empty: pass --config.data.root")
    assert not (tmp_path / "run").exists()  # found before the workdir is made, as a bad config value


def test_a_malformed_eval_canvas_is_a_one_line_error_before_training(env, tmp_path):
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                "--config.data.eval_pad_size=(96, 0)"], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("error: data.eval_pad_size=(96, 0): expected a positive int")


def test_the_demo_config_never_generates_over_a_data_root_that_holds_other_files(env, tmp_path):
    # A user's dataset whose split lists live elsewhere: it has no splits/val.txt of its own.
    image = tmp_path / "data" / "gt_jpg" / "train" / "a.jpg"
    image.parent.mkdir(parents=True)
    image.write_bytes(b"my photo")
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(tmp_path / "run"),
                "--config.data.root", str(tmp_path / "data")], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {tmp_path / 'data'}: the folder holds files")
    assert [p for p in (tmp_path / "data").rglob("*") if p.is_file()] == [image]
    assert image.read_bytes() == b"my photo"


def test_evaluating_a_folder_that_is_no_run_is_a_one_line_error(env, tmp_path):
    proc = run(["launch/evaluate.py", "--workdir", str(tmp_path)], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line == f"error: --workdir {tmp_path}: no checkpoints/ folder (not a training run?)"


def test_unwritable_workdir_is_a_clear_error(env, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    proc = run(["launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(blocker / "run")],
               env, timeout=300)
    assert proc.returncode != 0
    assert "cannot create or write there" in proc.stderr.strip().splitlines()[-1] and "Traceback" not in proc.stderr


@pytest.mark.slow  # two training processes (~1-3 min); the stop request itself: test_preemption.py
def test_sigterm_saves_the_step_under_way_and_the_same_command_resumes(env, tmp_path):
    workdir = tmp_path / "run"
    command = [sys.executable, "launch/train.py", "--config", "configs/demo.py:smoke", "--workdir", str(workdir),
               "--config.data.root", str(tmp_path / "demo_data"), "--config.train.num_steps", "40",
               "--config.train.eval_every", "40", "--config.train.checkpoint_every", "40"]
    proc = subprocess.Popen(command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log, deadline = workdir / "train.log", time.time() + 600
    while "training 40 steps" not in (log.read_text() if log.exists() else ""):
        assert proc.poll() is None and time.time() < deadline, proc.communicate()[1][-3000:]
        time.sleep(0.2)
    time.sleep(1.0)  # inside the loop, most likely still compiling the first step
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=600)
    assert proc.returncode == 128 + signal.SIGTERM, err[-3000:]
    stopped = int(re.search(r"stopped at step (\d+) on SIGTERM", err).group(1))
    assert 1 <= stopped < 40
    saved = sorted(int(d.name) for d in (workdir / "checkpoints").iterdir() if d.name.isdigit())
    assert saved == [stopped]  # periodic checkpoints come at step 40 only: this one is the stop's

    resumed = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"resumed from {workdir / 'checkpoints'}/{stopped}" in resumed.stderr
    assert (workdir / "checkpoints" / "40").is_dir()


def library_log_lines(stderr: str) -> list[str]:
    """absl-formatted INFO or WARNING lines (`I1207 13:55:37.419 ... file.py:452] ...`), which orbax
    writes (a read-only checkpoint manager warned 'Given directory is read only')."""
    return re.findall(r"^[IW]\d{4} \d\d:\d\d:\d\d.*$", stderr, re.M)


@pytest.mark.parametrize("launcher", ["evaluate", "predict"])
def test_evaluate_and_predict_keep_library_info_logs_off_stderr(smoke_run, env, tmp_path, launcher):
    workdir, data_root, _ = smoke_run
    image = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[0]
    args = {"evaluate": ["--data_root", str(data_root), "--output", str(tmp_path / "eval.json")],
            "predict": ["--input", str(image), "--output", str(tmp_path / "pred")]}[launcher]
    proc = run([f"launch/{launcher}.py", "--workdir", str(workdir), *args], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert library_log_lines(proc.stderr) == []


def test_predict_refuses_two_inputs_with_one_output_name(env, tmp_path):
    for folder, ext in (("a", "jpg"), ("b", "png")):
        (tmp_path / folder).mkdir()
        Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(tmp_path / folder / f"x.{ext}")
    a, b = tmp_path / "a" / "x.jpg", tmp_path / "b" / "x.png"
    proc = run(["launch/predict.py", "--workdir", str(tmp_path), "--input", f"{a},{b}", "--output",
                str(tmp_path / "pred")], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --input {a} and {b} would both be written as x.png; predict them into separate --output folders")
    assert not (tmp_path / "pred").exists()


def test_predict_keeps_existing_outputs_unless_overwrite(smoke_run, env, tmp_path):
    workdir, data_root, _ = smoke_run
    image = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[0]
    earlier = tmp_path / "pred" / "ids" / (image.stem + ".png")
    earlier.parent.mkdir(parents=True)
    earlier.write_bytes(b"an earlier prediction")
    command = ["launch/predict.py", "--workdir", str(workdir), "--input", str(image), "--output",
               str(tmp_path / "pred")]
    proc = run(command, env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --output: {earlier} exists; choose another --output or pass --overwrite (nothing was written)")
    assert earlier.read_bytes() == b"an earlier prediction"
    assert not (tmp_path / "pred" / "color").exists()

    proc = run([*command, "--overwrite"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert np.asarray(Image.open(earlier)).shape == np.asarray(Image.open(image)).shape[:2]


def test_predict_into_an_unwritable_output_is_a_one_line_error(smoke_run, env, tmp_path):
    workdir, data_root, _ = smoke_run
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    image = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[0]
    proc = run(["launch/predict.py", "--workdir", str(workdir), "--input", str(image), "--output",
                str(blocker / "pred")], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(
        f"error: --output {blocker / 'pred'}: cannot create or write there (")


def test_evaluate_checks_an_unwritable_output_before_reading_data(smoke_run, env, tmp_path):
    workdir, _, _ = smoke_run
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    # No data at --data_root: the output error must come first, before any evaluation work.
    proc = run(["launch/evaluate.py", "--workdir", str(workdir), "--data_root", str(tmp_path / "no_data"),
                "--output", str(blocker / "eval.json")], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: --output {blocker}: cannot create or write there (")


def test_evaluate_default_output_names_the_mode_and_replaces_nothing_without_overwrite(smoke_run, env, tmp_path):
    import shutil

    run_dir, data_root, _ = smoke_run
    workdir = tmp_path / "run"
    shutil.copytree(run_dir, workdir)  # the shared run stays as it is
    earlier = workdir / "eval_step4_original.json"
    earlier.write_text("an earlier result")
    command = ["launch/evaluate.py", "--workdir", str(workdir), "--data_root", str(data_root)]
    proc = run(command, env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1] == (
        f"error: --output: {earlier} exists; choose another --output or pass --overwrite (nothing was written)")
    assert earlier.read_text() == "an earlier result"

    proc = run([*command, "--mode", "center_crop"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads((workdir / "eval_step4_center_crop.json").read_text())["mode"] == "center_crop"
    assert earlier.read_text() == "an earlier result"

    proc = run([*command, "--overwrite"], env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(earlier.read_text())["mode"] == "original"


@pytest.mark.parametrize("launcher", ["evaluate", "predict"])
def test_a_config_whose_model_differs_from_the_checkpoint_is_one_line_before_data_and_outputs(
        smoke_run, env, tmp_path, launcher):
    workdir, data_root, _ = smoke_run
    image = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[0]
    # No data at --data_root: the mismatch must be found before the data is read.
    args = {"evaluate": ["--data_root", str(tmp_path / "no_data"), "--output", str(tmp_path / "sub" / "eval.json")],
            "predict": ["--input", str(image), "--output", str(tmp_path / "pred")]}[launcher]
    proc = run([f"launch/{launcher}.py", "--workdir", str(workdir), "--config", "configs/demo.py", *args], env,
               timeout=300)  # the smoke run was trained with configs/demo.py:smoke, a smaller model
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith(
        f"error: --config configs/demo.py: builds another model than the checkpoint {workdir / 'checkpoints' / '4'} ")
    assert "model.dims (16, 32, 80, 128) in the run, (32, 64, 160, 256) given" in last_line
    assert not (tmp_path / "sub").exists() and not (tmp_path / "pred").exists()  # no folder created either


@pytest.mark.parametrize("launcher", ["evaluate", "predict"])
def test_a_config_that_disagrees_with_its_dataset_spec_is_one_line_before_outputs(smoke_run, env, tmp_path, launcher):
    workdir, data_root, _ = smoke_run
    image = sorted((data_root / "gt_jpg" / "val").glob("*.jpg"))[0]
    args = {"evaluate": ["--output", str(tmp_path / "sub" / "eval.json")],
            "predict": ["--input", str(image), "--output", str(tmp_path / "pred")]}[launcher]
    # The same network (8 classes), another dataset's spec (14 classes): found only after the
    # output folders had been created.
    proc = run([f"launch/{launcher}.py", "--workdir", str(workdir), "--config", "configs/demo.py:smoke",
                "--config.data.name=uavseg", f"--config.data.root={data_root}", *args], env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: ") and "dataset has 14 classes but the config says num_classes=8" in last_line
    assert not (tmp_path / "sub").exists() and not (tmp_path / "pred").exists()


def test_evaluate_with_a_canvas_smaller_than_the_validation_images_is_one_line_before_outputs(smoke_run, env,
                                                                                              tmp_path):
    workdir, data_root, _ = smoke_run
    proc = run(["launch/evaluate.py", "--workdir", str(workdir), "--config", "configs/demo.py:smoke",
                f"--config.data.root={data_root}", "--config.data.eval_pad_size=64",
                "--output", str(tmp_path / "sub" / "eval.json")], env, timeout=300)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    last_line = proc.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: data.eval_pad_size=64 (height 64, width 64) is smaller than "), last_line
    assert not (tmp_path / "sub").exists()


def test_predict_decodes_every_input_before_writing_any_output(smoke_run, env, tmp_path):
    workdir, _, _ = smoke_run
    folder = tmp_path / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for name in ("a", "b"):
        Image.fromarray(rng.integers(0, 256, (64, 64, 3), np.uint8)).save(folder / f"{name}.jpg")
    truncated = folder / "b.jpg"
    truncated.write_bytes(truncated.read_bytes()[:600])
    proc = run(["launch/predict.py", "--workdir", str(workdir), "--input", str(folder), "--output",
                str(tmp_path / "pred")], env, timeout=300)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: {truncated} (--input): cannot decode image: ")
    assert not (tmp_path / "pred").exists()  # a.jpg, which decodes, has no prediction written either


def test_evaluate_names_a_data_root_that_is_not_there_before_loading_anything(smoke_run, env, tmp_path):
    # Runs store data.root as given, e.g. the demo's relative 'demo_data': from another folder the
    # split lists were "not found" after the model had loaded; now one line says what to pass.
    workdir, _, _ = smoke_run
    config = json.loads((workdir / "config.json").read_text())
    config["data"]["root"] = "demo_data_elsewhere"
    run_copy = tmp_path / "run"
    shutil.copytree(workdir, run_copy)
    (run_copy / "config.json").write_text(json.dumps(config))
    for step_config in (run_copy / "checkpoints").glob("*/config"):
        shutil.rmtree(step_config)  # the stored config.json is then the run's config
    proc = run(["launch/evaluate.py", "--workdir", str(run_copy), "--output", str(tmp_path / "e.json")], env)
    last = proc.stderr.strip().splitlines()[-1]
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert last.startswith("error: data.root='demo_data_elsewhere' is not a folder here (") and "--data_root" in last
