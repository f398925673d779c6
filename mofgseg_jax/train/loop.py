"""The training loop: `train_and_evaluate(config, workdir)`.

The host only feeds batches, logs, evaluates and checkpoints; every number comes from the config.
  1. The resolved config is logged, and written to `<workdir>/config.json` once the state is built
     (`stored_config.py`: a refused run leaves the stored one as it was; resuming with other
     parameter shapes or attention heads is refused).
  2. Model, train state, mapped step (`parallel.mode`), input iterators. If `<workdir>/checkpoints`
     holds a checkpoint, training resumes from it (state, teacher, optimiser, input position);
     `model.pretrained` is loaded only on a fresh start.
  3. Each step: one batch from the grain iterator -> mapped train step. Metrics stay on device,
     summed over the `log_every` window, and are fetched (one transfer) every `log_every` steps;
     a non-finite value stops training with a clear error before anything else is saved.
  4. Every `eval_every` steps (0 = once per epoch) and at the end: student and teacher mIoU and
     per-class IoU, TensorBoard scalars and a colourised prediction grid (also written to
     `<workdir>/predictions/step_<NNNNNNN>.png`, the step in 7 digits). Every `checkpoint_every`
     steps (0 = at each evaluation) and at the end: an asynchronous checkpoint (latest
     `keep_checkpoints` + the best student mIoU), saved before its step is evaluated (a failing
     evaluation loses no training: the same command resumes from that step and evaluates it before
     training on, so that it is ranked), its mIoU recorded once known.
  5. SIGTERM (a scheduler's preemption notice) or Ctrl-C: the step under way finishes, is saved, and
     the loop returns `{'step', 'workdir', 'stopped_by': signal name}`; the same command resumes
     (`preemption.py`; several processes agree on the step through JAX's preemption service).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from typing import Any, Callable

import jax
import jax.numpy as jnp
import ml_collections
import numpy as np

from mofgseg_jax.config_checks import check_config_values, reads_unlabelled
from mofgseg_jax.errors import InputError
from mofgseg_jax.train import checkpoint as ckpt
from mofgseg_jax.train import evaluate as ev
from mofgseg_jax.train import preemption
from mofgseg_jax.train import tb
from mofgseg_jax.train import workdir_lock
from mofgseg_jax.train.compile_cache import enable_for_config
from mofgseg_jax.train.host_memory import trimming_free_memory
from mofgseg_jax.train.sync import barrier
from mofgseg_jax.train.stored_config import check_stored_config, config_to_dict, save_config

BatchHook = Callable[[int, Any], None]

log = logging.getLogger("mofgseg")

# ----------------------------------------------------------------------------------------------
# Run length and the host's setup


def _run_length(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    """(total steps, steps per epoch, eval every, checkpoint every) from `train.*` and the data."""
    from mofgseg_jax.data.pipeline import steps_per_epoch  # noqa: PLC0415

    epoch = steps_per_epoch(config.data, labelled_only=not reads_unlabelled(config))
    total = int(config.train.num_steps) or int(config.train.num_epochs) * epoch
    if total <= 0:
        raise InputError("train.num_steps and train.num_epochs are both 0: nothing to train")
    accumulate = int(config.optim.accumulate_steps)
    if accumulate > total:  # optax.MultiSteps would never apply an update: a run that trains nothing
        raise InputError(f"optim.accumulate_steps={accumulate}: more than the {total} steps this config trains "
                         "(no optimiser update would be made)")
    if total % accumulate:
        log.warning("optim.accumulate_steps=%d does not divide the %d steps: the gradients of the last %d "
                    "are accumulated but never applied", accumulate, total, total % accumulate)
    eval_every = int(config.train.eval_every) or epoch
    checkpoint_every = int(config.train.checkpoint_every) or eval_every
    return total, epoch, eval_every, checkpoint_every


def _check_batch_sizes(config: ml_collections.ConfigDict, num_devices: int) -> None:
    """Each global batch the run reads splits evenly over the devices of the mesh."""
    keys = ("batch_size_labeled",) + (("batch_size_unlabeled",) if reads_unlabelled(config) else ())
    for key in keys:
        if int(config.data[key]) % num_devices:
            raise InputError(f"data.{key}={config.data[key]} (global) must be a multiple of the "
                             f"{num_devices} devices")


def _prepare_demo_data(config: ml_collections.ConfigDict) -> None:
    """Generates the built-in demo dataset on first use (process 0; the others wait)."""
    if config.data.name != "demo":
        return
    from mofgseg_jax.data import demo  # noqa: PLC0415

    # Every process checks before anything is written: a folder that must not be written is then
    # refused by all of them, not by process 0 alone while the others wait at the barrier.
    generate = demo.needs_generating(config.data.root)
    barrier("mofgseg_demo_data_checked")
    if jax.process_index() == 0 and generate:
        start = time.perf_counter()
        demo.ensure(config.data.root)
        log.info("generated the demo dataset in %s (%.1fs)", config.data.root, time.perf_counter() - start)
    barrier("mofgseg_demo_data")


def _setup_file_log(workdir: str) -> logging.Handler | None:
    if jax.process_index() != 0:
        return None
    handler = logging.FileHandler(os.path.join(workdir, "train.log"))
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    log.addHandler(handler)
    if log.level == logging.NOTSET or log.level > logging.INFO:
        log.setLevel(logging.INFO)
    return handler


# ----------------------------------------------------------------------------------------------
# State


def _init_config(config: ml_collections.ConfigDict, *, pretrained: bool) -> ml_collections.ConfigDict:
    cfg = ml_collections.ConfigDict(config.to_dict())
    if not pretrained:
        cfg.model.pretrained = ""
    return cfg


def _sample_shape(config: ml_collections.ConfigDict) -> tuple[int, int, int, int]:
    crop = int(config.data.crop_size)
    return (1, crop, crop, 3)


def build_state(config, model, rng, total_steps, checkpointer, mesh, parallel_mode):
    """(state on host/mesh, restored or None). Resumes from `checkpointer` when it has a step."""
    from jax.sharding import NamedSharding, PartitionSpec as P  # noqa: PLC0415

    from mofgseg_jax.train.state import create_train_state  # noqa: PLC0415

    restored = None
    if checkpointer.all_steps():
        cfg = _init_config(config, pretrained=False)
        abstract = jax.eval_shape(lambda r: create_train_state(cfg, model, r, _sample_shape(config),
                                                               total_steps=total_steps), rng)
        if parallel_mode == "shard_map":
            sharding = NamedSharding(mesh, P())
        else:  # pmap: restore onto one device, `put_state` replicates
            sharding = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=sharding), abstract)
        restored = checkpointer.restore(target)
        if restored is not None:
            return restored.state, restored
    state = create_train_state(config, model, rng, _sample_shape(config), total_steps=total_steps)
    return state, None


def _accumulate(acc, metrics):
    return jax.tree.map(jnp.add, acc, metrics)


_accumulate_jit = jax.jit(_accumulate, donate_argnums=(0,))


def _window_means(parallel, acc, count: int) -> dict[str, float]:
    host = parallel.get_metrics(acc)
    return {k: v / max(count, 1) for k, v in host.items()}


# ----------------------------------------------------------------------------------------------


def train_and_evaluate(config: ml_collections.ConfigDict, workdir: str, *,
                       batch_hook: BatchHook | None = None, state_hook: BatchHook | None = None) -> dict[str, Any]:
    """Trains `config` in `workdir` (resuming from its checkpoints), evaluating and checkpointing.

    batch_hook: optional `(step, host_batch)` callback before each step (tests trace the data order);
    state_hook: optional `(step, state)` callback after each step (tests compare processes).
    Returns {'step', 'student': {'miou', 'iou'}, 'teacher': {...}, 'best_step', 'workdir'} of the
    last evaluation.
    """
    from mofgseg_jax.data.pipeline import check_val_canvas, make_train_iterator, make_val_batches  # noqa: PLC0415
    from mofgseg_jax.data.specs import load_spec  # noqa: PLC0415
    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train.parallel import make_mesh, make_parallel  # noqa: PLC0415
    from mofgseg_jax.train.step import AXIS, check_finite, make_train_step, wants_inside_map  # noqa: PLC0415

    check_config_values(config)  # a bad value fails here, before the workdir is touched
    cache_dir = enable_for_config(config)  # so does a cache folder that cannot be made
    # So do a bad dataset spec and a missing data root or split list (read to size the run; the
    # demo dataset is generated first, into its data root).
    spec = load_spec(config.data.name, num_classes=int(config.model.num_classes),
                     class_names=tuple(config.data.class_names or ()), ignore_index=int(config.data.ignore_index))
    _prepare_demo_data(config)
    total_steps, epoch_steps, eval_every, checkpoint_every = _run_length(config)
    check_val_canvas(config.data)  # else found at the first evaluation, hours in
    _check_batch_sizes(config, jax.device_count())  # the mesh's: make_mesh() spans every device
    workdir = os.path.abspath(workdir)
    ckpt.check_writable(workdir)
    pi, pc = jax.process_index(), jax.process_count()
    lock = workdir_lock.acquire(workdir) if pi == 0 else None  # a second run on it is refused here
    file_log = _setup_file_log(workdir)
    writer = None
    checkpointer = None
    try:
        config_dict = config_to_dict(config)
        checkpointer = ckpt.Checkpointer(workdir, keep=int(config.train.keep_checkpoints))
        config_differs = check_stored_config(config_dict, workdir, resuming=bool(checkpointer.all_steps()))
        log.info("workdir %s\nconfig:\n%s", workdir, json.dumps(config_dict, indent=2, sort_keys=True))

        log.info("compilation cache: %s", cache_dir or "off")

        log_every = max(1, int(config.train.log_every))

        mesh = make_mesh()
        ndev = mesh.devices.size
        labelled_only = not reads_unlabelled(config)
        model = build_model(config.model, bn_axis_name=AXIS)
        rng = jax.random.PRNGKey(int(config.seed))
        init_rng, train_rng = jax.random.split(rng)
        state, restored = build_state(config, model, init_rng, total_steps, checkpointer, mesh,
                                      str(config.parallel.mode))
        if restored is not None and restored.step > total_steps:
            # Past its end: the config is not the run's (e.g. fewer epochs, or a ':sup' run started
            # before its epoch became a pass over the labelled split, 4ed8f36).
            raise InputError(f"{checkpointer.directory}/{restored.step}: the run is at step {restored.step}, past "
                             f"the {total_steps} steps this config trains ({epoch_steps} per epoch); set "
                             "train.num_steps to the run's total, or evaluate it with launch/evaluate.py")
        # Only now: a run refused above (a checkpoint of another model, a bad batch size) must not
        # replace the config that the checkpoints were trained with.
        save_config(config_dict, workdir, differs=config_differs)
        start_step = restored.step if restored is not None else 0
        if restored is not None:
            log.info("resumed from %s/%d", checkpointer.directory, restored.step)
        elif config.model.pretrained:
            log.info("fresh start from the pretrained weights %s", config.model.pretrained)

        parallel = make_parallel(config, make_train_step(config, model), mesh=mesh)
        state = parallel.put_state(state)
        train_it = make_train_iterator(config.data, seed=int(config.seed), process_index=pi, process_count=pc,
                                       with_inside=wants_inside_map(config), labelled_only=labelled_only)
        if restored is not None and restored.data_state is not None:
            train_it.set_state(restored.data_state)
        val_batches = make_val_batches(config.data, process_index=pi, process_count=pc)
        eval_step = ev.make_eval_step(model, mesh, **ev.prediction_settings(config, spec.num_classes),
                                      ignore_index=int(config.data.ignore_index), axis_name=AXIS)

        writer = tb.Writer(workdir, enabled=pi == 0)
        if restored is None:
            writer.text("config", "```\n" + json.dumps(config_dict, indent=2, sort_keys=True) + "\n```")
        log.info("training %d steps (%d per epoch), evaluating every %d, checkpointing every %d, on %d %s "
                 "device(s) in %d process(es)", total_steps, epoch_steps, eval_every, checkpoint_every, ndev,
                 jax.devices()[0].platform, pc)

        def run_eval(step: int) -> dict[str, Any]:
            host_state = parallel.get_state(state)
            variables = ({"params": host_state.params, "batch_stats": host_state.batch_stats},
                         host_state.teacher)
            result = ev.evaluate(eval_step, variables, val_batches, mesh=mesh, num_classes=spec.num_classes,
                                 num_keep=int(config.train.num_predictions_logged), progress=True, axis_name=AXIS)
            writer.evaluation(step, result, spec.class_names)
            if pi == 0 and result["kept"]:
                grid = tb.prediction_grid(result["kept"], spec.palette)
                writer.image("eval/predictions", grid, step)
                _save_png(grid, os.path.join(workdir, "predictions", f"step_{step:07d}.png"))
            writer.flush()
            log.info("step %d eval (%s): student mIoU %.2f, teacher mIoU %.2f", step, config.eval.mode,
                     result["student"]["miou"], result["teacher"]["miou"])
            for name in ("student", "teacher"):
                log.info("  %s IoU: %s", name, ", ".join(
                    f"{c} {v:.1f}" for c, v in zip(spec.class_names, result[name]["iou"])))
            return result

        def evaluate_and_rank(step: int) -> dict[str, Any]:
            result = run_eval(step)
            checkpointer.record_metrics(step, {"miou": result["student"]["miou"]})
            return result

        def is_eval_step(step: int) -> bool:
            return step % eval_every == 0 or step == total_steps

        last_eval: dict[str, Any] | None = None
        step = start_step
        if restored is not None and is_eval_step(step) and not checkpointer.has_metrics(step):
            # Saved, but its evaluation failed or was cut short: without this it would never count
            # for the best checkpoint (and the retention policy could delete it as unranked).
            log.info("step %d was saved but not evaluated: evaluating it before training on", step)
            last_eval = evaluate_and_rank(step)
        acc, count, window_start = None, 0, time.perf_counter()
        # The bar closes however the loop ends, so an error line is not printed into it.
        with (_progress(total_steps, start_step, enabled=pi == 0) as progress,
              preemption.StopRequest() as stop):  # SIGTERM / Ctrl-C: save this step, then stop
            while step < total_steps:
                batch = next(train_it)
                if batch_hook is not None:
                    batch_hook(step + 1, batch)
                # The first call compiles the step: hand the compiler's freed memory back as it goes.
                with trimming_free_memory() if step == start_step else contextlib.nullcontext():
                    state, metrics = parallel.step(state, parallel.put_batch(batch), train_rng)
                step += 1
                if state_hook is not None:
                    state_hook(step, state)
                acc = metrics if acc is None else _accumulate_jit(acc, metrics)
                count += 1
                progress.update(1)
                do_log = step % log_every == 0 or step == total_steps
                do_eval = is_eval_step(step)
                stopping = stop.should_stop(step)
                do_save = step % checkpoint_every == 0 or step == total_steps or do_eval or stopping
                if do_log or do_save:
                    # One transfer per window; also guards every checkpoint against a non-finite state.
                    means = _window_means(parallel, acc, count)
                    check_finite(means, step, first_step=step - count + 1,
                                 last_checkpoint=checkpointer.latest_step())
                    if do_log:
                        now = time.perf_counter()
                        means["steps_per_second"] = count / max(now - window_start, 1e-9)
                        writer.scalars(step, means, prefix="train/")
                        progress.set_postfix(loss=f"{means['loss']:.3f}", lr=f"{means.get('lr', 0):.2e}")
                        acc, count, window_start = None, 0, now
                if do_save:  # before evaluating: an evaluation that fails loses no training
                    checkpointer.save(step, parallel.get_state(state), data_state=train_it.get_state(),
                                      config=config_dict)
                if do_eval:
                    last_eval = evaluate_and_rank(step)
                if stopping:
                    break
        checkpointer.wait()
        if step < total_steps:  # stopped on request, with this step saved
            log.info("stopped at step %d on %s; checkpoint saved: the same command resumes from it",
                     step, stop.name)
            return {"step": step, "workdir": workdir, "stopped_by": stop.name}
        if last_eval is None:  # the same command again after the run finished: its summary
            last_eval = run_eval(step)
        summary = {"step": step, "workdir": workdir, "best_step": checkpointer.best_step(),
                   "student": {k: last_eval["student"][k] for k in ("miou", "iou")},
                   "teacher": {k: last_eval["teacher"][k] for k in ("miou", "iou")}}
        if pi == 0:
            _print_summary(summary, spec.class_names)
        return summary
    finally:
        if checkpointer is not None:
            checkpointer.close()  # waits for pending saves: the last good checkpoint is complete
        if writer is not None:
            writer.close()
        if file_log is not None:
            log.removeHandler(file_log)
            file_log.close()
        if lock is not None:
            lock.release()


def _progress(total: int, initial: int, *, enabled: bool):
    from tqdm.auto import tqdm  # noqa: PLC0415

    return tqdm(total=total, initial=initial, desc="train", disable=not enabled, dynamic_ncols=True,
                mininterval=1.0, file=sys.stderr)


def _save_png(image: np.ndarray, path: str) -> None:
    from PIL import Image  # noqa: PLC0415

    os.makedirs(os.path.dirname(path), exist_ok=True)
    Image.fromarray(image).save(path)


def _print_summary(summary: dict[str, Any], class_names) -> None:
    print(f"\nstep {summary['step']}: student mIoU {summary['student']['miou']:.2f}, "
          f"teacher mIoU {summary['teacher']['miou']:.2f} (best checkpoint: step {summary['best_step']})")
    print(f"TensorBoard:  tensorboard --logdir {summary['workdir']}")
    print(f"predictions:  {os.path.join(summary['workdir'], 'predictions')}")
    print(f"checkpoints:  {os.path.join(summary['workdir'], ckpt.CHECKPOINT_DIR)}")
    sys.stdout.flush()
