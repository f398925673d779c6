"""grain pipelines on a tiny generated demo dataset: shapes, determinism, resume, process sharding."""

from pathlib import Path

import numpy as np
import pytest

from configs.common import base_config
from mofgseg_jax.data import demo, pipeline
from mofgseg_jax.data.errors import DataError


@pytest.fixture(scope="module")
def demo_root(tmp_path_factory):
    root = str(tmp_path_factory.mktemp("demo"))
    demo.generate(root, num_train=32, num_val=5, size=40, ratios=("1_4", "all"))
    return root


def _cfg(root, **overrides):
    config = base_config()
    config.model.num_classes = 8
    d = config.data
    d.name, d.root, d.split, d.crop_size = "demo", root, "1_4", 32
    d.batch_size_labeled, d.batch_size_unlabeled = 2, 4
    d.eval_batch_size, d.eval_pad_size = 2, 48
    for key, value in overrides.items():
        setattr(d, key, value)
    return d


def _take(it, n):
    return [next(it) for _ in range(n)]


def _equal(a, b):
    return all(np.array_equal(x["labeled"]["image"], y["labeled"]["image"])
               and np.array_equal(x["labeled"]["label"], y["labeled"]["label"])
               and np.array_equal(x["unlabeled"]["image"], y["unlabeled"]["image"]) for x, y in zip(a, b))


def test_train_batch_shapes_and_dtypes(demo_root):
    batch = next(pipeline.make_train_iterator(_cfg(demo_root), seed=0))
    assert batch["labeled"]["image"].shape == (2, 32, 32, 3) and batch["labeled"]["image"].dtype == np.uint8
    assert batch["labeled"]["label"].shape == (2, 32, 32) and batch["labeled"]["label"].dtype == np.uint8
    assert batch["unlabeled"]["image"].shape == (4, 32, 32, 3) and batch["unlabeled"]["image"].dtype == np.uint8
    assert set(batch) == {"labeled", "unlabeled"} and set(batch["unlabeled"]) == {"image"}
    values = np.unique(batch["labeled"]["label"])
    assert np.all((values < 8) | (values == 255))


def test_same_seed_same_batches_other_seed_differs(demo_root):
    a = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=3), 3)
    b = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=3), 3)
    c = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=4), 3)
    assert _equal(a, b) and not _equal(a, c)


def test_restored_iterator_yields_the_uninterrupted_batches(demo_root):
    it = pipeline.make_train_iterator(_cfg(demo_root), seed=0)
    _take(it, 5)  # past one labelled epoch (8 labelled images / 2 per batch = 4 steps)
    state = it.get_state()
    expected = _take(it, 3)
    resumed = pipeline.make_train_iterator(_cfg(demo_root), seed=0)
    resumed.set_state(state)
    assert _equal(_take(resumed, 3), expected)


def test_two_processes_see_disjoint_halves_of_the_global_batch(demo_root):
    full = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=1), 2)
    halves = [_take(pipeline.make_train_iterator(_cfg(demo_root), seed=1, process_index=p, process_count=2), 2)
              for p in range(2)]
    for step in range(2):
        h0, h1 = halves[0][step]["unlabeled"]["image"], halves[1][step]["unlabeled"]["image"]
        assert h0.shape[0] == 2 and h1.shape[0] == 2  # global 4 / 2 processes
        # Process p holds global positions p, p+2, ...: together exactly the one-process batch.
        merged = np.stack([h0[0], h1[0], h0[1], h1[1]])
        np.testing.assert_array_equal(merged, full[step]["unlabeled"]["image"])
        assert not any(np.array_equal(x, y) for x in h0 for y in h1)


