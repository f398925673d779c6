"""Split lists: every published list parses and is consistent; our format round-trips; generation
is deterministic and nested."""

from pathlib import Path

import pytest

from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.splits import Entry, format_list, make_splits, parse_list, read_list, split_files

SPLITS = Path(__file__).resolve().parents[2] / "shared" / "splits"
# Published dataset sizes (DESIGN.md §5 sources): train images, val images.
SIZES = {"uavseg": (800, 200), "tas500": (440, 100), "loveda": (2522, 1669), "pascal": (10582, 1449)}


def _published_splits():
    if not SPLITS.is_dir():
        return []
    return sorted(p for p in SPLITS.glob("*/*") if p.is_dir())


def _pairs(path):
    return {(e.image, e.mask) for e in read_list(str(path))}


@pytest.mark.skipif(not SPLITS.is_dir(), reason="../shared/splits not present")
@pytest.mark.parametrize("split_dir", _published_splits(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_published_split_counts_and_labelled_unlabelled_disjoint(split_dir):
    dataset, name = split_dir.parent.name, split_dir.name
    labeled_entries = read_list(str(split_dir / "labeled.txt"))
    labeled, unlabeled = _pairs(split_dir / "labeled.txt"), _pairs(split_dir / "unlabeled.txt")
    assert len(labeled) == len(labeled_entries), "duplicate lines in labeled.txt"
    total, _ = SIZES[dataset]
    if name == "all":  # fully supervised: everything labelled, unlabelled a subset of it
        assert len(labeled) == total and unlabeled <= labeled
        return
    assert not labeled & unlabeled
    assert len(labeled) + len(unlabeled) == total
    if "_" in name:  # '1_8', 'u2pl_1_8': a fraction
        num, den = name.split("_")[-2:]
        assert abs(len(labeled) - total * int(num) / int(den)) <= 1
    else:  # a labelled count: '92', '1464'
        assert len(labeled) == int(name)


@pytest.mark.skipif(not SPLITS.is_dir(), reason="../shared/splits not present")
@pytest.mark.parametrize("dataset", sorted(SIZES))
def test_published_val_lists_are_disjoint_from_train(dataset):
    val = _pairs(SPLITS / dataset / "val.txt")
    assert len(val) == SIZES[dataset][1]
    train = set()
    for split_dir in (SPLITS / dataset).iterdir():
        if split_dir.is_dir():
            train |= _pairs(split_dir / "labeled.txt") | _pairs(split_dir / "unlabeled.txt")
    assert len(train) == SIZES[dataset][0] and not train & val


@pytest.mark.skipif(not SPLITS.is_dir(), reason="../shared/splits not present")
def test_parser_round_trips_a_published_list():
    path = SPLITS / "uavseg" / "1_8" / "labeled.txt"
    entries = read_list(str(path))
    again = parse_list(format_list(entries))
    assert [(e.image, e.mask) for e in again] == [(e.image, e.mask) for e in entries]
    assert path.read_text().split() == format_list(entries).split()


def test_parser_reports_file_and_line_of_a_malformed_line():
    with pytest.raises(DataError, match=r"x\.txt line 2: expected '<image> <mask>'"):
        parse_list("a.jpg a.png\nonly_one_path.jpg\n", list_file="x.txt")


def test_empty_or_missing_list_is_an_error_naming_it(tmp_path):
    (tmp_path / "labeled.txt").write_text("\n\n")
    with pytest.raises(DataError, match="labeled.txt: split list is empty"):
        read_list(str(tmp_path / "labeled.txt"))
    with pytest.raises(DataError, match="nope.txt: split list not found"):
        read_list(str(tmp_path / "nope.txt"))


def test_unreadable_list_is_an_error_naming_it(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("a.jpg a.png\nb\xe9.jpg b.png\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"latin1\.txt line 2: split list is not UTF-8 text"):
        read_list(str(tmp_path / "latin1.txt"))
    (tmp_path / "folder.txt").mkdir()
    with pytest.raises(DataError, match=r"folder\.txt: cannot read split list: Is a directory"):
        read_list(str(tmp_path / "folder.txt"))


def test_an_image_listed_twice_is_an_error_naming_both_lines():
    # A repeated val line would count its image twice in mIoU; a repeated train line oversamples it.
    with pytest.raises(DataError, match=r"val\.txt line 4: a\.jpg is listed again \(first on line 1\)"):
        parse_list("a.jpg a.png\nb.jpg b.png\n\na.jpg a.png\n", list_file="val.txt")
    with pytest.raises(DataError, match=r"line 2: a\.jpg is listed again"):  # even with another mask
        parse_list("a.jpg a.png\na.jpg other.png\n", list_file="labeled.txt")


def test_entries_remember_their_line_for_messages():
    entries = parse_list("\na.jpg a.png\n\nb.jpg b.png", list_file="l.txt")
    assert [e.line for e in entries] == [2, 4] and entries[1].where == "l.txt line 4"


def test_make_splits_is_deterministic_nested_and_disjoint():
    pairs = [(f"img/{i}.jpg", f"mask/{i}.png") for i in range(100)]
    a = make_splits(pairs, ["1_16", "1_8", "1_4", "all"], seed=7)
    b = make_splits(list(reversed(pairs)), ["1_16", "1_8", "1_4", "all"], seed=7)
    c = make_splits(pairs, ["1_8"], seed=8)
    assert a == {k: v for k, v in b.items()}  # independent of input order
    assert a["1_8"] != c["1_8"]
    assert [len(a[r]["labeled"]) for r in ("1_16", "1_8", "1_4")] == [6, 13, 25]  # round half up
    assert set(a["1_16"]["labeled"]) <= set(a["1_8"]["labeled"]) <= set(a["1_4"]["labeled"])
    for r in ("1_16", "1_8", "1_4"):
        assert not set(a[r]["labeled"]) & set(a[r]["unlabeled"])
        assert len(a[r]["labeled"]) + len(a[r]["unlabeled"]) == 100
    assert len(a["all"]["labeled"]) == 100


def test_the_all_split_labels_every_image_and_keeps_every_image_unlabelled_too():
    # As the published tas500 'all' split: the fully supervised set, its unlabelled list the same images.
    pairs = [(f"img/{i}.jpg", f"mask/{i}.png") for i in (3, 1, 2, 0)]
    split = make_splits(pairs, ["all"], seed=5)["all"]
    assert split["labeled"] == split["unlabeled"] == sorted(pairs)


def test_make_splits_cli_writes_the_published_format(tmp_path):
    from launch.make_splits import main

    _raw_folder(tmp_path)
    main(["--root", str(tmp_path), "--ratios", "1_4,1_2", "--seed", "1"])
    files = split_files(str(tmp_path), "1_4")
    labeled = read_list(files["labeled"])
    assert len(labeled) == 4 and len(read_list(files["unlabeled"])) == 12 and len(read_list(files["val"])) == 3
    assert labeled[0].image.startswith("gt_jpg/train/") and labeled[0].mask.startswith("label_png/train/")
    assert labeled[0].mask.endswith(".png") and isinstance(labeled[0], Entry)


def _raw_folder(root, train=16, val=3):
    for subset, n in (("train", train), ("val", val)):
        for d in (f"gt_jpg/{subset}", f"label_png/{subset}"):
            (root / d).mkdir(parents=True)
        for i in range(n):
            (root / f"gt_jpg/{subset}/{i}.jpg").write_bytes(b"")
    return root


def test_make_splits_cli_keeps_existing_lists_unless_overwrite(tmp_path):
    from launch.make_splits import main
    from mofgseg_jax.errors import OutputExistsError

    root = _raw_folder(tmp_path)
    published = root / "splits" / "1_4" / "labeled.txt"
    published.parent.mkdir(parents=True)
    published.write_text("gt_jpg/train/0.jpg label_png/train/0.png\n")
    with pytest.raises(OutputExistsError, match=rf"--out: {published} exists; .*pass --overwrite \(nothing was"):
        main(["--root", str(root), "--ratios", "1_4,1_2"])
    assert published.read_text() == "gt_jpg/train/0.jpg label_png/train/0.png\n"
    assert sorted(p.name for p in (root / "splits").rglob("*")) == ["1_4", "labeled.txt"]  # nothing written
    main(["--root", str(root), "--ratios", "1_4,1_2", "--overwrite"])
    assert len(read_list(str(published))) == 4
    assert not list((root / "splits").rglob("*.tmp*"))  # each list was written whole, then renamed


def test_two_make_splits_runs_on_one_out_at_once_never_leave_a_mix_of_their_lists(tmp_path, monkeypatch):
    # Both runs passed the up-front check before either wrote; each list was then replaced on its
    # own, so the folder could hold seed 1's labelled list beside seed 2's unlabelled one.
    from launch import make_splits
    from mofgseg_jax import outputs
    from mofgseg_jax.errors import OutputExistsError

    root = _raw_folder(tmp_path)
    make_splits.main(["--root", str(root), "--ratios", "1_4", "--seed", "1"])
    written = {p: p.read_text() for p in (root / "splits").rglob("*.txt")}
    monkeypatch.setattr(outputs, "refuse_existing", lambda *a, **k: None)  # the race window
    with pytest.raises(OutputExistsError, match=r"--out: \S+\.txt exists; choose another --out or pass --overwrite"):
        make_splits.main(["--root", str(root), "--ratios", "1_4", "--seed", "2"])
    assert {p: p.read_text() for p in (root / "splits").rglob("*.txt")} == written
    assert not list((root / "splits").rglob(".*.tmp"))


def test_a_list_write_that_fails_leaves_the_earlier_lists_whole(tmp_path, monkeypatch):
    import os

    from mofgseg_jax.data.splits import write_list, write_splits

    path = tmp_path / "val.txt"
    write_list(str(path), [("a.jpg", "a.png")])

    def disk_full(*args):
        raise OSError(28, "No space left on device")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", disk_full)
        with pytest.raises(OSError, match="No space left"):
            write_list(str(path), [("b.jpg", "b.png")])
    assert path.read_text() == "a.jpg a.png\n" and sorted(p.name for p in tmp_path.iterdir()) == ["val.txt"]
    # A pair that cannot be listed (whitespace) fails before any list of the set is replaced.
    with pytest.raises(DataError, match="path with whitespace"):
        write_splits(str(tmp_path), {"1_2": {"labeled": [("c.jpg", "c.png")]}}, val=[("my d.jpg", "d.png")])
    assert path.read_text() == "a.jpg a.png\n" and not (tmp_path / "1_2").exists()


def test_make_splits_cli_out_that_is_a_file_is_a_clear_error(tmp_path):
    from launch.make_splits import main

    root = _raw_folder(tmp_path)
    (tmp_path / "a_file").write_text("kept")
    with pytest.raises(PermissionError, match=rf"--out {tmp_path}/a_file: cannot create or write there"):
        main(["--root", str(root), "--out", str(tmp_path / "a_file")])
    assert (tmp_path / "a_file").read_text() == "kept"


def test_make_splits_cli_refuses_an_empty_val_folder(tmp_path):
    from launch.make_splits import main

    root = _raw_folder(tmp_path, val=0)
    with pytest.raises(DataError, match=rf"{root}/gt_jpg/val: no \*\.jpg images to list"):
        main(["--root", str(root)])
    assert not (root / "splits").exists()
