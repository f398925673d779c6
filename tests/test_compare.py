"""launch/compare.py: results read back from TensorBoard events, mean/std tables, the figure, and
(slow) a tiny end-to-end comparison through the real CLI."""

import json
import os
import subprocess
import sys
import time

import numpy as np
import pytest

from mofgseg_jax.experiments import compare, figure

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLASSES = ("a", "b")


def _write_run(workdir, step, student, teacher, *, extra_step=None):
    """A run's event file as the training loop writes it (tensorboardX, the independent writer)."""
    from tensorboardX import SummaryWriter

    w = SummaryWriter(str(workdir))
    w.add_scalar("train/confident_ratio", 0.25, step)
    if extra_step is not None:
        w.add_scalar("eval/student/mIoU", 1.0, extra_step)
        w.add_scalar("eval/teacher/mIoU", 1.0, extra_step)
    for net, miou in (("student", student), ("teacher", teacher)):
        w.add_scalar(f"eval/{net}/mIoU", miou, step)
        for c, v in zip(CLASSES, (miou - 1, miou + 1)):
            w.add_scalar(f"eval/{net}/IoU/{c}", v, step)
    w.close()


def test_run_result_reads_the_last_evaluation_from_tensorboard_events(tmp_path):
    _write_run(tmp_path / "r", 40, 33.5, 35.25, extra_step=20)
    r = compare.run_result(str(tmp_path / "r"), 40)
    assert r["step"] == 40
    assert r["student_miou"] == pytest.approx(33.5) and r["teacher_miou"] == pytest.approx(35.25)
    assert r["teacher_iou"] == pytest.approx({"a": 34.25, "b": 36.25})
    assert r["last_confident_ratio"] == pytest.approx(0.25)


def test_run_without_an_evaluation_at_the_final_step_counts_as_unfinished(tmp_path):
    _write_run(tmp_path / "r", 20, 10.0, 10.0)
    assert compare.run_result(str(tmp_path / "r"), 40) is None
    assert compare.run_result(str(tmp_path / "missing"), 40) is None


def test_finished_runs_are_reused_without_training(tmp_path):
    runs = compare.plan_runs(["sup", "semi"], [0], str(tmp_path))
    for run, miou in zip(runs, (30.0, 36.0)):
        _write_run(run.workdir, 8, miou, miou + 1)
    results = compare.run_all("no/such/config.py", runs, steps=8, echo=lambda *_: None)  # would fail if it trained
    assert [(r["variant"], r["student_miou"], r["reused"]) for r in results] == [("sup", 30.0, True), ("semi", 36.0, True)]


def test_no_train_leaves_unfinished_runs_out_instead_of_training(tmp_path):
    runs = compare.plan_runs(["sup", "semi"], [0, 1], str(tmp_path))
    _write_run(runs[0].workdir, 8, 30.0, 31.0)  # only sup seed 0 finished
    results = compare.run_all("no/such/config.py", runs, steps=8, train_missing=False, echo=lambda *_: None)
    assert [(r["variant"], r["seed"]) for r in results] == [("sup", 0)]


# A stand-in for `launch/train.py`: records the CPU cores it may run on and when it ran, sleeps, then
# writes an evaluation at the final step as the training loop does (`_write_run`).
_FAKE_TRAIN = """
import json, os, sys, time
sys.path.insert(0, {tests!r})
from test_compare import _write_run
workdir, miou = sys.argv[1], float(sys.argv[2])
os.makedirs(workdir, exist_ok=True)
start = time.time()
time.sleep(1.5)
with open(os.path.join(workdir, "ran.json"), "w") as f:
    json.dump({{"cores": sorted(os.sched_getaffinity(0)), "start": start, "end": time.time()}}, f)
_write_run(workdir, 8, miou, miou + 1)
"""

needs_two_cores = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two usable CPU cores")