def test_validation_batches_are_padded_to_fixed_shapes(demo_root):
    batches = list(pipeline.make_val_batches(_cfg(demo_root)))
    assert len(batches) == 3  # 5 images, batch 2 -> one padding sample
    for b in batches:
        assert b["image"].shape == (2, 48, 48, 3) and b["label"].shape == (2, 48, 48)
        assert b["height"].dtype == np.int32 and b["valid"].dtype == bool
    assert [bool(v) for b in batches for v in b["valid"]] == [True] * 5 + [False]
    first = batches[0]
    assert first["height"][0] == 40 and first["width"][0] == 40
    assert np.all(first["label"][0, 40:] == 255) and np.all(first["image"][0, :, 40:] == 0)


@pytest.fixture(scope="module")
def wide_root(demo_root, tmp_path_factory):
    """The demo data with every validation image and mask cut to 24 x 40 (height x width)."""
    import shutil

    from PIL import Image

    from mofgseg_jax.data.splits import read_list

    root = str(tmp_path_factory.mktemp("wide") / "demo")
    shutil.copytree(demo_root, root)
    for entry in read_list(f"{root}/splits/val.txt"):
        for rel in (entry.image, entry.mask):
            with Image.open(f"{root}/{rel}") as img:
                img.crop((0, 0, 40, 24)).save(f"{root}/{rel}", quality=95)
    return root


def test_a_canvas_of_the_image_size_gives_the_unpadded_images(wide_root):
    from PIL import Image

    from mofgseg_jax.data.splits import read_list

    batches = list(pipeline.make_val_batches(_cfg(wide_root, eval_pad_size=(24, 40))))
    entries = read_list(f"{wide_root}/splits/val.txt")
    images = [img for b in batches for img, v in zip(b["image"], b["valid"]) if v]
    labels = [lab for b in batches for lab, v in zip(b["label"], b["valid"]) if v]
    assert len(images) == len(entries) == 5
    for b in batches:
        assert b["image"].shape == (2, 24, 40, 3) and b["label"].shape == (2, 24, 40)
        assert [int(h) for h, v in zip(b["height"], b["valid"]) if v] == [24] * int(b["valid"].sum())
        assert [int(w) for w, v in zip(b["width"], b["valid"]) if v] == [40] * int(b["valid"].sum())
    for entry, image, label in zip(entries, images, labels):
        np.testing.assert_array_equal(image, np.asarray(Image.open(f"{wide_root}/{entry.image}").convert("RGB")))
        np.testing.assert_array_equal(label, np.asarray(Image.open(f"{wide_root}/{entry.mask}")))


def test_an_image_larger_than_a_height_width_canvas_is_a_one_line_error_naming_the_file(wide_root):
    from mofgseg_jax.data.errors import DataError
    from mofgseg_jax.data.splits import read_list

    first = read_list(f"{wide_root}/splits/val.txt")[0].image
    with pytest.raises(DataError) as info:
        list(pipeline.make_val_batches(_cfg(wide_root, eval_pad_size=(24, 39))))
    message = str(info.value)
    assert "\n" not in message and first in message
    assert "image of height 24, width 40 does not fit data.eval_pad_size=(24, 39) (height 24, width 39)" in message


@pytest.mark.parametrize("value", [0, (1, 2, 3), "abc"])
def test_a_malformed_canvas_is_a_one_line_error_naming_the_key(demo_root, value):
    from mofgseg_jax.errors import InputError

    with pytest.raises(InputError) as info:
        pipeline.make_val_batches(_cfg(demo_root, eval_pad_size=value))
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"data.eval_pad_size={value!r}: expected")


def test_validation_sharding_gives_every_process_the_same_batch_count(demo_root):
    per = [list(pipeline.make_val_batches(_cfg(demo_root), process_index=p, process_count=2)) for p in range(2)]
    assert len(per[0]) == len(per[1]) == 2
    assert sum(int(b["valid"].sum()) for batches in per for b in batches) == 5


def test_worker_processes_give_the_same_batches_and_resume(demo_root):
    expected = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=2), 4)
    it = pipeline.make_train_iterator(_cfg(demo_root, num_workers=2), seed=2)
    first = _take(it, 2)
    state = it.get_state()
    assert _equal(first, expected[:2])
    resumed = pipeline.make_train_iterator(_cfg(demo_root, num_workers=2), seed=2)
    resumed.set_state(state)
    assert _equal(_take(resumed, 2), expected[2:])


