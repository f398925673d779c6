"""The training loop: exact resume after SIGKILL, the NaN guard, config checks on resume, pretrained
class-count mismatch."""

import json
import logging
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from configs import demo as demo_config
from mofgseg_jax.errors import InputError
from mofgseg_jax.train import checkpoint as ckpt
from mofgseg_jax.train import loop, stored_config

REPO = Path(__file__).resolve().parents[1]

RUNNER = r'''
"""Trains demo:smoke for 4 steps (checkpoints at 2 and 4), tracing a digest of every batch;
with STALL > 0 it blocks before step STALL + 1 (the test kills it there)."""
import hashlib, os, sys, time
sys.path.insert(0, os.environ["REPO"])
from configs import demo
from mofgseg_jax.train.loop import train_and_evaluate

workdir, data_root, trace, stall = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
config = demo.get_config("smoke")
config.data.root = data_root
config.train.checkpoint_every = 2
config.train.log_every = 1


def hook(step, batch):
    if stall and step > stall:
        open(trace + ".stalled", "w").close()
        time.sleep(3600)
    digest = hashlib.sha1(b"".join(batch[part][key].tobytes() for part in ("labeled", "unlabeled")
                                   for key in sorted(batch[part]))).hexdigest()
    with open(trace, "a") as f:
        f.write(f"{step} {digest}\n")


train_and_evaluate(config, workdir, batch_hook=hook)
'''


