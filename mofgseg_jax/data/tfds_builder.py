"""TFDS builders (array_record, no TensorFlow) for uavseg / tas500 / loveda / pascal / demo / custom,
and the matching read side, `TfdsSource`.

Records hold the *encoded* JPEG/PNG bytes (`tfds.features.Scalar(dtype=object)`, serialised without
TF) plus the root-relative paths, so a build is a faithful, compact copy of the raw folder; decoding
and validation stay in `decode.py`, shared with the folder source. `tfds.features.Image` is not
used: it needs TensorFlow. Examples are stored in list order (`disable_shuffling`), and the
image-path -> record index table lives in the build's metadata (`metadata.json`), so split lists
select records without scanning the data.

Two TFDS splits: 'train' = every image named by any labeled/unlabeled list under the splits folder,
'val' = val.txt. Which images are labelled is decided at read time by the config's split lists.
Build with `launch/prepare_data.py`; read with `data.source='tfds'`, `data.tfds_dir=<--out>`.
"""

from __future__ import annotations

import glob
import logging
import os
import shutil
from typing import Any, Sequence

import numpy as np
import tensorflow_datasets as tfds
from tqdm import tqdm

from mofgseg_jax.data.decode import decode_image, decode_mask
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.folder_source import edge_path
from mofgseg_jax.data.specs import DatasetSpec, available_specs, load_spec
from mofgseg_jax.data.splits import Entry, read_list
from mofgseg_jax.errors import InputError, InputNotFoundError, OutputExistsError
from mofgseg_jax.outputs import check_writable

log = logging.getLogger("mofgseg.data")  # see data/pipeline.py


def builder_name(dataset: str) -> str:
    """TFDS name of a dataset's build, e.g. 'mofgseg_uavseg' (prefixed: no clash with TFDS's own)."""
    return f"mofgseg_{dataset}"


def collect_entries(splits_dir: str) -> dict[str, list[Entry]]:
    """{'train': union of every <split>/{labeled,unlabeled}.txt, 'val': val.txt}, first occurrence
    kept; train entries named by a labeled list are flagged by `labeled_images()`."""
    train: dict[str, Entry] = {}
    for list_file in sorted(glob.glob(os.path.join(splits_dir, "*", "*.txt"))):
        if os.path.basename(list_file) in ("labeled.txt", "unlabeled.txt"):
            for entry in read_list(list_file):
                train.setdefault(entry.image, entry)
    if not train:
        raise DataError(f"{splits_dir}: no <split>/labeled.txt or unlabeled.txt lists found")
    val = read_list(os.path.join(splits_dir, "val.txt"))
    return {"train": sorted(train.values(), key=lambda e: e.image), "val": val}


