"""TFDS build (array_record, no TensorFlow): a tiny raw folder -> prepare_data -> read back the same
bytes and labels; the tfds source feeds the pipeline exactly like the folder source."""

import io
import sys

import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from mofgseg_jax.data import demo, pipeline
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.splits import read_list


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    from launch.prepare_data import main

    raw = tmp_path_factory.mktemp("raw")
    demo.generate(str(raw), num_train=12, num_val=3, size=32, ratios=("1_4", "1_2"))
    out = tmp_path_factory.mktemp("tfds")
    summary = main(["--dataset", "demo", "--raw", str(raw), "--out", str(out)])
    return raw, out, summary


def _cfg(raw, **overrides):
    config = base_config()
    config.model.num_classes = 8
    d = config.data
    d.name, d.root, d.split, d.crop_size = "demo", str(raw), "1_4", 24
    d.batch_size_labeled, d.batch_size_unlabeled, d.eval_batch_size, d.eval_pad_size = 3, 3, 2, 32
    for key, value in overrides.items():
        setattr(d, key, value)
    return d


def test_build_summary_counts_and_histogram(built):
    raw, _, summary = built
    assert summary["records"] == {"train": 12, "val": 3}
    assert summary["lists"]["1_4/labeled.txt"] == 3 and summary["lists"]["1_2/unlabeled.txt"] == 6
    ids = [np.asarray(Image.open(raw / e.mask)) for e in read_list(str(raw / "splits" / "val.txt"))]
    expected = np.bincount(np.concatenate([m.ravel() for m in ids]), minlength=8)
    assert summary["class_pixels"]["val"] == expected.tolist() and summary["skipped"] == []


def test_records_read_back_equal_bytes_and_labels(built):
    from mofgseg_jax.data.tfds_builder import TfdsSource

    raw, out, _ = built
    for subset, list_file in (("train", "1_2/labeled.txt"), ("val", "val.txt")):
        entries = read_list(str(raw / "splits" / list_file))
        source = TfdsSource(str(out), "demo", entries, subset=subset)
        assert len(source) == len(entries)
        for i, entry in enumerate(entries):
            record = source[i]
            assert record["image"] == (raw / entry.image).read_bytes()
            assert record["mask"] == (raw / entry.mask).read_bytes()
            np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(record["mask"]))),
                                          np.asarray(Image.open(raw / entry.mask)))
    assert "tensorflow" not in sys.modules


def test_tfds_source_gives_the_folder_source_batches(built):
    raw, out, _ = built
    folder = next(pipeline.make_train_iterator(_cfg(raw), seed=5))
    tfds = next(pipeline.make_train_iterator(_cfg(raw, source="tfds", tfds_dir=str(out)), seed=5))
    for stream in ("labeled", "unlabeled"):
        for key in folder[stream]:
            np.testing.assert_array_equal(folder[stream][key], tfds[stream][key])
    val_f = list(pipeline.make_val_batches(_cfg(raw)))
    val_t = list(pipeline.make_val_batches(_cfg(raw, source="tfds", tfds_dir=str(out))))
    for a, b in zip(val_f, val_t, strict=True):
        for key in a:
            np.testing.assert_array_equal(a[key], b[key])


def test_list_entry_missing_from_the_build_names_the_line(built, tmp_path):
    raw, out, _ = built
    split = tmp_path / "s" / "x"
    split.mkdir(parents=True)
    (split / "labeled.txt").write_text("gt_jpg/train/00000.jpg label_png/train/00000.png\n"
                                       "gt_jpg/train/99999.jpg label_png/train/99999.png\n")
    (split / "unlabeled.txt").write_text("gt_jpg/train/00001.jpg label_png/train/00001.png\n")
    with pytest.raises(DataError, match=r"99999\.jpg .*labeled\.txt line 2\): not in the TFDS build"):
        pipeline.make_train_iterator(_cfg(raw, source="tfds", tfds_dir=str(out), split_dir=str(split)), seed=0)


def test_build_rejects_a_bad_mask_naming_file_and_line_or_skips_it(tmp_path):
    from mofgseg_jax.data.tfds_builder import build

    raw = tmp_path / "raw"
    demo.generate(str(raw), num_train=4, num_val=2, size=16, ratios=("1_2",))
    bad = read_list(str(raw / "splits" / "val.txt"))[1]
    Image.fromarray(np.full((16, 16), 42, np.uint8)).save(raw / bad.mask)
    with pytest.raises(DataError, match=rf"{bad.mask} \(.*val\.txt line 2\): mask has values 42"):
        build("demo", str(raw), str(raw / "splits"), str(tmp_path / "out1"), progress=False)
    summary = build("demo", str(raw), str(raw / "splits"), str(tmp_path / "out2"), skip_invalid=True,
                    progress=False)
    assert summary["records"] == {"train": 4, "val": 1} and len(summary["skipped"]) == 1
    assert bad.mask in summary["skipped"][0]