def _env(tmp_path_factory):
    env = dict(os.environ)
    env.update(REPO=str(REPO), XLA_FLAGS="--xla_force_host_platform_device_count=2", JAX_PLATFORMS="cpu",
               JAX_COMPILATION_CACHE_DIR=str(tmp_path_factory.getbasetemp() / "jax_cache"),
               JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0", JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES="0")
    return env


def _leaves(workdir, step):
    variables, _, _ = ckpt.restore_variables(str(Path(workdir) / "checkpoints" / str(step)))
    return [np.asarray(x) for x in jax.tree.leaves(variables)]


def test_resume_after_sigkill_is_bitwise_identical_and_sees_the_same_batches(tmp_path, tmp_path_factory):
    env = _env(tmp_path_factory)
    runner = tmp_path / "runner.py"
    runner.write_text(RUNNER)
    data_root = tmp_path / "demo_data"
    from mofgseg_jax.data import demo

    demo.ensure(str(data_root))

    def start(name, stall):
        return subprocess.Popen([sys.executable, str(runner), str(tmp_path / name), str(data_root),
                                 str(tmp_path / f"{name}.trace"), str(stall)], env=env, cwd=REPO,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)

    straight = start("straight", 0)
    _, err = straight.communicate(timeout=900)
    assert straight.returncode == 0, err[-3000:]

    killed = start("resumed", 2)
    deadline = time.time() + 900
    while not ((tmp_path / "resumed.trace.stalled").exists() and (tmp_path / "resumed" / "checkpoints" / "2").is_dir()):
        assert killed.poll() is None, killed.stderr.read()[-3000:]
        assert time.time() < deadline
        time.sleep(0.5)
    killed.send_signal(signal.SIGKILL)
    killed.communicate()  # reaps it and closes its stderr pipe
    assert killed.returncode == -signal.SIGKILL

    resumed = start("resumed", 0)
    _, err = resumed.communicate(timeout=900)
    assert resumed.returncode == 0, err[-3000:]
    assert "resumed from" in err

    straight_trace = (tmp_path / "straight.trace").read_text().split("\n")
    resumed_trace = (tmp_path / "resumed.trace").read_text().split("\n")
    assert straight_trace == resumed_trace and len(straight_trace) == 5  # steps 1..4 (+ trailing '')
    for a, b in zip(_leaves(tmp_path / "straight", 4), _leaves(tmp_path / "resumed", 4)):
        np.testing.assert_array_equal(a, b)  # student and teacher, bitwise


def _smoke_config(tmp_path_factory, variant="smoke"):
    config = demo_config.get_config(variant)
    root = tmp_path_factory.getbasetemp() / "loop_demo_data"
    from mofgseg_jax.data import demo

    demo.ensure(str(root), num_train=64, num_val=8)
    config.data.root = str(root)
    return config


def test_non_finite_loss_stops_with_a_clear_error_and_keeps_the_last_checkpoint(tmp_path, tmp_path_factory,
                                                                              monkeypatch):
    """A step whose loss turns NaN at step 3 (a stand-in for a diverging run): training stops there
    with one clear error, and the checkpoints of steps 1 and 2 are complete and finite."""
    from mofgseg_jax.train import step as step_module

    def nan_from_step_3(config, model):
        def body(state, batch, rng):
            loss = jnp.where(state.step >= 2, jnp.nan, 1.0)
            return state.replace(step=state.step + 1), {"loss": loss, "lr": jnp.zeros(())}
        return body

    monkeypatch.setattr(step_module, "make_train_step", nan_from_step_3)
    config = _smoke_config(tmp_path_factory, "sup,smoke")
    config.train.checkpoint_every = 1
    config.train.log_every = 4  # the guard also runs before every checkpoint, not only at log steps
    # Log window 1-3 (log_every=4): its means are NaN, the first NaN step may be any of the three.
    with pytest.raises(FloatingPointError, match=r"non-finite training metrics at step 3: \{'loss': nan\} "
                                                 r"\(means over steps 1-3\); stopping \(the last checkpoint, "
                                                 r"step 2, is kept\)"):
        loop.train_and_evaluate(config, str(tmp_path))
    assert ckpt.Checkpointer(str(tmp_path)).all_steps() == [1, 2]
    assert all(np.isfinite(x).all() for x in _leaves(tmp_path, 2))


def _counting_step(config, model):
    """A stand-in train step that only counts: the loop's bookkeeping without compiling the model."""
    def body(state, batch, rng):
        return state.replace(step=state.step + 1), {"loss": jnp.ones(()), "lr": jnp.zeros(())}
    return body


def _scores(mious):
    """A stand-in `evaluate` that returns the student mIoU `mious[i]` at its i-th call (raising
    where that is an exception)."""
    calls = iter(mious)

    def evaluate(*args, **kwargs):
        miou = next(calls)
        if isinstance(miou, Exception):
            raise miou
        net = {"miou": miou, "iou": [miou] * 8, "confusion": np.zeros((8, 8), np.int64)}
        return {"student": net, "teacher": net, "kept": []}
    return evaluate


def test_the_best_checkpoint_is_the_best_evaluated_one_with_saves_before_evaluations(
        tmp_path, tmp_path_factory, monkeypatch):
    from mofgseg_jax.train import step as step_module

    monkeypatch.setattr(step_module, "make_train_step", _counting_step)
    monkeypatch.setattr(loop.ev, "evaluate", _scores([10.0, 50.0, 20.0, 30.0]))
    config = _smoke_config(tmp_path_factory, "sup,smoke")
    config.train.eval_every = 1
    config.train.keep_checkpoints = 1
    assert loop.train_and_evaluate(config, str(tmp_path))["best_step"] == 2
    c = ckpt.Checkpointer(str(tmp_path))
    assert c.all_steps() == [2, 4] and c.best_step() == 2  # the best and the latest
    c.close()


def test_a_failing_evaluation_keeps_the_trained_step_and_a_rerun_evaluates_it(tmp_path, tmp_path_factory,
                                                                               monkeypatch):
    """The last step is saved before its evaluation; the same command then resumes at the end,
    evaluates that step and records its mIoU, so that it counts as the best."""
    from mofgseg_jax.train import step as step_module

    monkeypatch.setattr(step_module, "make_train_step", _counting_step)
    monkeypatch.setattr(loop.ev, "evaluate", _scores([RuntimeError("evaluation failed"), 42.0]))
    config = _smoke_config(tmp_path_factory, "sup,smoke")  # 4 steps, evaluated at step 4
    with pytest.raises(RuntimeError, match="evaluation failed"):
        loop.train_and_evaluate(config, str(tmp_path))
    c = ckpt.Checkpointer(str(tmp_path))
    assert c.all_steps() == [4] and c.best_step() is None
    c.close()
    summary = loop.train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 4 and summary["student"]["miou"] == 42.0 and summary["best_step"] == 4


def test_a_mid_run_step_whose_evaluation_failed_is_evaluated_on_resume_and_can_be_the_best(
        tmp_path, tmp_path_factory, monkeypatch):
    """Without the evaluation on resume, step 2 stayed unranked: step 4 was taken for the best and
    the retention policy (latest 1 + best) deleted step 2."""
    from mofgseg_jax.train import step as step_module

    monkeypatch.setattr(step_module, "make_train_step", _counting_step)
    config = _smoke_config(tmp_path_factory, "sup,smoke")  # 4 steps
    config.train.eval_every = 2
    config.train.keep_checkpoints = 1
    monkeypatch.setattr(loop.ev, "evaluate", _scores([RuntimeError("evaluation failed")]))
    with pytest.raises(RuntimeError, match="evaluation failed"):
        loop.train_and_evaluate(config, str(tmp_path))
    monkeypatch.setattr(loop.ev, "evaluate", _scores([50.0, 30.0]))  # step 2, then step 4; no third call
    summary = loop.train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 4 and summary["student"]["miou"] == 30.0 and summary["best_step"] == 2
    c = ckpt.Checkpointer(str(tmp_path))
    assert c.all_steps() == [2, 4] and c.best_step() == 2
    c.close()


def test_resuming_with_a_shape_changing_config_is_refused_by_name(tmp_path, tmp_path_factory):
    config = _smoke_config(tmp_path_factory)
    (tmp_path / "config.json").write_text(json.dumps(stored_config.config_to_dict(config)))
    c = ckpt.Checkpointer(str(tmp_path))
    c.save(1, {"x": jnp.zeros(2)})
    c.close()
    config.model.eam_mid_dim = 16  # (another class count is refused before, by the dataset's spec)
    with pytest.raises(ValueError, match=r"changes parameter shapes \(model.eam_mid_dim: 256 -> 16\)"):
        loop.train_and_evaluate(config, str(tmp_path))


def test_a_refused_resume_leaves_the_stored_config_as_it_was(tmp_path, tmp_path_factory):
    """The checkpoint holds another model: each attempt is refused when it is restored, after the
    config check passed (only the seed differs), and config.json stays the one it was trained with."""
    config = _smoke_config(tmp_path_factory)
    stored = json.dumps(stored_config.config_to_dict(config))
    (tmp_path / "config.json").write_text(stored)
    c = ckpt.Checkpointer(str(tmp_path))
    c.save(1, {"x": jnp.zeros(2)})
    c.close()
    for seed in (1, 2):  # a second refused attempt must not replace what the first kept either
        config.seed = seed
        with pytest.raises(ckpt.ShapeMismatchError):
            loop.train_and_evaluate(config, str(tmp_path))
    assert (tmp_path / "config.json").read_text() == stored
    assert not list(tmp_path.glob("config.previous*"))


def _write_config(config_dict: dict, workdir: str, *, resuming: bool) -> None:
    """What training does with its config, once the run has passed its other checks."""
    differs = stored_config.check_stored_config(config_dict, workdir, resuming=resuming)
    stored_config.save_config(config_dict, workdir, differs=differs)


def test_a_model_key_added_since_a_run_resumes_at_its_default_and_is_refused_otherwise(tmp_path):
    # A config.json written before `model.eam_mid_dim` existed: the network then had width 256.
    _write_config({"model": {"num_classes": 8}}, str(tmp_path), resuming=False)
    _write_config({"model": {"num_classes": 8, "eam_mid_dim": 256}}, str(tmp_path), resuming=True)
    _write_config({"model": {"num_classes": 8}}, str(tmp_path), resuming=False)
    with pytest.raises(ValueError, match=r"changes parameter shapes \(model.eam_mid_dim: '<absent>' -> 64\)"):
        _write_config({"model": {"num_classes": 8, "eam_mid_dim": 64}}, str(tmp_path), resuming=True)
    _write_config({"model": {"num_classes": 8, "eam_mid_dim": 256}}, str(tmp_path), resuming=False)
    with pytest.raises(ValueError, match=r"changes parameter shapes \(model.eam_mid_dim: 256 -> 64\)"):
        _write_config({"model": {"num_classes": 8, "eam_mid_dim": 64}}, str(tmp_path), resuming=True)


def test_the_new_architecture_keys_resume_at_their_defaults_from_a_config_that_lacks_them(tmp_path):
    # A config.json written before model.num_heads / sr_ratios / mlp_ratio / eam_low_dim / eam_high_dim.
    _write_config({"model": {"num_classes": 8}}, str(tmp_path), resuming=False)
    _write_config({"model": {"num_classes": 8, "num_heads": [], "sr_ratios": [], "mlp_ratio": 0.0,
                             "eam_low_dim": 64, "eam_high_dim": 256}}, str(tmp_path), resuming=True)


@pytest.mark.parametrize("key, new", [("sr_ratios", [4, 4, 2, 1]), ("mlp_ratio", 2.0), ("eam_low_dim", 32),
                                      ("eam_high_dim", 128)])
def test_resuming_with_a_changed_architecture_key_is_refused_as_a_shape_change(tmp_path, key, new):
    _write_config({"model": {"num_classes": 8}}, str(tmp_path), resuming=False)
    with pytest.raises(InputError, match=rf"changes parameter shapes \(model.{key}: '<absent>' -> "):
        _write_config({"model": {"num_classes": 8, key: new}}, str(tmp_path), resuming=True)


def test_resuming_with_other_attention_heads_is_refused_as_another_network_not_another_shape(tmp_path):
    _write_config({"model": {"num_classes": 8, "num_heads": []}}, str(tmp_path), resuming=False)
    with pytest.raises(InputError, match=r"changes what the parameters mean \(model.num_heads: \[\] -> \[1, 1, 1, 1\]\)"):
        _write_config({"model": {"num_classes": 8, "num_heads": [1, 1, 1, 1]}}, str(tmp_path), resuming=True)


def test_a_stage_key_spelled_out_as_its_presets_values_resumes_as_the_same_network(tmp_path):
    # b0's heads (1, 2, 5, 8), widths and depths, given explicitly where the run had () = the preset's.
    _write_config({"model": {"backbone": "b0", "num_classes": 8, "num_heads": [], "dims": [], "depths": []}},
                  str(tmp_path), resuming=False)
    _write_config({"model": {"backbone": "b0", "num_classes": 8, "num_heads": [1, 2, 5, 8],
                             "dims": [32, 64, 160, 256], "depths": [2, 2, 2, 2]}}, str(tmp_path), resuming=True)
    with pytest.raises(InputError, match=r"\(model.depths: \[2, 2, 2, 2\] -> \[2, 2, 2, 3\]\)"):
        _write_config({"model": {"backbone": "b0", "num_classes": 8, "depths": [2, 2, 2, 3]}}, str(tmp_path),
                      resuming=True)


def test_rep_at_stride4_changes_no_parameter_shape_so_resuming_with_it_changed_is_allowed(tmp_path):
    from mofgseg_jax.models import build_model  # noqa: PLC0415

    def shapes(stride4):
        model = build_model(dict(backbone="b0", num_classes=8, rep_at_stride4=stride4))
        return jax.tree.map(lambda s: s.shape, jax.eval_shape(
            lambda x: model.init({"params": jax.random.key(0)}, x), jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)))

    assert shapes(True) == shapes(False)
    _write_config({"model": {"num_classes": 8, "rep_at_stride4": True}}, str(tmp_path), resuming=False)
    _write_config({"model": {"num_classes": 8, "rep_at_stride4": False}}, str(tmp_path), resuming=True)
    assert json.loads((tmp_path / "config.previous.json").read_text())["model"]["rep_at_stride4"] is True


