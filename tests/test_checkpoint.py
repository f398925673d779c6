"""Checkpoints: retention (latest N + best), iterator state, damaged checkpoints, clear errors."""

import glob
import logging
import os
import re
import shutil

import jax
import jax.numpy as jnp
import pytest

from mofgseg_jax.train import checkpoint as ckpt

STATE = {"params": {"w": jnp.ones((3, 4)), "b": jnp.arange(5, dtype=jnp.float32)}, "step": jnp.zeros((), jnp.int32)}


def _scaled(s):
    return jax.tree.map(lambda x: x * s, STATE)


def _write(workdir, mious, keep=2):
    c = ckpt.Checkpointer(str(workdir), keep=keep)
    for step, miou in enumerate(mious, start=1):
        c.save(step, _scaled(step), data_state={"next_index": step * 10}, config={"seed": 0},
               metrics={"miou": miou})
    c.close()


def test_keeps_the_latest_n_and_the_best_by_miou(tmp_path):
    _write(tmp_path, [10.0, 50.0, 20.0, 30.0, 15.0, 12.0], keep=2)
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    assert c.all_steps() == [2, 5, 6]  # best (step 2) + latest two
    assert c.best_step() == 2 and c.latest_step() == 6
    c.close()


def test_metrics_recorded_after_a_save_rank_steps_as_metrics_given_to_it(tmp_path):
    # Training saves a step, evaluates it, then records its mIoU.
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    for step, miou in enumerate([10.0, 50.0, 20.0, 30.0, 15.0, 12.0], start=1):
        c.save(step, _scaled(step), data_state={"next_index": step * 10}, config={"seed": 0})
        c.record_metrics(step, {"miou": miou})
    assert c.all_steps() == [2, 5, 6] and c.best_step() == 2
    c.close()
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    assert c.all_steps() == [2, 5, 6] and c.best_step() == 2
    assert c.restore(ckpt.abstract_like(STATE), step=2).data_state == {"next_index": 20}
    c.close()


def test_a_step_is_ranked_once_its_metrics_are_saved_with_it_or_recorded_after_it(tmp_path):
    c = ckpt.Checkpointer(str(tmp_path), keep=3)
    c.save(1, _scaled(1), metrics={"miou": 10.0})
    c.save(2, _scaled(2))
    c.wait()
    assert c.has_metrics(1) and not c.has_metrics(2)
    c.record_metrics(2, {"miou": 20.0})
    assert c.has_metrics(2) and c.best_step() == 2
    c.close()


def test_restores_state_iterator_state_and_config(tmp_path):
    _write(tmp_path, [1.0, 2.0, 3.0])
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    r = c.restore(ckpt.abstract_like(STATE))
    assert r.step == 3 and r.data_state == {"next_index": 30} and r.config == {"seed": 0}
    assert float(r.state["params"]["w"][0, 0]) == 3.0
    c.close()