@needs_two_cores
def test_side_by_side_runs_each_train_pinned_to_one_core_at_the_same_time(tmp_path, monkeypatch):
    script = _FAKE_TRAIN.format(tests=os.path.dirname(os.path.abspath(__file__)))
    mious = {"sup": 30.0, "semi": 36.0}
    monkeypatch.setattr(compare, "train_command", lambda config, run, **_: [
        sys.executable, "-c", script, run.workdir, str(mious[run.variant] + run.seed)])
    cores = sorted(os.sched_getaffinity(0))[:2]
    runs = compare.plan_runs(["sup", "semi"], [0, 1], str(tmp_path))
    results = compare.run_all("configs/demo.py", runs, steps=8, cores=cores, echo=lambda *_: None)

    assert [(r["variant"], r["seed"], r["student_miou"], r["reused"]) for r in results] == [
        ("sup", 0, 30.0, False), ("semi", 0, 36.0, False), ("sup", 1, 31.0, False), ("semi", 1, 37.0, False)]
    ran = [json.loads((tmp_path / f"{r['variant']}_seed{r['seed']}" / "ran.json").read_text()) for r in results]
    assert all(len(r["cores"]) == 1 and r["cores"][0] in cores for r in ran)
    assert ran[0]["cores"] != ran[1]["cores"]  # the first two started together, one per core
    assert ran[1]["start"] < ran[0]["end"] and ran[0]["start"] < ran[1]["end"]
    assert all(r["wall_s"] >= 1.5 for r in results)
    assert all(json.loads((tmp_path / f"{r['variant']}_seed{r['seed']}" / compare.RUN_RECORD).read_text())["wall_s"]
               == r["wall_s"] for r in results)


@needs_two_cores
def test_a_failed_side_by_side_run_stops_the_other_and_raises_with_its_log(tmp_path):
    cores = sorted(os.sched_getaffinity(0))[:2]
    jobs = [([sys.executable, "-c", "import time; time.sleep(60)"], str(tmp_path / "slow.log")),
            ([sys.executable, "-c", "import sys; print('bad input'); sys.exit(3)"], str(tmp_path / "bad.log"))]
    started = time.perf_counter()
    with pytest.raises(RuntimeError, match=r"(?s)exit 3.*bad input"):
        compare.execute_side_by_side(jobs, cores, poll_s=0.1)
    assert time.perf_counter() - started < 30  # the 60 s run was stopped, not waited for


def test_train_command_pins_seed_steps_and_variant():
    run = compare.Run("no_contrast", 2, "/w/no_contrast_seed2")
    cmd = compare.train_command("configs/demo.py", run, steps=300, overrides={"optim.lr": "0.02"},
                                base_variant="smoke", python="py")
    assert cmd[0] == "py" and cmd[1].endswith(os.path.join("launch", "train.py"))
    assert cmd[2:] == ["--config=configs/demo.py:no_contrast,smoke", "--workdir=/w/no_contrast_seed2",
                       "--config.seed=2", "--config.train.num_steps=300", "--config.optim.lr=0.02"]


def test_unknown_variant_is_refused():
    with pytest.raises(ValueError, match="unknown variant 'semii'"):
        compare.plan_runs(["semii"], [0], "/tmp")


def test_an_override_of_a_key_the_variant_sets_is_refused():
    default = {"loss": {"boundary_weight": 0.1, "contrastive_weight": 1.0}, "optim": {"lr": 0.01}}
    no_boundary = {"loss": {"boundary_weight": 0.0, "contrastive_weight": 1.0}, "optim": {"lr": 0.01}}
    variants = {"semi": default, "no_boundary": no_boundary}
    compare.refuse_overrides_of_variant_keys({"optim.lr": "0.02"}, variants, default)  # fine
    with pytest.raises(ValueError, match="--set loss.boundary_weight: the variant 'no_boundary' sets"):
        compare.refuse_overrides_of_variant_keys({"loss.boundary_weight": "0.1"}, variants, default)