def test_a_corrupt_stored_config_is_a_one_line_error_and_left_in_place(tmp_path):
    (tmp_path / "config.json").write_text('{"optim": {"lr": 0.')  # an interrupted write
    with pytest.raises(ValueError, match=r"config.json: cannot read the stored config"):
        _write_config({"optim": {"lr": 0.1}}, str(tmp_path), resuming=True)
    assert (tmp_path / "config.json").read_text() == '{"optim": {"lr": 0.'


def test_a_changed_config_keeps_the_previous_one_beside_it(tmp_path):
    _write_config({"optim": {"lr": 0.1}}, str(tmp_path), resuming=False)
    _write_config({"optim": {"lr": 0.2}}, str(tmp_path), resuming=True)
    assert json.loads((tmp_path / "config.json").read_text()) == {"optim": {"lr": 0.2}}
    assert json.loads((tmp_path / "config.previous.json").read_text()) == {"optim": {"lr": 0.1}}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["config.json", "config.previous.json"]
    _write_config({"optim": {"lr": 0.3}}, str(tmp_path), resuming=True)  # the first one stays too
    assert json.loads((tmp_path / "config.previous.json").read_text()) == {"optim": {"lr": 0.1}}
    assert json.loads((tmp_path / "config.previous.1.json").read_text()) == {"optim": {"lr": 0.2}}
    assert json.loads((tmp_path / "config.json").read_text()) == {"optim": {"lr": 0.3}}