def labeled_images(splits_dir: str) -> set[str]:
    out = set()
    for list_file in glob.glob(os.path.join(splits_dir, "*", "labeled.txt")):
        out.update(e.image for e in read_list(list_file))
    return out


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class SegmentationBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared builder; one registered subclass per dataset (`mofgseg_<name>`).

    Construct with `raw_dir`, `splits_dir` (and `spec`) to build; without them to read a build.
    During a build `self.summary` collects counts, the class pixel histogram and skipped files.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Encoded image/mask bytes + paths, array_record."}
    DATASET = ""
    # TFDS looks for a download-checksums file beside the builder's code via `importlib_resources`,
    # which it declares only for Python < 3.9; nothing is downloaded here, so skip the lookup.
    code_path = None
    url_infos = None

    def __init__(self, *, raw_dir: str = "", splits_dir: str = "", spec: DatasetSpec | None = None,
                 skip_invalid: bool = False, progress: bool = True, **kwargs):
        self.raw_dir, self.splits_dir, self.skip_invalid, self.progress = raw_dir, splits_dir, skip_invalid, progress
        self.spec = spec
        self.summary: dict[str, Any] = {}
        kwargs.setdefault("file_format", "array_record")
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=f"{self.DATASET}: encoded images + id masks (mofgseg_jax/data/tfds_builder.py)",
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Scalar(dtype=np.object_),  # encoded JPEG/PNG bytes
                "mask": tfds.features.Scalar(dtype=np.object_),  # encoded PNG of ids; b'' if none
                "image_path": tfds.features.Text(),  # root-relative, as in the split lists
                "mask_path": tfds.features.Text(),
            }),
            metadata=tfds.core.MetadataDict(),
            disable_shuffling=True,  # records in list order: index tables stay valid
        )

    def _split_generators(self, dl_manager):
        if not (self.raw_dir and self.splits_dir and self.spec):
            raise InputError("building needs raw_dir, splits_dir and spec (see launch/prepare_data.py)")
        entries = collect_entries(self.splits_dir)
        labeled = labeled_images(self.splits_dir)
        k = self.spec.num_classes
        self.summary = {"records": {}, "skipped": [], "class_pixels": {s: [0] * k for s in entries}}
        self._kept = {s: [] for s in entries}
        self.info.metadata["image_paths"] = self._kept  # filled while generating, saved at the end
        self.info.metadata["dataset"] = self.DATASET
        return {subset: self._generate_examples(subset, items, labeled)
                for subset, items in entries.items()}

    def _generate_examples(self, subset: str, entries: Sequence[Entry], labeled: set[str]):
        spec = self.spec
        hist = np.zeros(256, np.int64)
        for entry in tqdm(entries, desc=f"{self.DATASET} {subset}", unit="img", disable=not self.progress):
            try:
                record, mask = self._load(entry, require_mask=subset == "val" or entry.image in labeled)
            except DataError as e:
                if not self.skip_invalid:
                    raise
                log.warning("skipping: %s", e)
                self.summary["skipped"].append(str(e))
                continue
            if mask is not None:
                hist += np.bincount(mask.ravel(), minlength=256)
            self._kept[subset].append(entry.image)
            yield len(self._kept[subset]) - 1, record
        self.summary["records"][subset] = len(self._kept[subset])
        self.summary["class_pixels"][subset] = [int(v) for v in hist[: spec.num_classes]]
        self.summary.setdefault("ignore_pixels", {})[subset] = int(hist[spec.ignore_index])

    def _load(self, entry: Entry, *, require_mask: bool) -> tuple[dict[str, Any], np.ndarray | None]:
        """Reads and validates one entry (same checks as training reads), returns record + mask."""
        image_path = os.path.join(self.raw_dir, entry.image)
        mask_path = os.path.join(self.raw_dir, entry.mask)
        if not os.path.isfile(image_path):
            raise DataError(f"{image_path} ({entry.where}): file not found")
        image_bytes = _read(image_path)
        image = decode_image(image_bytes, path=image_path, where=entry.where)
        mask_bytes, mask = b"", None
        if os.path.isfile(mask_path):
            mask_bytes = _read(mask_path)
            mask = decode_mask(mask_bytes, num_classes=self.spec.num_classes, ignore_index=self.spec.ignore_index,
                               path=mask_path, where=entry.where, image_shape=image.shape)
        elif require_mask:
            raise DataError(f"{mask_path} ({entry.where}): file not found")
        return {"image": image_bytes, "mask": mask_bytes, "image_path": entry.image, "mask_path": entry.mask}, mask


def _builder_class(dataset: str) -> type[SegmentationBuilder]:
    """`Mofgseg<Dataset>`, TFDS name `mofgseg_<dataset>`: defining the class registers it with TFDS, so
    that `tfds.data_source('mofgseg_<dataset>', ...)` finds it."""
    cls_name = "Mofgseg" + "".join(part.capitalize() for part in dataset.split("_"))
    return type(cls_name, (SegmentationBuilder,), {"name": builder_name(dataset), "DATASET": dataset,
                                                   "__module__": __name__})


# One builder per file under data_specs/: a new dataset needs its spec file only.
BUILDERS = {dataset: _builder_class(dataset) for dataset in available_specs()}


def build(dataset: str, raw_dir: str, splits_dir: str, out_dir: str, *, spec: DatasetSpec | None = None,
          skip_invalid: bool = False, progress: bool = True, overwrite: bool = False) -> dict[str, Any]:
    """Builds `<out_dir>/mofgseg_<dataset>/1.0.0/*.array_record`; returns the build summary.

    TFDS keeps a build that exists, whatever the raw folder and the lists hold now, so an existing
    one is an error unless `overwrite`. Then it is moved aside (`1.0.0.previous`, in the builder's
    own folder), and deleted only once the new build is complete; a build that fails puts it back.
    """
    # Inputs first, then --out: a mistyped --raw left an --out holding TFDS's empty folders and
    # was reported as '<raw>/splits: no lists found'.
    for flag, folder in (("--raw", raw_dir), ("--splits", splits_dir)):
        if not os.path.isdir(folder):
            what = "is a file, not a folder" if os.path.isfile(folder) else "no such folder"
            raise InputNotFoundError(f"{flag} {folder}: {what}")
    check_writable(out_dir, "--out")
    spec = spec or load_spec(dataset)
    version_dir = os.path.join(out_dir, builder_name(dataset), str(SegmentationBuilder.VERSION))
    previous = ""
    if os.path.lexists(version_dir):
        if not overwrite:
            raise OutputExistsError(f"--out {out_dir}: {version_dir} holds an earlier {dataset} build; pass "
                                    "--overwrite to rebuild it, or choose another --out (nothing was changed)")
        previous = version_dir + ".previous"
        if os.path.lexists(previous):
            raise OutputExistsError(f"--out {out_dir}: {previous} is left from a rebuild that was stopped; "
                                    f"move it away (or back to {version_dir}) first")
        os.rename(version_dir, previous)
    try:
        builder = BUILDERS[dataset](data_dir=out_dir, raw_dir=raw_dir, splits_dir=splits_dir, spec=spec,
                                    skip_invalid=skip_invalid, progress=progress)
        if os.path.abspath(os.fspath(builder.data_path)) != os.path.abspath(version_dir):
            raise RuntimeError(f"TFDS builds into {builder.data_path}, not {version_dir}: update build()")
        tfds.disable_progress_bar()  # our own tqdm bar (`progress`) shows totals; TFDS's would not
        builder.download_and_prepare(download_dir=os.path.join(out_dir, "downloads"))
    except BaseException:
        if previous and not os.path.lexists(version_dir):
            os.rename(previous, version_dir)
        raise
    if previous:
        shutil.rmtree(previous)
    return {"dataset": dataset, "out": builder.data_dir, "class_names": list(spec.class_names),
            **builder.summary}


