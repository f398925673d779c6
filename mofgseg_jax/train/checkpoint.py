"""Checkpoints: orbax `CheckpointManager` keeping the latest N plus the best by mIoU.

A checkpoint step directory holds three items:
  - `state`: the whole `TrainState` (student, optimiser, teacher) as global arrays (`StandardSave`);
  - `data`: the input pipeline's iterator state, one JSON file per process
    (`process_<i>-of-<n>.json`, as grain's own orbax handler writes it), so a resumed run sees exactly
    the batches an uninterrupted run would;
  - `config`: the resolved config (JSON), so a checkpoint can be evaluated without its workdir.
Metrics (`{'miou': ...}`) rank steps for the best-checkpoint policy. Training saves a step before
evaluating it (a failing evaluation then loses no training) and adds its mIoU afterwards with
`record_metrics`, which writes the file that `save(metrics=...)` would have written.

Retention: `max_to_keep` together with `best_fn` keeps the N *best* and may delete the latest, which
a resume needs; we use orbax's preservation policies instead: `LatestN(keep) OR BestN(1)`.

Why our own iterator-state handler and not `grain.checkpoint.CheckpointSave`: grain's handler calls
`iterator.get_state()` inside `save`, which under async checkpointing may run after the loop has
already pulled the next batch; we snapshot the state (a dict) when the checkpoint is requested.

Saves are asynchronous (`wait()` blocks until the last one is on disk). A step whose files are
corrupt or half written is skipped on restore with a warning and the previous one is used; orbax
itself writes each step to a temporary directory and renames it on success, so a process killed
mid-save leaves only a `*.orbax-checkpoint-tmp-*` directory, which is ignored and cleaned up.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import math
import os
from collections import Counter
from typing import Any

import jax
import orbax.checkpoint as ocp
from etils import epath
from orbax.checkpoint import checkpoint_manager as ocp_manager
from orbax.checkpoint import checkpoint_managers as ocm

from mofgseg_jax import outputs
from mofgseg_jax.errors import InputError, InputNotFoundError, UnreadableInputError
from mofgseg_jax.train.sync import barrier

log = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoints"
BEST_METRIC = "miou"


class ProcessJsonHandler(ocp.CheckpointHandler):
    """Saves one JSON-serialisable dict per process (`process_<i>-of-<n>.json`)."""

    def save(self, directory: epath.Path, args: "ProcessJsonSave") -> None:
        path = epath.Path(directory) / _process_file()
        path.write_text(json.dumps(args.state, indent=1, sort_keys=True))

    def restore(self, directory: epath.Path, args: "ProcessJsonRestore | None" = None) -> Any:
        path = epath.Path(directory) / _process_file()
        if not path.exists():
            raise InputNotFoundError(f"{path}: no input-pipeline state for this process "
                                     f"(was the checkpoint written with another process count?)")
        return json.loads(path.read_text())

    def structure(self, directory: epath.Path) -> Any:
        return None

    def metadata(self, directory: epath.Path) -> Any:
        return None

    def finalize(self, directory: epath.Path) -> None:
        pass

    def close(self) -> None:
        pass


@ocp.args.register_with_handler(ProcessJsonHandler, for_save=True)
@dataclasses.dataclass
class ProcessJsonSave(ocp.args.CheckpointArgs):
    state: Any


@ocp.args.register_with_handler(ProcessJsonHandler, for_restore=True)
@dataclasses.dataclass
class ProcessJsonRestore(ocp.args.CheckpointArgs):
    pass


def _process_file() -> str:
    return f"process_{jax.process_index()}-of-{jax.process_count()}.json"


@dataclasses.dataclass
class Restored:
    """What `Checkpointer.restore` returns."""

    step: int
    state: Any
    data_state: Any
    config: dict | None


def check_writable(workdir: str) -> None:
    """Raises one clear error when `workdir` cannot be created or written."""
    outputs.check_writable(workdir, "--workdir", probe=f".write_test_{jax.process_index()}")


class Checkpointer:
    """Latest-N plus best-by-mIoU checkpoints under `<workdir>/checkpoints`, saved asynchronously."""

    def __init__(self, workdir: str, *, keep: int = 2, async_save: bool = True, read_only: bool = False):
        if keep < 1:
            raise InputError(f"train.keep_checkpoints={keep}: keep at least the latest checkpoint")
        self.directory = os.path.abspath(os.path.join(workdir, CHECKPOINT_DIR))
        _check_metrics_files(self.directory)
        policy = ocm.AnyPreservationPolicy([
            ocm.LatestN(n=keep),
            ocm.BestN(get_metric_fn=_best_metric, n=1, keep_checkpoints_without_metrics=False),
        ])
        options = ocp.CheckpointManagerOptions(
            best_fn=_best_metric, best_mode="max",  # records metrics and answers best_step()
            preservation_policy=policy, enable_async_checkpointing=async_save, create=not read_only,
            read_only=read_only, cleanup_tmp_directories=not read_only,
            save_interval_steps=0 if read_only else 1)  # orbax warns when it must reset this itself
        # Every item registered up front, so metadata (stored shapes) can be read without restoring.
        handlers = ocp.handlers.DefaultCheckpointHandlerRegistry()
        for name, save, restore, handler in (
                ("state", ocp.args.StandardSave, ocp.args.StandardRestore, ocp.StandardCheckpointHandler),
                ("data", ProcessJsonSave, ProcessJsonRestore, ProcessJsonHandler),
                ("config", ocp.args.JsonSave, ocp.args.JsonRestore, ocp.JsonCheckpointHandler)):
            handlers.add(name, save, handler)
            handlers.add(name, restore, handler)
        with _without_read_only_notice() if read_only else contextlib.nullcontext():
            self.manager = ocp.CheckpointManager(self.directory, options=options, handler_registry=handlers)

    # -- queries
    def all_steps(self) -> list[int]:
        return sorted(self.manager.all_steps())

    def latest_step(self) -> int | None:
        return self.manager.latest_step()

    def best_step(self) -> int | None:
        return self.manager.best_step()

    def has_metrics(self, step: int) -> bool:
        """Whether `step` is ranked: its metrics were saved with it or recorded after its evaluation."""
        return os.path.exists(_metrics_file(self.directory, step))

    # -- save / restore
    def save(self, step: int, state: Any, *, data_state: Any = None, config: dict | None = None,
             metrics: dict | None = None, force: bool = True) -> bool:
        """Starts an asynchronous save of `state` (+ iterator state, config, metrics) at `step`."""
        items = {"state": ocp.args.StandardSave(state)}
        if data_state is not None:
            items["data"] = ProcessJsonSave(data_state)
        if config is not None:
            items["config"] = ocp.args.JsonSave(config)
        metrics = None if metrics is None else {k: float(v) for k, v in metrics.items()}
        return self.manager.save(int(step), args=ocp.args.Composite(**items), metrics=metrics, force=force)

    def record_metrics(self, step: int, metrics: dict) -> None:
        """Stores `metrics` with the saved `step` (evaluated after its save), as `save(metrics=...)`.

        Waits for the pending save first; the best-checkpoint ranking (`best_step`, and which step
        the next save keeps) then counts them. Orbax has no call for this: the file is the one its
        manager reads back (`<step>/metrics/metrics`, JSON), written beside and renamed.
        """
        self.wait()
        if jax.process_index() == 0:
            path = _metrics_file(self.directory, step)
            os.makedirs(os.path.dirname(path), exist_ok=True)
            with open(path + ".tmp", "w") as f:
                json.dump({k: float(v) for k, v in metrics.items()}, f)
            os.replace(path + ".tmp", path)
        barrier("mofgseg_checkpoint_record_metrics")
        self.manager.reload()

    def restore(self, abstract_state: Any, *, step: int | None = None, with_data: bool = True) -> Restored | None:
        """Restores `step` (default: the latest loadable one) into the structure of `abstract_state`
        (a pytree of `jax.ShapeDtypeStruct` with shardings, e.g. from `abstract_like`).

        Steps that fail to load are skipped with a warning, newest first, and renamed
        `<step>.corrupt` (so that training can write that step again). Returns None when there is no
        checkpoint (a fresh start); raises when checkpoints exist but none can be read, or when
        they hold another model (`ShapeMismatchError`).
        """
        if step is not None:
            try:
                return self._restore_step(step, abstract_state, with_data)
            except ShapeMismatchError:
                raise
            except Exception as e:  # noqa: BLE001
                raise UnreadableInputError(
                    f"{self.directory}/{step}: cannot restore checkpoint: {_first_line(e)}") from e
        failed = []
        for s in sorted(self.all_steps(), reverse=True):
            try:
                restored = self._restore_step(s, abstract_state, with_data)
            except ShapeMismatchError:
                raise  # a different model, not a damaged file: never fall back silently
            except Exception as e:  # noqa: BLE001 - any other failure means this step is unusable
                log.warning("checkpoint %s/%d is corrupt or incomplete (%s: %s); trying the previous one",
                            self.directory, s, type(e).__name__, _first_line(e))
                failed.append(s)
                continue
            self._set_aside(failed)
            return restored
        if failed:
            raise UnreadableInputError(f"{self.directory}: no readable checkpoint (steps {failed} are all corrupt); "
                                       "move the folder away to start fresh")
        return None

    def _set_aside(self, steps: list[int]) -> None:
        """Renames unreadable steps to `<step>.corrupt[-k]` (kept for inspection, ignored by orbax)."""
        if not steps:
            return
        if jax.process_index() == 0:
            for s in steps:
                src = os.path.join(self.directory, str(s))
                dst, k = src + ".corrupt", 1
                while os.path.exists(dst):
                    dst, k = f"{src}.corrupt-{k}", k + 1
                os.rename(src, dst)
                log.warning("moved the unreadable checkpoint %s to %s", src, dst)
        barrier("mofgseg_checkpoint_set_aside")
        self.manager.reload()

    def _restore_step(self, step: int, abstract_state: Any, with_data: bool) -> Restored:
        step_dir = epath.Path(self.directory) / str(step)
        stored = self.manager.item_metadata(step)["state"]  # raises on unreadable metadata
        check_shapes(stored, abstract_state, str(step_dir))
        items = {"state": ocp.args.StandardRestore(abstract_state)}
        if with_data and (step_dir / "data").exists():
            items["data"] = ProcessJsonRestore()
        if (step_dir / "config").exists():
            items["config"] = ocp.args.JsonRestore()
        out = self.manager.restore(step, args=ocp.args.Composite(**items))
        return Restored(step=step, state=out["state"], data_state=out.get("data") if "data" in items else None,
                        config=out.get("config") if "config" in items else None)

    def wait(self) -> None:
        """Blocks until pending asynchronous saves are on disk."""
        self.manager.wait_until_finished()

    def close(self) -> None:
        self.manager.wait_until_finished()
        # The manager starts clearing unfinished temporary folders on a thread when it is created, and
        # orbax 0.12's close() does not wait for it: a run that stops right away (a bad input) then
        # races interpreter shutdown, which ends that thread with a RuntimeError traceback.
        await_cleanup = getattr(self.manager, "_maybe_await_cleanup_tmp_directory", None)
        if await_cleanup is not None:
            await_cleanup()
        self.manager.close()


def _metrics_file(directory: str, step: int | str) -> str:
    """The file orbax's manager reads a step's metrics from (`save(metrics=...)` writes it too)."""
    return os.path.join(directory, str(int(step)), ocp_manager.METRIC_ITEM_NAME, ocp_manager.METRIC_ITEM_NAME)


def _check_metrics_files(directory: str) -> None:
    """Raises one line naming the first step's metrics file that does not hold a finite mIoU. Orbax
    reads them only when it ranks the steps (best_step, or the retention policy at a save), where
    a damaged one was a traceback from deep inside orbax in every later run, evaluation included."""
    if not os.path.isdir(directory):
        return
    for step in sorted(filter(str.isdigit, os.listdir(directory)), key=int):
        path = _metrics_file(directory, step)
        if not os.path.isfile(path):
            continue
        try:
            with open(path, encoding="utf-8") as f:
                value = json.load(f)[BEST_METRIC]
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        except (OSError, ValueError, KeyError, TypeError, IndexError, RecursionError):
            ok = False
        if not ok:
            raise UnreadableInputError(
                f"{path}: step {step}'s metrics file holds no finite '{BEST_METRIC}'; write "
                f"{{\"{BEST_METRIC}\": <its student mIoU, in TensorBoard>}} into it, or delete it (an unranked step "
                "is never the best, and goes once it is past the latest checkpoints kept)")


class _ReadOnlyNoticeFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Given directory is read only")


@contextlib.contextmanager
def _without_read_only_notice():
    """Orbax warns 'Given directory is read only=<dir>' for every read-only manager: evaluate.py and
    predict.py open the run read-only on purpose, and the warning read as if something were wrong."""
    notice = _ReadOnlyNoticeFilter()
    absl_logger = logging.getLogger("absl")
    absl_logger.addFilter(notice)
    try:
        yield
    finally:
        absl_logger.removeFilter(notice)


def _best_metric(metrics: Any) -> float:
    return float(metrics[BEST_METRIC])


def _first_line(e: Exception) -> str:
    text = str(e).strip().splitlines()
    return text[0][:300] if text else ""


class ShapeMismatchError(InputError):
    """The checkpoint holds arrays of other shapes than the model the config builds."""


# The train state's optimiser group, and the config keys that change its arrays (optax's state of
# sgd: one trace per parameter; adamw: two moments; accumulate_steps > 1: a gradient accumulator).
OPTIMISER_GROUPS = ("opt_state",)
OPTIMISER_KEYS = ("optim.name", "optim.accumulate_steps")


def check_shapes(stored: Any, abstract_state: Any, where: str) -> None:
    """Compares the stored array shapes (orbax metadata) with the restore target's.

    The multisets of shapes are compared, which does not depend on how each library names the
    nodes of the tree; a config that changes any parameter shape changes this multiset. The error
    lists them per top-level group of the state (`params`, `opt_state`, `teacher`, ...) with the
    shapes only one side has, and names the optimiser keys when only the optimiser state differs
    (e.g. a run started with optim.name=adamw resumed with sgd).
    """
    got = _shapes_by_group(getattr(stored, "tree", stored))
    want = _shapes_by_group(abstract_state)
    if sum(got.values(), Counter()) == sum(want.values(), Counter()):
        return
    groups = [g for g in sorted(set(got) | set(want)) if got.get(g) != want.get(g)]
    details = "; ".join(_group_difference(g, got.get(g, Counter()), want.get(g, Counter())) for g in groups)
    if set(groups) <= set(OPTIMISER_GROUPS):
        raise ShapeMismatchError(
            f"{where}: the checkpoint's optimiser state does not match the optimiser built by the config "
            f"({details}). Resume with the run's own {' and '.join(OPTIMISER_KEYS)}, or use another --workdir.")
    raise ShapeMismatchError(
        f"{where}: the checkpoint's arrays do not match the model built by the config ({details}). "
        "Use the config the run was started with, or another --workdir.")


def _shapes_by_group(tree: Any) -> dict[str, Counter]:
    """{top-level name: Counter of array shapes} of a state (or of its orbax metadata)."""
    groups: dict[str, Counter] = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        first = path[0] if path else None
        name = str(getattr(first, "name", getattr(first, "key", getattr(first, "idx", "state"))))
        groups.setdefault(name, Counter())[tuple(getattr(leaf, "shape", ()))] += 1
    return groups


def _group_difference(group: str, got: Counter, want: Counter, show: int = 3) -> str:
    """'opt_state: 12 arrays stored vs 8 expected, only stored: (3, 4) x2, ...'."""

    def shapes(c: Counter) -> str:
        items = [f"{shape} x{n}" for shape, n in sorted(c.items())]
        return ", ".join(items[:show]) + (", ..." if len(items) > show else "")

    text = f"{group}: {sum(got.values())} arrays stored vs {sum(want.values())} expected"
    if got - want:
        text += f", only stored: {shapes(got - want)}"
    if want - got:
        text += f", only expected: {shapes(want - got)}"
    return text


def abstract_like(tree: Any) -> Any:
    """`jax.ShapeDtypeStruct`s (with shardings) of a pytree of arrays: a restore target."""
    return jax.tree.map(ocp.utils.to_shape_dtype_struct, tree)


def resolve_step_dir(path: str) -> str:
    """The absolute step directory that `path` names: a step directory (`.../checkpoints/1200`)
    itself, else the latest step of a `checkpoints` directory or of a workdir."""
    path = os.path.abspath(path)
    if os.path.isdir(os.path.join(path, CHECKPOINT_DIR)):
        path = os.path.join(path, CHECKPOINT_DIR)
    if os.path.isdir(os.path.join(path, "state")):
        return path
    steps = sorted((int(d) for d in os.listdir(path) if d.isdigit()), reverse=True) if os.path.isdir(path) else []
    if not steps:
        raise InputNotFoundError(f"--checkpoint {path}: no checkpoint steps found")
    return os.path.join(path, str(steps[0]))


def restore_config(path: str) -> dict | None:
    """The config stored with a checkpoint (`path` as in `restore_variables`), without reading its
    arrays; None when it holds no copy."""
    step_dir = resolve_step_dir(path)
    if not os.path.isdir(os.path.join(step_dir, "config")):
        return None
    try:
        out = ocp.Checkpointer(ocp.CompositeCheckpointHandler()).restore(
            step_dir, args=ocp.args.Composite(config=ocp.args.JsonRestore()))
    except Exception as e:  # noqa: BLE001
        raise UnreadableInputError(f"--checkpoint {step_dir}: cannot read the stored config ({_first_line(e)})") from e
    return out["config"]


def restore_variables(path: str) -> tuple[dict, dict | None, int]:
    """Model variables of a checkpoint without building the train state (evaluation/prediction).

    `path`: a step directory (`.../checkpoints/1200`), a `checkpoints` directory or a workdir (latest
    step). Returns ({'student': {'params', 'batch_stats'}, 'teacher': {...}}, config dict or None, step)
    with host (NumPy) arrays.
    """
    step_dir = resolve_step_dir(path)
    # The stored shardings name the devices of the training run; restore onto this process's first
    # device instead, so a checkpoint from 8 GPUs can be evaluated on a laptop.
    try:
        meta = ocp.StandardCheckpointHandler().metadata(epath.Path(step_dir) / "state")
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(tuple(m.shape), m.dtype, sharding=device),
                              getattr(meta, "tree", meta))
    except Exception as e:  # noqa: BLE001
        raise UnreadableInputError(
            f"--checkpoint {step_dir}: cannot read the checkpoint's metadata ({_first_line(e)})") from e
    checkpointer = ocp.Checkpointer(ocp.CompositeCheckpointHandler())
    items = {"state": ocp.args.StandardRestore(target)}
    if os.path.isdir(os.path.join(step_dir, "config")):
        items["config"] = ocp.args.JsonRestore()
    try:
        out = checkpointer.restore(step_dir, args=ocp.args.Composite(**items))
    except Exception as e:  # noqa: BLE001
        raise UnreadableInputError(f"--checkpoint {step_dir}: cannot read the checkpoint ({_first_line(e)})") from e
    state = out["state"]
    variables = {"student": {"params": state["params"], "batch_stats": state.get("batch_stats", {}) or {}},
                 "teacher": state["teacher"]}
    step = int(os.path.basename(step_dir)) if os.path.basename(step_dir).isdigit() else int(state["step"])
    return variables, out.get("config") if "config" in items else None, step