@pytest.mark.parametrize("key, value, message", [
    ("data.eval_batch_size", 0, "data.eval_batch_size=0: expected an integer > 0"),
    ("data.scale_range", (2.0,), "data.scale_range=(2.0,): expected two numbers (low, high)"),
    ("augment.mix_mode", "bogus", "augment.mix_mode='bogus': choose from"),
    ("loss.edge_connectivity", 5, "loss.edge_connectivity=5: choose from 4, 8"),
    # The spec's ignore label pads the masks, the config's is the one the losses skip.
    ("data.ignore_index", 0, "data.ignore_index=0 differs from"),
    ("train.compilation_cache", "/proc/xla", "train.compilation_cache='/proc/xla': cannot create /proc/xla"),
])
def test_a_bad_config_value_stops_training_before_the_workdir_is_touched(tmp_path, key, value, message):
    config = demo_config.get_config("smoke")
    section, name = key.split(".")
    config[section][name] = value
    with pytest.raises(InputError, match="^" + re.escape(message)):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_more_accumulation_steps_than_steps_is_refused_before_the_workdir_is_touched(tmp_path, tmp_path_factory):
    config = _smoke_config(tmp_path_factory)  # 4 steps
    config.optim.accumulate_steps = 8  # optax.MultiSteps would never update: a run that trains nothing
    with pytest.raises(InputError, match=r"^optim.accumulate_steps=8: more than the 4 steps this config trains"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_validation_images_larger_than_the_eval_canvas_are_refused_before_the_workdir_is_touched(
        tmp_path, tmp_path_factory):
    # Found by the first evaluation before: after a whole evaluation interval of training.
    config = _smoke_config(tmp_path_factory)  # 96 x 96 demo images, 8 in val.txt
    config.data.eval_pad_size = (96, 64)
    with pytest.raises(InputError, match=r"^data.eval_pad_size=\(96, 64\) \(height 96, width 64\) is smaller than 8 "
                                         r"validation image\(s\), first gt_jpg/val/\S+ \(\S+val.txt line 1\) of "
                                         r"height 96, width 96; set it to at least \(96, 96\)$"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_accumulation_steps_that_do_not_divide_the_run_warn_of_the_unapplied_remainder(tmp_path_factory, caplog):
    config = _smoke_config(tmp_path_factory)  # 4 steps
    config.optim.accumulate_steps = 3  # one update from steps 1-3; step 4's gradients are never applied
    with caplog.at_level(logging.WARNING, logger="mofgseg"):
        assert loop._run_length(config)[0] == 4
    assert "optim.accumulate_steps=3 does not divide the 4 steps: the gradients of the last 1 are" in caplog.text
    caplog.clear()
    config.optim.accumulate_steps = 2
    with caplog.at_level(logging.WARNING, logger="mofgseg"):
        loop._run_length(config)
    assert "accumulate_steps" not in caplog.text


def test_a_batch_that_does_not_split_over_the_devices_is_refused_before_the_workdir_is_touched(
        tmp_path, tmp_path_factory):
    assert jax.device_count() == 2  # conftest's two fake CPU devices
    config = _smoke_config(tmp_path_factory)
    config.data.batch_size_unlabeled = 3
    with pytest.raises(InputError, match=r"^data.batch_size_unlabeled=3 \(global\) must be a multiple of the 2 "):
        loop.train_and_evaluate(config, str(tmp_path / "run"))
    assert not (tmp_path / "run").exists()


def test_config_differences_lists_changed_keys():
    old = {"optim": {"lr": 0.1}, "model": {"dims": [1, 2]}}
    new = {"optim": {"lr": 0.2}, "model": {"dims": [1, 2]}, "seed": 1}
    assert stored_config.config_differences(old, new) == {"optim.lr": (0.1, 0.2), "seed": ("<absent>", 1)}


def test_pretrained_weights_with_another_class_count_are_a_clear_error(tmp_path, tmp_path_factory):
    from mofgseg_jax.models import build_model
    from mofgseg_jax.weights import save_converted

    config = _smoke_config(tmp_path_factory)
    other = dict(config.model.to_dict(), num_classes=3)
    model = build_model(other)
    shapes = jax.eval_shape(lambda k: model.init({"params": k, "dropout": k}, jnp.zeros((1, 64, 64, 3)),
                                                 train=False), jax.random.PRNGKey(0))
    save_converted(tmp_path / "pretrained", jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), dict(shapes)), {})
    config.model.pretrained = str(tmp_path / "pretrained")
    with pytest.raises(Exception, match=r"class count differs.*reinit_classifier"):
        loop.train_and_evaluate(config, str(tmp_path / "run"))