class TfdsSource(Sequence[dict[str, Any]]):
    """Raw records of split-list `entries` from a TFDS build (same record format as `FolderSource`).

    Entries are matched to records by image path; an entry missing from the build is an error
    naming the list line (or, with `skip_invalid`, a warning and the entry dropped).
    """

    def __init__(self, tfds_dir: str, dataset: str, entries: Sequence[Entry], *, subset: str,
                 with_mask: bool = True, edge_dir: str = "", skip_invalid: bool = False):
        name = builder_name(dataset)
        if dataset not in BUILDERS:
            raise InputError(f"data.name={dataset!r}: no TFDS builder; choose one of {', '.join(BUILDERS)}")
        try:
            builder = tfds.builder(name, data_dir=tfds_dir)
            self.records = tfds.data_source(name, data_dir=tfds_dir, split=subset, download=False)
        except Exception as e:  # TFDS raises several types for a missing/partial build
            raise DataError(f"{tfds_dir}: no readable TFDS build {name!r} split {subset!r} "
                            f"(run launch/prepare_data.py --out {tfds_dir}): {e}") from None
        paths = (builder.info.metadata or {}).get("image_paths", {}).get(subset)
        if paths is None:
            raise DataError(f"{tfds_dir}/{name}: build has no image_paths metadata; rebuild it")
        index = {p: i for i, p in enumerate(paths)}
        self.tfds_dir, self.with_mask, self.edge_dir = tfds_dir, with_mask, edge_dir
        self.build_dir, self.subset = os.fspath(builder.data_dir), subset
        self.entries, self.indices, self.skipped = [], [], []
        for entry in entries:
            problem = None
            if entry.image not in index:
                problem = f"{entry.image} ({entry.where}): not in the TFDS build {tfds_dir}/{name} [{subset}]"
            elif edge_dir and not os.path.isfile(edge_path(edge_dir, entry.image)):
                problem = f"{edge_path(edge_dir, entry.image)} ({entry.where}): file not found"
            if problem is None:
                self.entries.append(entry)
                self.indices.append(index[entry.image])
            elif skip_invalid:
                log.warning("skipping: %s", problem)
                self.skipped.append(problem)
            else:
                raise DataError(problem)

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self, index: int) -> str:
        entry = self.entries[index]
        return f"{entry.image} in {self.tfds_dir} ({entry.where})"

    def _read_record(self, index: int) -> dict[str, Any]:
        """The build's record of entry `index`; a damaged build (a truncated or corrupted array_record
        file) is a `DataError` naming the build folder, the record and the list line."""
        entry, number = self.entries[index], self.indices[index]
        try:
            record = self.records[number]
            stored = record["image_path"]
        except Exception as e:  # array_record raises RuntimeError ('Corrupted Riegeli/records file ...')
            problem = " ".join(str(e).split())  # one line
        else:
            # A file cut at a 64 KB block boundary reads back as records of None, without an error.
            if (stored.decode() if isinstance(stored, bytes) else stored) == entry.image:
                return record
            problem = f"the record holds image {stored!r}"
        raise DataError(f"{self.build_dir} [{self.subset}] record {number} ({entry.image}, {entry.where}): "
                        f"damaged build, cannot read it ({problem}); rebuild it with launch/prepare_data.py "
                        "--overwrite")

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        record = self._read_record(index)
        where = f"{entry.where}, TFDS build {self.tfds_dir}"
        mask = record["mask"] if self.with_mask else None
        if self.with_mask and not mask:
            raise DataError(f"{entry.mask} ({where}): mask file was missing when the build was made")
        epath = edge_path(self.edge_dir, entry.image) if self.edge_dir else ""
        return {"image": record["image"], "mask": mask, "edge": _read(epath) if epath else None,
                "image_path": entry.image, "mask_path": entry.mask, "edge_path": epath, "where": where}