def test_edge_maps_are_read_when_configured(demo_root, tmp_path):
    from PIL import Image

    from mofgseg_jax.data.splits import read_list

    for entry in read_list(f"{demo_root}/splits/1_4/labeled.txt"):
        stem = entry.image.rsplit("/", 1)[1].rsplit(".", 1)[0]
        Image.fromarray(np.full((40, 40), 255, np.uint8)).save(tmp_path / f"{stem}.png")
    batch = next(pipeline.make_train_iterator(_cfg(demo_root, use_edge_maps=True, edge_dir=str(tmp_path)), seed=0))
    edge, label = batch["labeled"]["edge"], batch["labeled"]["label"]
    assert edge.shape == label.shape and edge.dtype == np.uint8
    np.testing.assert_array_equal(edge, (label != 255).astype(np.uint8))  # 1 inside the image, 0 in padding
    assert "inside" not in batch["labeled"]  # precomputed edges: no padding map to transfer


def test_labelled_batches_carry_the_padding_map_for_on_the_fly_edges(demo_root):
    with_map = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=0), 6)
    without = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=0, with_inside=False), 6)
    assert _equal(with_map, without)  # the map changes no other value
    assert all(set(b["labeled"]) == {"image", "label"} for b in without)
    padded = 0
    for batch in with_map:
        inside, label = batch["labeled"]["inside"], batch["labeled"]["label"]
        assert inside.shape == label.shape and inside.dtype == np.uint8
        # Demo masks have no void (ids 0..7), so the ignore label marks exactly the crop padding.
        np.testing.assert_array_equal(inside, (label != 255).astype(np.uint8))
        padded += int(np.any(inside == 0))
    assert padded  # 40-pixel images scaled by 0.5..2 into 32-pixel crops: some are padded


def test_steps_per_epoch_is_one_pass_over_the_unlabelled_split(demo_root):
    assert pipeline.dataset_sizes(_cfg(demo_root)) == {"labeled": 8, "unlabeled": 24, "val": 5}
    assert pipeline.steps_per_epoch(_cfg(demo_root)) == 24 // 4


def test_data_benchmark_reports_each_stream():
    from mofgseg_jax.bench.data import run

    result = run(["--num-train", "16", "--num-val", "4", "--size", "32", "--crop-size", "24", "--batch-size", "2",
                  "--batches", "2", "--warmup", "1", "--source", "both"])
    for source in ("folder", "tfds"):
        assert set(result[source]) == {"labeled", "unlabeled", "train", "val"}
        assert all(v["images_per_s"] > 0 for v in result[source].values())


def test_labelled_only_iterator_reads_no_unlabelled_split_and_keeps_the_labelled_batches(demo_root, tmp_path):
    # 'sup' runs: the same labelled batches as a semi run of that seed, without unlabeled.txt.
    split = tmp_path / "splits" / "1_4"
    split.mkdir(parents=True)
    source = f"{demo_root}/splits/1_4"
    (split / "labeled.txt").write_text(Path(f"{source}/labeled.txt").read_text())
    (tmp_path / "splits" / "val.txt").write_text(Path(f"{demo_root}/splits/val.txt").read_text())
    cfg = _cfg(demo_root, split_dir=str(split))
    with pytest.raises(Exception, match="unlabeled.txt"):
        pipeline.make_train_iterator(cfg, seed=6)
    only = _take(pipeline.make_train_iterator(cfg, seed=6, labelled_only=True), 5)
    both = _take(pipeline.make_train_iterator(_cfg(demo_root), seed=6), 5)
    assert all(set(b) == {"labeled"} for b in only)
    for a, b in zip(only, both):
        assert set(a["labeled"]) == set(b["labeled"])
        for key in a["labeled"]:
            np.testing.assert_array_equal(a["labeled"][key], b["labeled"][key])