# Slow (~1.5 min on an AVX2 CI host); `.ci/run` runs it after the default suite, which keeps the
# step-level check that pmap mode computes what shard_map mode does (test_train_step).
@pytest.mark.slow
def test_pmap_mode_trains_evaluates_and_checkpoints_end_to_end(tmp_path, tmp_path_factory):
    """The loop under `parallel.mode='pmap'` (2 fake devices): replicated state in, single-copy
    checkpoints and an evaluation out."""
    config = _smoke_config(tmp_path_factory)
    config.parallel.mode = "pmap"
    config.train.num_steps = 2
    config.train.eval_every = 2
    summary = loop.train_and_evaluate(config, str(tmp_path))
    assert summary["step"] == 2
    assert ckpt.Checkpointer(str(tmp_path)).all_steps() == [2]
    assert 0.0 <= summary["teacher"]["miou"] <= 100.0
    # Saved as one copy with the model's own shapes, not stacked per device.
    from mofgseg_jax.models import build_model
    from mofgseg_jax.train.state import host_init_shapes

    variables, _, _ = ckpt.restore_variables(str(tmp_path / "checkpoints" / "2"))
    expected = jax.eval_shape(lambda: host_init_shapes(build_model(config.model), (1, 64, 64, 3)))
    for copy in ("student", "teacher"):
        assert jax.tree.map(np.shape, variables[copy]["params"]) == jax.tree.map(np.shape, expected["params"])
    assert all(np.isfinite(x).all() for x in _leaves(tmp_path, 2))