def _files(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def test_building_into_an_existing_out_is_refused_and_changes_nothing(built):
    from launch.prepare_data import main
    from mofgseg_jax.errors import OutputExistsError

    raw, out, _ = built
    before = _files(out)
    with pytest.raises(OutputExistsError, match=rf"--out {out}: {out}/mofgseg_demo/1\.0\.0 holds an earlier demo "
                                                r"build; pass --overwrite to rebuild it"):
        main(["--dataset", "demo", "--raw", str(raw), "--out", str(out)])
    assert _files(out) == before


def _small_build(tmp_path):
    from launch.prepare_data import main

    raw, out = tmp_path / "raw", tmp_path / "tfds"
    demo.generate(str(raw), num_train=4, num_val=2, size=16, ratios=("1_2",))
    main(["--dataset", "demo", "--raw", str(raw), "--out", str(out)])
    return raw, out


def test_overwrite_rebuilds_from_the_current_lists(tmp_path):
    from launch.prepare_data import main
    from mofgseg_jax.data.tfds_builder import TfdsSource

    raw, out = _small_build(tmp_path)
    val = raw / "splits" / "val.txt"
    val.write_text(val.read_text().splitlines()[0] + "\n")  # one val image instead of two
    summary = main(["--dataset", "demo", "--raw", str(raw), "--out", str(out), "--overwrite"])
    assert summary["records"] == {"train": 4, "val": 1}
    assert len(TfdsSource(str(out), "demo", read_list(str(val)), subset="val")) == 1
    assert sorted(p.name for p in (out / "mofgseg_demo").iterdir()) == ["1.0.0"]  # the old build is gone


def test_a_failed_overwrite_keeps_the_previous_build(tmp_path):
    from launch.prepare_data import main
    from mofgseg_jax.data.tfds_builder import TfdsSource

    raw, out = _small_build(tmp_path)
    entries = read_list(str(raw / "splits" / "val.txt"))
    Image.fromarray(np.full((16, 16), 42, np.uint8)).save(raw / entries[1].mask)
    with pytest.raises(DataError, match="mask has values 42"):
        main(["--dataset", "demo", "--raw", str(raw), "--out", str(out), "--overwrite"])
    assert sorted(p.name for p in (out / "mofgseg_demo").iterdir()) == ["1.0.0"]
    source = TfdsSource(str(out), "demo", entries, subset="val")
    assert len(source) == 2 and source[0]["image"] == (raw / entries[0].image).read_bytes()


def test_a_damaged_build_names_the_build_record_and_list_line(tmp_path):
    from mofgseg_jax.data.tfds_builder import TfdsSource

    raw, out = _small_build(tmp_path)
    entries = read_list(str(raw / "splits" / "val.txt"))
    (records,) = (out / "mofgseg_demo" / "1.0.0").glob("*-val.array_record-*")
    intact = records.read_bytes()
    flipped = intact[:200] + bytes(b ^ 0x5A for b in intact[200:2000]) + intact[2000:]
    # Corrupted bytes make array_record raise; a file cut at 64 KB reads back as empty records.
    for damaged in (flipped, intact[:65536]):
        records.write_bytes(damaged)
        source = TfdsSource(str(out), "demo", entries, subset="val")
        with pytest.raises(DataError, match=rf"{out}/mofgseg_demo/1\.0\.0 \[val\] record 0 \({entries[0].image}, "
                                            r".*val\.txt line 1\): damaged build, cannot read it \(.*\); rebuild"):
            source[0]


def test_an_unwritable_out_is_a_clear_error(tmp_path):
    from launch.prepare_data import main

    raw = tmp_path / "raw"
    demo.generate(str(raw), num_train=2, num_val=1, size=16, ratios=("1_2",))
    blocker = tmp_path / "file"
    blocker.write_text("a file, not a folder")
    with pytest.raises(PermissionError, match=rf"--out {blocker}/tfds: cannot create or write there"):
        main(["--dataset", "demo", "--raw", str(raw), "--out", str(blocker / "tfds")])


@pytest.mark.parametrize("flag", ["--raw", "--splits"])
def test_a_missing_raw_or_splits_folder_is_named_and_nothing_is_created(tmp_path, flag):
    # A mistyped --raw was '<raw>/splits: no lists found' and left --out holding TFDS's empty folders.
    from launch.prepare_data import main
    from mofgseg_jax.errors import InputNotFoundError

    raw = tmp_path / "raw"
    demo.generate(str(raw), num_train=2, num_val=1, size=16, ratios=("1_2",))
    args = {"--raw": str(raw), "--splits": str(raw / "splits"), flag: str(tmp_path / "nope")}
    with pytest.raises(InputNotFoundError, match=rf"^{flag} {tmp_path / 'nope'}: no such folder$"):
        main(["--dataset", "demo", *[a for kv in args.items() for a in kv], "--out", str(tmp_path / "tfds")])
    assert not (tmp_path / "tfds").exists()