def _damage_latest(workdir):
    step_dir = os.path.join(workdir, ckpt.CHECKPOINT_DIR, "3")
    for f in glob.glob(os.path.join(step_dir, "state", "d", "*")):
        with open(f, "r+b") as fh:
            fh.truncate(os.path.getsize(f) // 2)  # a half-written array file


def test_corrupt_latest_checkpoint_is_skipped_with_a_warning_and_the_previous_used(tmp_path, caplog):
    _write(tmp_path, [1.0, 2.0, 3.0], keep=3)
    _damage_latest(str(tmp_path))
    c = ckpt.Checkpointer(str(tmp_path), keep=3)
    with caplog.at_level(logging.WARNING):
        r = c.restore(ckpt.abstract_like(STATE))
    assert r.step == 2 and float(r.state["params"]["w"][0, 0]) == 2.0
    assert any("corrupt or incomplete" in m for m in caplog.messages)
    assert c.all_steps() == [1, 2]  # set aside as 3.corrupt, so step 3 can be written again
    assert os.path.isdir(os.path.join(str(tmp_path), ckpt.CHECKPOINT_DIR, "3.corrupt"))
    c.save(3, _scaled(7), metrics={"miou": 0.0})
    c.close()


def test_interrupted_save_leftover_is_ignored(tmp_path):
    _write(tmp_path, [1.0, 2.0])
    root = os.path.join(str(tmp_path), ckpt.CHECKPOINT_DIR)
    # What a process killed mid-save leaves behind: orbax's temporary directory, never renamed.
    shutil.copytree(os.path.join(root, "2"), os.path.join(root, "3.orbax-checkpoint-tmp-1234567"))
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    assert c.restore(ckpt.abstract_like(STATE)).step == 2
    c.close()


def test_no_readable_checkpoint_is_a_clear_error(tmp_path):
    _write(tmp_path, [1.0], keep=2)
    for f in glob.glob(os.path.join(str(tmp_path), ckpt.CHECKPOINT_DIR, "1", "state", "manifest.ocdbt")):
        os.remove(f)
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    with pytest.raises(RuntimeError, match="no readable checkpoint"):
        c.restore(ckpt.abstract_like(STATE))
    c.close()


def test_fresh_workdir_restores_nothing(tmp_path):
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    assert c.restore(ckpt.abstract_like(STATE)) is None
    c.close()


def test_checkpoint_of_another_model_is_a_clear_error_not_a_fallback(tmp_path):
    _write(tmp_path, [1.0, 2.0])
    other = {"params": {"w": jnp.ones((3, 7)), "b": jnp.zeros(5)}, "step": jnp.zeros((), jnp.int32)}
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    with pytest.raises(ckpt.ShapeMismatchError, match=r"do not match the model built by the config"):
        c.restore(ckpt.abstract_like(other))
    c.close()


def test_arrays_that_differ_only_in_count_are_named_by_group_and_shape(tmp_path):
    _write(tmp_path, [1.0])
    other = {"params": {"w": jnp.ones((3, 4)), "w2": jnp.ones((3, 4)), "b": jnp.zeros(5)},
             "step": jnp.zeros((), jnp.int32)}  # one more array of a shape the checkpoint has too
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    with pytest.raises(ckpt.ShapeMismatchError) as e:
        c.restore(ckpt.abstract_like(other))
    c.close()
    assert "(params: 2 arrays stored vs 3 expected, only expected: (3, 4) x1). " in str(e.value)
    assert "model built by the config" in str(e.value)


def test_another_optimiser_state_is_named_as_such_with_its_config_keys(tmp_path):
    import optax

    params = {"w": jnp.ones((3, 4)), "b": jnp.zeros(5)}
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    c.save(1, {"params": params, "opt_state": optax.adamw(1e-3).init(params)})  # mu and nu
    c.close()
    sgd = {"params": params, "opt_state": optax.trace(0.9).init(params)}  # one momentum trace
    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    with pytest.raises(ckpt.ShapeMismatchError) as e:
        c.restore(ckpt.abstract_like(sgd))
    c.close()
    message = str(e.value)
    assert "the checkpoint's optimiser state does not match the optimiser built by the config" in message
    assert "opt_state: 5 arrays stored vs 2 expected, only stored: () x1, (3, 4) x1, (5,) x1)" in message
    assert "optim.name and optim.accumulate_steps" in message and "model" not in message


def test_restore_variables_reads_student_and_teacher_from_a_step_dir(tmp_path):
    state = {"params": {"w": jnp.ones((2,))}, "batch_stats": {}, "step": jnp.array(4),
             "teacher": {"params": {"w": jnp.zeros((2,))}, "batch_stats": {}}}
    c = ckpt.Checkpointer(str(tmp_path), keep=1)
    c.save(4, state, config={"seed": 3})
    c.close()
    variables, config, step = ckpt.restore_variables(str(tmp_path))
    assert step == 4 and config == {"seed": 3}
    assert float(variables["student"]["params"]["w"][0]) == 1.0
    assert float(variables["teacher"]["params"]["w"][0]) == 0.0


def test_restore_variables_of_a_workdir_reads_its_latest_step(tmp_path):
    c = ckpt.Checkpointer(str(tmp_path), keep=3)
    for step in (2, 10, 9):  # numeric order, not the order written nor the names' string order
        c.save(step, {"params": {"w": jnp.full((2,), float(step))}, "step": jnp.array(step),
                      "teacher": {"params": {"w": jnp.zeros((2,))}}})
    c.close()
    for path in (tmp_path, tmp_path / ckpt.CHECKPOINT_DIR):
        variables, _, step = ckpt.restore_variables(str(path))
        assert step == 10 and float(variables["student"]["params"]["w"][0]) == 10.0


def test_keeping_no_checkpoint_is_refused():
    from mofgseg_jax.errors import InputError

    with pytest.raises(InputError, match=r"^train.keep_checkpoints=0: keep at least the latest checkpoint$"):
        ckpt.Checkpointer("/nonexistent/never-created", keep=0)


def test_unwritable_workdir_is_a_clear_error(tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(PermissionError, match="--workdir .*cannot create or write"):
        ckpt.check_writable(str(blocker / "run"))


def test_best_of_a_run_never_evaluated_is_an_error_naming_its_steps_not_a_fallback(tmp_path):
    from mofgseg_jax.errors import InputError
    from mofgseg_jax.train import inference

    c = ckpt.Checkpointer(str(tmp_path), keep=2)
    for step in (3, 6):  # a run stopped before its first evaluation: no mIoU stored
        c.save(step, _scaled(step))
    c.close()
    with pytest.raises(InputError, match=r"checkpoints exist \(steps \[3, 6\], latest 6\) but none has been "
                                         r"evaluated yet.*use --which latest"):
        inference.find_checkpoint(workdir=str(tmp_path), which="best")
    assert inference.find_checkpoint(workdir=str(tmp_path), which="latest").endswith(f"{ckpt.CHECKPOINT_DIR}/6")


def test_a_checkpoint_and_a_workdir_together_are_refused(tmp_path):
    # evaluate.py loaded the --checkpoint and wrote its scores into the other --workdir.
    from mofgseg_jax.errors import InputError
    from mofgseg_jax.train import inference

    c = ckpt.Checkpointer(str(tmp_path / "run"), keep=2)
    c.save(3, _scaled(3))
    c.close()
    step_dir = str(tmp_path / "run" / ckpt.CHECKPOINT_DIR / "3")
    with pytest.raises(InputError, match=r"--checkpoint .* and --workdir .*: give one of them"):
        inference.find_checkpoint(workdir=str(tmp_path / "other"), checkpoint=step_dir)
    with pytest.raises(InputError, match=r"--checkpoint .*_CHECKPOINT_METADATA: is a file; give a step directory"):
        inference.find_checkpoint(checkpoint=os.path.join(step_dir, "_CHECKPOINT_METADATA"))
    assert inference.find_checkpoint(checkpoint=step_dir) == step_dir


@pytest.mark.parametrize("content", [b"", b"{", b"{}", b"[1]", b'{"miou": "x"}', b'{"miou": null}', b'{"miou": true}',
                                     b'{"miou": NaN}'])
@pytest.mark.parametrize("read_only", [False, True], ids=["training", "evaluation"])
def test_a_damaged_metrics_file_is_one_line_naming_it_when_the_run_is_opened(tmp_path, content, read_only):
    # Orbax read it only when ranking the steps: a KeyError or JSONDecodeError from inside orbax at
    # best_step() or at the next save, in every later run of that workdir.
    from mofgseg_jax.errors import UnreadableInputError

    _write(tmp_path, [10.0, 20.0])
    metrics_file = tmp_path / ckpt.CHECKPOINT_DIR / "2" / "metrics" / "metrics"
    metrics_file.write_bytes(content)
    with pytest.raises(UnreadableInputError, match=rf"^{re.escape(str(metrics_file))}: step 2's metrics file holds "
                                                   r"no finite 'miou'; write"):
        ckpt.Checkpointer(str(tmp_path), read_only=read_only)
    assert metrics_file.read_bytes() == content  # left as it was