def test_an_epoch_of_a_sup_run_is_a_pass_over_the_labelled_split(tmp_path_factory):
    # The method's epoch is a pass over unlabeled.txt (DESIGN.md §5); the published supervised
    # baseline (train_baseline_sup.py) iterates only its labelled loader: total = len(loader) * epochs.
    semi, sup = _smoke_config(tmp_path_factory), _smoke_config(tmp_path_factory, "sup,smoke")
    for config in (semi, sup):
        config.train.num_steps, config.train.num_epochs, config.train.eval_every = 0, 3, 0
    lists = f"{semi.data.root}/splits/{semi.data.split}"
    sizes = {part: sum(1 for line in Path(f"{lists}/{part}.txt").read_text().splitlines() if line.strip())
             for part in ("labeled", "unlabeled")}
    semi_epoch = sizes["unlabeled"] // semi.data.batch_size_unlabeled
    sup_epoch = sizes["labeled"] // sup.data.batch_size_labeled
    assert sup_epoch < semi_epoch
    assert loop._run_length(semi)[:3] == (3 * semi_epoch, semi_epoch, semi_epoch)
    assert loop._run_length(sup)[:3] == (3 * sup_epoch, sup_epoch, sup_epoch)


def test_a_second_run_on_a_workdir_in_training_is_refused_before_it_writes(tmp_path, tmp_path_factory):
    from mofgseg_jax.train import workdir_lock

    held = workdir_lock.acquire(str(tmp_path))  # as a first run in another process holds it
    with pytest.raises(InputError, match=r"a training run is using it"):
        loop.train_and_evaluate(_smoke_config(tmp_path_factory), str(tmp_path))
    held.release()
    assert sorted(p.name for p in tmp_path.iterdir()) == [workdir_lock.LOCK_FILE]  # no log, config, checkpoints


def test_every_process_refuses_a_users_folder_as_demo_data(tmp_path, monkeypatch):
    # Process 0 alone used to check: the others waited at the barrier for ever when it refused.
    from mofgseg_jax.errors import OutputExistsError

    (tmp_path / "notes.txt").write_text("a user's file")
    config = demo_config.get_config("smoke")
    config.data.root = str(tmp_path)
    monkeypatch.setattr(jax, "process_index", lambda: 1)
    with pytest.raises(OutputExistsError, match="not a demo dataset"):
        loop._prepare_demo_data(config)
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_resuming_past_the_configs_last_step_is_refused_and_keeps_the_config(tmp_path, tmp_path_factory,
                                                                             monkeypatch):
    # E.g. a ':sup' run by epochs started before its epoch became a pass over the labelled split:
    # resuming it at a shorter length would silently cut it short.
    from mofgseg_jax.train import step as step_module

    monkeypatch.setattr(step_module, "make_train_step", _counting_step)
    monkeypatch.setattr(loop.ev, "evaluate", _scores([10.0]))
    config = _smoke_config(tmp_path_factory, "sup,smoke")  # 4 steps
    loop.train_and_evaluate(config, str(tmp_path))
    stored = (tmp_path / "config.json").read_text()
    config.train.num_steps = 2
    with pytest.raises(InputError, match=r"the run is at step 4, past the 2 steps this config trains"):
        loop.train_and_evaluate(config, str(tmp_path))
    assert (tmp_path / "config.json").read_text() == stored