def test_the_cli_refuses_to_undo_an_ablation_before_training(tmp_path):
    cmd = [sys.executable, os.path.join(REPO, "launch", "compare.py"), "--variants=sup,no_boundary",
           "--seeds=0", "--set=loss.boundary_weight=0.1", f"--out={tmp_path}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode != 0
    assert "--set loss.boundary_weight: the variant 'no_boundary' sets this key" in done.stderr
    assert "Traceback" not in done.stderr and done.stderr.strip().splitlines()[-1].startswith("error: --set ")
    assert not list(tmp_path.iterdir())  # nothing trained, nothing written


def _fake_results():
    rows = []
    for variant, base in (("sup", 30.0), ("semi", 35.0), ("no_boundary", 33.0)):
        for seed, delta in zip((0, 1, 2), (0.0, 1.0, 5.0)):
            rows.append({"variant": variant, "seed": seed, "student_miou": base + delta,
                         "teacher_miou": base + 2 * delta, "wall_s": 120.0})
    return rows


def test_summary_is_mean_and_sample_std_over_seeds_and_paired_gap():
    summary = compare.summarize(_fake_results(), compare.VARIANTS)
    assert set(summary) == {"sup", "semi", "no_boundary", "gap_semi_minus_sup"}
    assert summary["sup"]["student"]["mean"] == pytest.approx(32.0)
    assert summary["sup"]["student"]["std"] == pytest.approx(np.std([0, 1, 5], ddof=1))
    assert summary["semi"]["teacher"]["values"] == [35.0, 37.0, 45.0]
    gap = summary["gap_semi_minus_sup"]
    assert gap["student"]["values"] == [5.0, 5.0, 5.0] and gap["student"]["std"] == 0.0


def test_results_files_hold_every_seed_and_the_means(tmp_path):
    results = _fake_results()
    summary = compare.summarize(results, compare.VARIANTS)
    json_path, md_path = compare.write_results(str(tmp_path), summary, results, {"command": "python launch/compare.py"})
    with open(json_path) as f:
        data = json.load(f)
    assert len(data["runs"]) == 9 and data["summary"]["semi"]["student"]["mean"] == pytest.approx(37.0)
    with open(md_path) as f:
        md = f.read()
    assert "| supervised only (`:sup`) | 32.00 ± 2.65 |" in md
    assert "**+5.00**" in md and "| `semi` | 35.00 / 35.00, 2.0 min |" in md
    assert "python launch/compare.py" in md


def test_results_show_each_runs_learning_curve_read_from_its_events(tmp_path):
    runs = compare.plan_runs(["sup", "semi"], [0, 1], str(tmp_path / "runs"))
    for run, miou in zip(runs, (30.0, 36.0, 31.0, 37.0)):
        _write_run(run.workdir, 8, miou, miou + 1, extra_step=4)  # mIoU 1.0 at step 4
    results = compare.run_all("no/such/config.py", runs, steps=8, echo=lambda *_: None)
    assert results[1]["student_curve"] == [[4, 1.0], [8, 36.0]]
    md = compare.markdown(compare.summarize(results, ["sup", "semi"]), results, {})
    assert "| variant | 4 | 8 |" in md
    assert "| `sup` | 1.0 / 1.0 | 30.0 / 31.0 |" in md and "| `semi` | 1.0 / 1.0 | 36.0 / 37.0 |" in md


def test_figure_is_a_png_with_bars_and_prediction_grid(tmp_path):
    summary = compare.summarize(_fake_results(), compare.VARIANTS)
    rng = np.random.default_rng(0)
    label = rng.integers(0, 2, (2, 12, 12)).astype(np.uint8)
    grid = {"image": rng.integers(0, 255, (2, 12, 12, 3)).astype(np.uint8), "label": label,
            "columns": [("supervised", label.astype(np.int32)), ("semi", 1 - label.astype(np.int32))]}
    path = figure.draw(str(tmp_path / "f.png"), summary, grid=grid, palette=((255, 0, 0), (0, 0, 255)),
                       class_names=CLASSES, title="t")
    from PIL import Image

    with Image.open(path) as image:
        assert image.format == "PNG" and image.size[0] > 400 and image.size[1] > 200


@pytest.mark.slow
def test_cli_compares_two_variants_end_to_end(tmp_path):
    from mofgseg_jax.data import demo

    root = tmp_path / "data"
    demo.generate(str(root), num_train=32, num_val=4)
    out = tmp_path / "out"
    cmd = [sys.executable, os.path.join(REPO, "launch", "compare.py"), "--variants=sup,semi", "--seeds=0",
           "--base_variant=smoke", "--steps=2", f"--set=data.root={root}", "--set=data.eval_pad_size=96",
           "--grid_images=2", f"--out={out}"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-3000:]
    data = json.loads((out / "results.json").read_text())
    assert {r["variant"] for r in data["runs"]} == {"sup", "semi"}
    assert all(r["step"] == 2 for r in data["runs"])
    assert (out / "comparison.png").stat().st_size > 10_000
    assert "semi − sup" in (out / "results.md").read_text()


def test_an_unknown_variant_is_one_line_naming_the_choices():
    # --variants bogus ended in the config file's ValueError traceback.
    cmd = [sys.executable, os.path.join(REPO, "launch", "compare.py"), "--variants=sup,bogus", "--no_train"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 1 and len(lines) == 1, done.stderr[-3000:]
    assert lines[0].startswith("error: --config configs/demo.py:bogus: unknown config variant 'bogus'; choose from ")