def test_labelled_only_epoch_is_one_pass_over_the_labelled_split(demo_root):
    # The published supervised baseline (train_baseline_sup.py): total_iters = len(labelled loader) * epochs.
    assert pipeline.steps_per_epoch(_cfg(demo_root), labelled_only=True) == 8 // 2


def test_labelled_and_unlabelled_streams_draw_their_own_order_and_augmentation(demo_root, tmp_path):
    # Both lists hold the same images (as in an 'all' split) and the strong view is off: streams sharing
    # their seeds would yield the very same batches; each has its own shuffle and augmentation seeds.
    split = tmp_path / "splits" / "1_4"
    split.mkdir(parents=True)
    labelled = Path(f"{demo_root}/splits/1_4/labeled.txt").read_text()
    (split / "labeled.txt").write_text(labelled)
    (split / "unlabeled.txt").write_text(labelled)
    (tmp_path / "splits" / "val.txt").write_text(Path(f"{demo_root}/splits/val.txt").read_text())
    cfg = _cfg(demo_root, split_dir=str(split), batch_size_unlabeled=2)
    cfg.strong_view.jitter_prob = cfg.strong_view.grayscale_prob = cfg.strong_view.blur_prob = 0.0
    batches = _take(pipeline.make_train_iterator(cfg, seed=5, with_inside=False), 4)
    assert not any(np.array_equal(b["labeled"]["image"], b["unlabeled"]["image"]) for b in batches)


def test_read_threads_and_prefetch_come_from_the_config_and_default_to_4(demo_root, monkeypatch):
    import ml_collections

    seen, read_options = [], pipeline.grain.ReadOptions

    def recording(**kw):
        seen.append((kw["num_threads"], kw["prefetch_buffer_size"]))
        return read_options(**kw)

    monkeypatch.setattr(pipeline.grain, "ReadOptions", recording)
    pipeline.make_val_batches(_cfg(demo_root, num_threads=2, prefetch=3))
    pipeline.make_train_iterator(_cfg(demo_root, num_threads=1, prefetch=5), seed=0)
    older = ml_collections.ConfigDict({k: v for k, v in _cfg(demo_root).items()
                                       if k not in ("num_threads", "prefetch")})
    pipeline.make_val_batches(older)  # a config stored before the keys existed
    pipeline.make_val_batches(_cfg(demo_root, num_threads=2), num_threads=6, prefetch=7)  # the caller's win
    assert seen == [(2, 3), (1, 5), (4, 4), (6, 7)]


def test_the_eval_canvas_check_reads_headers_and_leaves_unreadable_files_to_the_pipeline(tmp_path):
    root = tmp_path / "data"
    demo.generate(str(root), num_train=8, num_val=3, size=40, ratios=("1_4",))
    pipeline.check_val_canvas(_cfg(str(root), split="1_4", eval_pad_size=40))  # 40 x 40 images fit exactly
    with pytest.raises(DataError, match=r"data.eval_pad_size=\(40, 39\) .* smaller than 3 validation image\(s\)"):
        pipeline.check_val_canvas(_cfg(str(root), split="1_4", eval_pad_size=(40, 39)))
    # A damaged image is the pipeline's to report (naming it), or to skip with data.skip_invalid.
    first_val = sorted((root / "gt_jpg" / "val").iterdir())[0]
    first_val.write_bytes(b"not an image")
    with pytest.raises(DataError, match=r"smaller than 2 validation image\(s\)"):
        pipeline.check_val_canvas(_cfg(str(root), split="1_4", eval_pad_size=(40, 39)))
    pipeline.check_val_canvas(_cfg(str(root), split="1_4", eval_pad_size=(40, 39), source="tfds"))  # not read
    (root / "splits" / "val.txt").unlink()  # the pipeline names a missing list (evaluate: after a bad --output)
    pipeline.check_val_canvas(_cfg(str(root), split="1_4", eval_pad_size=(40, 39)))
