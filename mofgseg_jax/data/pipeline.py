"""grain input pipelines: the train iterator (labelled + unlabelled, or labelled only) and fixed-shape
validation batches.

Determinism: each stream is a `grain.MapDataset` over a global, infinitely repeated index sequence
(reshuffled every epoch from the seed); augmentation randomness is a per-record generator derived
from (seed, global position), so a batch depends only on the seed and the step — not on threads,
worker processes or the process count. Process p of P takes global positions p, p+P, ... before
batching, so processes see disjoint records within an epoch. The iterator's `get_state()` /
`set_state()` is grain's, so a restored iterator yields exactly the batches an uninterrupted one would.

One epoch (DESIGN.md §5) = one pass over the unlabelled split = `steps_per_epoch(data_cfg)` steps;
the labelled stream simply keeps cycling (repeated to the unlabelled length). A labelled-only run
(`labelled_only`, the loop's `train.mode='sup'`) reads no unlabelled split, and its epoch is one pass
over the labelled split, as in the published supervised baseline (`train_baseline_sup.py`). Both
streams are infinite: the training loop decides how many steps to take.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Callable, Iterator, Sequence

import grain
import numpy as np

from mofgseg_jax.data import transforms
from mofgseg_jax.data.decode import decode_record
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.specs import DatasetSpec, cfg_get, spec_from_config
from mofgseg_jax.data.splits import read_list, split_files
from mofgseg_jax.errors import InputError, InputNotFoundError

# A child of the training loop's "mofgseg" logger: skipped files also reach <workdir>/train.log.
log = logging.getLogger("mofgseg.data")

SOURCES = ("folder", "tfds")  # `data.source`: files under data.root, or launch/prepare_data.py's build
_REPORTED: set[str] = set()  # files already reported as skipped (warn once, not every epoch)


# ---------------------------------------------------------------------------------------------
# Sources
# ---------------------------------------------------------------------------------------------

def open_sources(data_cfg: Any, parts: Sequence[str] = ("labeled", "unlabeled", "val")) -> dict[str, Sequence]:
    """Raw-record sources of the config's split lists: {'labeled', 'unlabeled', 'val'} -> sequence.

    `data.source` = 'folder' reads files under `data.root`; 'tfds' reads the array_record build in
    `data.tfds_dir` (launch/prepare_data.py). Both yield the same records for `decode.py`.
    """
    check_source_settings(data_cfg, reads_edges="labeled" in parts)
    files = split_files(data_cfg.root, data_cfg.split, cfg_get(data_cfg, "split_dir", ""))
    skip = bool(cfg_get(data_cfg, "skip_invalid", False))
    edge_dir = data_cfg.edge_dir if cfg_get(data_cfg, "use_edge_maps", False) else ""
    source_kind = cfg_get(data_cfg, "source", "folder")
    out = {}
    for part in parts:
        entries = read_list(files[part])
        kwargs = dict(with_mask=part != "unlabeled", edge_dir=edge_dir if part == "labeled" else "",
                      skip_invalid=skip)
        if source_kind == "folder":
            from mofgseg_jax.data.folder_source import FolderSource
            src = FolderSource(data_cfg.root, entries, **kwargs)
        else:  # 'tfds' (check_source_settings)
            from mofgseg_jax.data.tfds_builder import TfdsSource
            src = TfdsSource(data_cfg.tfds_dir, data_cfg.name, entries,
                             subset="val" if part == "val" else "train", **kwargs)
        if len(src) == 0:
            raise DataError(f"{files[part]}: no usable entries left (all skipped)")
        out[part] = src
    return out


def check_source_settings(data_cfg: Any, *, reads_edges: bool = True) -> None:
    """Raises InputError for a `data.source` that is not one of `SOURCES`, or one without the folder it
    reads (`data.tfds_dir`, and with `reads_edges` the `data.edge_dir` of `data.use_edge_maps`: only
    the labelled split has edge maps). No file is opened: `config_checks` calls it before the workdir
    is written."""
    source_kind = cfg_get(data_cfg, "source", "folder")
    if source_kind not in SOURCES:
        raise InputError(f"data.source={source_kind!r}: choose from {', '.join(SOURCES)}")
    tfds_dir = cfg_get(data_cfg, "tfds_dir", "")
    if source_kind == "tfds" and not tfds_dir:
        raise InputError("data.source='tfds' needs data.tfds_dir (the --out of launch/prepare_data.py)")
    if source_kind == "tfds" and not os.path.isdir(tfds_dir):
        raise InputNotFoundError(f"data.tfds_dir={tfds_dir!r}: no such folder (the --out of launch/prepare_data.py)")
    if cfg_get(data_cfg, "use_edge_maps", False) and reads_edges:
        edge_dir = cfg_get(data_cfg, "edge_dir", "")
        if not edge_dir:
            raise InputError("data.use_edge_maps=True needs data.edge_dir (folder of <image stem>.png edge maps)")
        if not os.path.isdir(edge_dir):
            raise InputNotFoundError(f"data.edge_dir={edge_dir!r}: no such folder (of <image stem>.png edge maps)")


def dataset_sizes(data_cfg: Any, parts: Sequence[str] = ("labeled", "unlabeled", "val")) -> dict[str, int]:
    """Number of entries in labeled.txt / unlabeled.txt / val.txt, or those of `parts` (no file is
    opened but the lists)."""
    files = split_files(data_cfg.root, data_cfg.split, cfg_get(data_cfg, "split_dir", ""))
    return {part: len(read_list(files[part])) for part in parts}


def steps_per_epoch(data_cfg: Any, *, labelled_only: bool = False) -> int:
    """Train steps in one epoch = one pass over the unlabelled split at the global unlabelled batch,
    or with `labelled_only` over the labelled split at the global labelled batch."""
    part = "labeled" if labelled_only else "unlabeled"
    return max(1, dataset_sizes(data_cfg, (part,))[part] // int(data_cfg[f"batch_size_{part}"]))


class _Load:
    """index -> decoded example {'image'[, 'label', 'edge']}; picklable for worker processes.

    With `skip_invalid`, a record that fails to decode is reported once and replaced by the next
    good one (deterministically), so batch shapes and the index stream stay fixed.
    """

    def __init__(self, source: Sequence, spec: DatasetSpec, *, with_mask: bool, with_edge: bool,
                 skip_invalid: bool):
        self.source, self.spec = source, spec
        self.with_mask, self.with_edge, self.skip_invalid = with_mask, with_edge, skip_invalid

    def decode(self, index: int) -> dict[str, np.ndarray]:
        return decode_record(self.source[index], num_classes=self.spec.num_classes,
                             ignore_index=self.spec.ignore_index, with_mask=self.with_mask,
                             with_edge=self.with_edge)

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        n = len(self.source)
        for offset in range(n):
            try:
                return self.decode((index + offset) % n)
            except DataError as e:
                if not self.skip_invalid:
                    raise
                if str(e) not in _REPORTED:
                    _REPORTED.add(str(e))
                    log.warning("skipping: %s", e)
        raise DataError("every record of the split failed to decode (see the warnings above)")


class _Augment:
    """(example, rng) -> train view; picklable (a plain callable class, not a lambda)."""

    def __init__(self, **kwargs):
        self.kwargs = kwargs

    def __call__(self, example: dict[str, np.ndarray], rng: np.random.Generator) -> dict[str, np.ndarray]:
        return transforms.train_view(example, rng, **self.kwargs)


def _stream(load: Callable, augment: Callable, num_records: int, *, shuffle_seed: int, augment_seed: int,
            process_index: int, process_count: int, batch_size: int) -> grain.MapDataset:
    """Infinite per-process batches of one stream (see the module docstring for the determinism)."""
    ds = grain.MapDataset.range(num_records).shuffle(seed=shuffle_seed).repeat(None)
    ds = ds.map(load).random_map(augment, seed=augment_seed)  # rng from (seed, global position)
    ds = ds[process_index::process_count]
    return ds.batch(batch_size, drop_remainder=True)


def _per_process(global_batch: int, process_count: int, key: str) -> int:
    if global_batch % process_count:
        raise InputError(f"data.{key}={global_batch} (global) is not divisible by process_count={process_count}")
    return global_batch // process_count


class _ToTrainBatch:
    def __call__(self, pair: tuple[dict, dict]) -> dict[str, dict[str, np.ndarray]]:
        labeled, unlabeled = pair
        return {"labeled": labeled, "unlabeled": {"image": unlabeled["image"]}}


class _ToLabelledBatch:
    def __call__(self, labeled: dict) -> dict[str, dict[str, np.ndarray]]:
        return {"labeled": labeled}


def _with_inside(data_cfg: Any, with_inside: bool | None) -> bool:
    """The labelled 'inside' map is needed only where edge targets are derived on the fly."""
    if with_inside is None:
        return not bool(cfg_get(data_cfg, "use_edge_maps", False))
    return bool(with_inside)


def train_streams(data_cfg: Any, *, seed: int, process_index: int = 0, process_count: int = 1,
                  with_inside: bool | None = None, labelled_only: bool = False) -> dict[str, grain.MapDataset]:
    """{'labeled', 'unlabeled'}: each stream's infinite per-process batches as a `grain.MapDataset`.

    with_inside: whether labelled examples carry 'inside' (`transforms.train_view`); None = when
    edge targets are derived on the fly (not `data.use_edge_maps`).
    labelled_only: {'labeled'} only; unlabeled.txt is not read. The labelled stream is the same
    either way (each stream has its own seeds).
    """
    spec = spec_from_config(data_cfg)
    sources = open_sources(data_cfg, ("labeled",) if labelled_only else ("labeled", "unlabeled"))
    skip = bool(cfg_get(data_cfg, "skip_invalid", False))
    with_edge = bool(cfg_get(data_cfg, "use_edge_maps", False))
    with_inside = _with_inside(data_cfg, with_inside)
    view = dict(crop_size=int(data_cfg.crop_size), scale_range=tuple(data_cfg.scale_range),
                ignore_index=spec.ignore_index, flip_prob=float(cfg_get(data_cfg, "flip_prob", 0.5)))
    strong = dict(cfg_get(data_cfg, "strong_view", None) or {})
    seeds = np.random.SeedSequence(seed).generate_state(4)  # independent shuffle/augment seeds per stream
    bl = _per_process(int(data_cfg.batch_size_labeled), process_count, "batch_size_labeled")
    bu = _per_process(int(data_cfg.batch_size_unlabeled), process_count, "batch_size_unlabeled")
    common = dict(process_index=process_index, process_count=process_count)
    labeled = _stream(
        _Load(sources["labeled"], spec, with_mask=True, with_edge=with_edge, skip_invalid=skip),
        _Augment(strong=True, with_inside=with_inside, **view, **strong), len(sources["labeled"]),
        shuffle_seed=int(seeds[0]), augment_seed=int(seeds[1]), batch_size=bl, **common)
    if labelled_only:
        return {"labeled": labeled}
    unlabeled = _stream(
        _Load(sources["unlabeled"], spec, with_mask=False, with_edge=False, skip_invalid=skip),
        _Augment(strong=False, **view), len(sources["unlabeled"]),
        shuffle_seed=int(seeds[2]), augment_seed=int(seeds[3]), batch_size=bu, **common)
    return {"labeled": labeled, "unlabeled": unlabeled}


def train_dataset(data_cfg: Any, *, seed: int, process_index: int = 0, process_count: int = 1,
                  with_inside: bool | None = None, labelled_only: bool = False) -> grain.MapDataset:
    """The train batches as an (infinite) `grain.MapDataset`; `make_train_iterator` iterates it."""
    streams = train_streams(data_cfg, seed=seed, process_index=process_index, process_count=process_count,
                            with_inside=with_inside, labelled_only=labelled_only)
    if labelled_only:
        return streams["labeled"].map(_ToLabelledBatch())
    labeled, unlabeled = streams["labeled"], streams["unlabeled"]
    n = min(len(labeled), len(unlabeled))  # both are effectively infinite; zip needs equal lengths
    return grain.experimental.ZipMapDataset([labeled[:n], unlabeled[:n]]).map(_ToTrainBatch())


def _ensure_absl_flags_parsed() -> None:
    """grain's worker processes read absl flags; outside an absl app (tests, notebooks) nothing has
    parsed them, which would fail with UnparsedFlagAccessError. Defaults are what we want."""
    from absl import flags

    if not flags.FLAGS.is_parsed():
        flags.FLAGS.mark_as_parsed()


# Read threads and read-ahead buffer (in batches) per stream where a config lacks `data.num_threads`
# / `data.prefetch` (one stored by an older run); configs/common.py holds the same defaults.
DEFAULT_NUM_THREADS = 4
DEFAULT_PREFETCH = 4


def _read_options(num_threads: int, prefetch: int) -> grain.ReadOptions:
    return grain.ReadOptions(num_threads=num_threads, prefetch_buffer_size=prefetch)


def _threads_prefetch(data_cfg: Any, num_threads: int | None, prefetch: int | None) -> tuple[int, int]:
    """(num_threads, prefetch) of a stream: the given values, else `data.num_threads`, `data.prefetch`."""
    if num_threads is None:
        num_threads = int(cfg_get(data_cfg, "num_threads", DEFAULT_NUM_THREADS))
    if prefetch is None:
        prefetch = int(cfg_get(data_cfg, "prefetch", DEFAULT_PREFETCH))
    return num_threads, prefetch


def iterate(ds: grain.MapDataset, *, num_workers: int = 0, num_threads: int = DEFAULT_NUM_THREADS,
            prefetch: int = DEFAULT_PREFETCH) -> grain.DatasetIterator:
    """A checkpointable iterator over `ds`: `num_threads` prefetch threads in this process reading
    `prefetch` elements ahead, and with `num_workers` > 0 that many worker processes (same elements,
    in the same order)."""
    it_ds = ds.to_iter_dataset(_read_options(num_threads, prefetch))
    if num_workers > 0:
        _ensure_absl_flags_parsed()
        it_ds = it_ds.mp_prefetch(grain.MultiprocessingOptions(num_workers=num_workers))
    return iter(it_ds)


def make_train_iterator(data_cfg: Any, *, seed: int, process_index: int = 0, process_count: int = 1,
                        num_threads: int | None = None, prefetch: int | None = None,
                        with_inside: bool | None = None, labelled_only: bool = False) -> grain.DatasetIterator:
    """Iterator of this process's train batches (per-process batch = global / process_count):

    {'labeled': {'image': uint8[bl,C,C,3], 'label': uint8[bl,C,C] (255 = ignore: void or padding)
                 [, 'edge': uint8[bl,C,C] in {0,1} when data.use_edge_maps]
                 [, 'inside': uint8[bl,C,C], 1 = image pixel, 0 = crop padding, with `with_inside`]},
     'unlabeled': {'image': uint8[bu,C,C,3]}}   with C = data.crop_size ('unlabeled' not with
    `labelled_only`, whose epoch `steps_per_epoch(..., labelled_only=True)` counts).

    with_inside: None = when edge targets are derived on the fly (not data.use_edge_maps); the
    training loop passes `train.step.wants_inside_map(config)`, which also leaves it out when no
    step would read it.

    `data.num_workers` > 0 decodes/augments in that many worker processes (the same batches).
    `num_threads` / `prefetch`: grain read threads and batches read ahead; None = `data.num_threads`
    / `data.prefetch`.
    `it.get_state()` / `it.set_state(state)` save and restore the position exactly; a state restores
    into an iterator made with the same config, seed, process index/count and num_workers.
    """
    ds = train_dataset(data_cfg, seed=seed, process_index=process_index, process_count=process_count,
                       with_inside=with_inside, labelled_only=labelled_only)
    num_threads, prefetch = _threads_prefetch(data_cfg, num_threads, prefetch)
    return iterate(ds, num_workers=int(cfg_get(data_cfg, "num_workers", 0) or 0), num_threads=num_threads,
                   prefetch=prefetch)


# ---------------------------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------------------------

class _LoadPadded:
    """Global val index -> padded example; indices past the split are blank padding (valid=False)."""

    def __init__(self, load: _Load, pad_size: int | tuple[int, int], ignore_index: int):
        self.load, self.pad_size, self.ignore_index = load, pad_size, ignore_index

    def blank(self) -> dict[str, np.ndarray]:
        hp, wp = transforms.canvas_hw(self.pad_size)
        return {"image": np.zeros((hp, wp, 3), np.uint8), "label": np.full((hp, wp), self.ignore_index, np.uint8),
                "height": np.int32(0), "width": np.int32(0), "valid": np.bool_(False)}

    def __call__(self, index: int) -> dict[str, np.ndarray]:
        if index >= len(self.load.source):
            return self.blank()
        try:
            example = self.load.decode(index)
        except DataError as e:
            if not self.load.skip_invalid:
                raise
            log.warning("skipping: %s", e)  # counted out of the metrics, not replaced
            return self.blank()
        return transforms.pad_to(example, self.pad_size, ignore_index=self.ignore_index,
                                 where=self.load.source.describe(index))


def check_val_canvas(data_cfg: Any) -> None:
    """Raises `DataError` when a validation image does not fit the `data.eval_pad_size` canvas, read
    from the folder source's image headers (no pixel decoded), so that the mistake ends a run at its
    start, not at its first evaluation hours in. A TFDS build is checked as it is read, and a list or
    file that cannot be read is left to the pipeline, which reports it (or skips it): this check must
    not make an evaluation report a missing dataset before a bad --output."""
    if cfg_get(data_cfg, "source", "folder") != "folder":
        return
    from PIL import Image  # noqa: PLC0415

    hp, wp = transforms.canvas_hw(data_cfg.eval_pad_size)
    val_list = split_files(data_cfg.root, data_cfg.split, cfg_get(data_cfg, "split_dir", ""))["val"]
    try:
        entries = read_list(val_list)
    except DataError:
        return
    first, count, need_h, need_w = None, 0, hp, wp
    for entry in entries:
        try:
            with Image.open(os.path.join(data_cfg.root, entry.image)) as img:
                w, h = img.size
        except Exception:  # noqa: BLE001 (missing or damaged: the pipeline's one-line error applies)
            continue
        if h > hp or w > wp:
            first, count = first or (entry, h, w), count + 1
            need_h, need_w = max(need_h, h), max(need_w, w)
    if first is not None:
        entry, h, w = first
        raise DataError(f"data.eval_pad_size={data_cfg.eval_pad_size!r} (height {hp}, width {wp}) is smaller than "
                        f"{count} validation image(s), first {entry.image} ({entry.where}) of height {h}, width {w}; "
                        f"set it to at least ({need_h}, {need_w})")


class ValBatches:
    """Re-iterable fixed-shape validation batches of one process:

    {'image': uint8[B,Hp,Wp,3], 'label': uint8[B,Hp,Wp] (255 in padding), 'height': int32[B],
     'width': int32[B], 'valid': bool[B]}  with B = data.eval_batch_size and (Hp, Wp) the canvas
    `data.eval_pad_size` (an int: a square; or (height, width)).

    Every process gets the same number of batches (blank `valid=False` samples fill the end), so
    collective evaluation code never waits on a process that ran out.
    """

    def __init__(self, dataset: grain.MapDataset, num_images: int, read_options: grain.ReadOptions):
        self.dataset, self.num_images, self.read_options = dataset, num_images, read_options

    def __len__(self) -> int:
        return len(self.dataset)

    def __iter__(self) -> Iterator[dict[str, np.ndarray]]:
        return iter(self.dataset.to_iter_dataset(self.read_options))


def make_val_batches(data_cfg: Any, *, process_index: int = 0, process_count: int = 1,
                     num_threads: int | None = None, prefetch: int | None = None) -> ValBatches:
    """Validation batches of `val.txt` in list order, padded to the `data.eval_pad_size` canvas.

    The canvas is an int (a square) or (height, width); an image of exactly the canvas size is not
    padded. Process p takes images p, p+P, ...; `valid` marks real samples. `num_threads` /
    `prefetch`: grain read threads and batches read ahead; None = `data.num_threads` / `data.prefetch`.
    """
    pad_size = data_cfg.eval_pad_size
    transforms.canvas_hw(pad_size)  # a malformed value is a one-line error before any file is read
    spec = spec_from_config(data_cfg)
    source = open_sources(data_cfg, ("val",))["val"]
    load = _Load(source, spec, with_mask=True, with_edge=False,
                 skip_invalid=bool(cfg_get(data_cfg, "skip_invalid", False)))
    b = int(data_cfg.eval_batch_size)
    chunk = b * process_count
    total = -(-len(source) // chunk) * chunk  # round up so every process gets the same batch count
    ds = grain.MapDataset.range(total)[process_index::process_count]
    ds = ds.map(_LoadPadded(load, pad_size, spec.ignore_index)).batch(b)
    return ValBatches(ds, len(source), _read_options(*_threads_prefetch(data_cfg, num_threads, prefetch)))
