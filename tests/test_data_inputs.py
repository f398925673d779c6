"""Bad dataset inputs give one clear error naming the file and split-list line (or are skipped and
reported with data.skip_invalid); unusual but valid images/masks are accepted."""

import logging
import shutil

import numpy as np
import pytest
from PIL import Image

from configs.common import base_config
from mofgseg_jax.data import demo, pipeline
from mofgseg_jax.data.decode import decode_edge, decode_image, decode_mask, read_image
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.splits import read_list


@pytest.fixture(scope="module")
def pristine(tmp_path_factory):
    root = tmp_path_factory.mktemp("pristine")
    demo.generate(str(root), num_train=8, num_val=2, size=32, ratios=("1_4",))
    return root


@pytest.fixture
def root(pristine, tmp_path):
    return shutil.copytree(pristine, tmp_path / "data")


def _cfg(root, **overrides):
    config = base_config()
    config.model.num_classes = 8
    d = config.data
    d.name, d.root, d.split, d.crop_size = "demo", str(root), "1_4", 24
    d.batch_size_labeled, d.batch_size_unlabeled = 2, 2  # 1_4 of 8 = 2 labelled: both in batch one
    d.eval_batch_size, d.eval_pad_size = 2, 32
    for key, value in overrides.items():
        setattr(d, key, value)
    return d


def _second_labeled(root):
    """(entry, line text) of line 2 of labeled.txt: the file the tests break."""
    return read_list(str(root / "splits" / "1_4" / "labeled.txt"))[1]


def _first_batch(root, **overrides):
    return next(pipeline.make_train_iterator(_cfg(root, **overrides), seed=0))


def test_missing_file(root):
    entry = _second_labeled(root)
    (root / entry.image).unlink()
    with pytest.raises(DataError, match=rf"{entry.image}.*labeled\.txt line 2\): file not found"):
        pipeline.make_train_iterator(_cfg(root), seed=0)


def test_corrupt_image(root):
    entry = _second_labeled(root)
    (root / entry.image).write_bytes(b"\xff\xd8\xff not a jpeg")
    with pytest.raises(DataError, match=rf"{entry.image}.*labeled\.txt line 2\): cannot decode image"):
        _first_batch(root)


def test_truncated_image(root):
    entry = _second_labeled(root)
    data = (root / entry.image).read_bytes()
    (root / entry.image).write_bytes(data[: len(data) // 2])
    with pytest.raises(DataError, match=rf"{entry.image}.*line 2\): cannot decode image"):
        _first_batch(root)


def test_mask_size_mismatch(root):
    entry = _second_labeled(root)
    Image.fromarray(np.zeros((31, 32), np.uint8)).save(root / entry.mask)
    with pytest.raises(DataError, match=rf"{entry.mask}.*line 2\): mask size 32x31 \(WxH\) differs from its image's 32x32"):
        _first_batch(root)


def test_mask_values_out_of_range(root):
    entry = _second_labeled(root)
    mask = np.zeros((32, 32), np.uint8)
    mask[0, :3] = [8, 200, 255]  # 8 and 200 are bad (8 classes), 255 is ignore
    Image.fromarray(mask).save(root / entry.mask)
    with pytest.raises(DataError, match=rf"{entry.mask}.*line 2\): mask has values 8, 200 that are neither"):
        _first_batch(root)


def test_colour_coded_mask_where_ids_are_expected(root):
    entry = _second_labeled(root)
    ids = np.asarray(Image.open(root / entry.mask))
    palette = np.array(demo_palette(), np.uint8)
    Image.fromarray(palette[ids]).save(root / entry.mask)
    with pytest.raises(DataError, match=rf"{entry.mask}.*line 2\): mask is a colour \(RGB\) image; expected one channel"):
        _first_batch(root)


def demo_palette():
    from mofgseg_jax.data.specs import load_spec

    return load_spec("demo").palette


def test_empty_split(root):
    (root / "splits" / "1_4" / "unlabeled.txt").write_text("")
    with pytest.raises(DataError, match=r"1_4/unlabeled\.txt: split list is empty"):
        pipeline.make_train_iterator(_cfg(root), seed=0)


def test_bad_validation_mask_names_val_list_line(root):
    entry = read_list(str(root / "splits" / "val.txt"))[1]
    Image.fromarray(np.full((32, 32), 9, np.uint8)).save(root / entry.mask)
    with pytest.raises(DataError, match=rf"{entry.mask}.*val\.txt line 2\): mask has values 9"):
        list(pipeline.make_val_batches(_cfg(root)))


def test_skip_invalid_skips_and_reports(root, caplog):
    broken, gone = _second_labeled(root), read_list(str(root / "splits" / "1_4" / "unlabeled.txt"))[0]
    (root / broken.image).write_bytes(b"garbage")
    (root / gone.image).unlink()
    with caplog.at_level(logging.WARNING):
        it = pipeline.make_train_iterator(_cfg(root, skip_invalid=True), seed=0)
        batch = next(it)
    assert batch["labeled"]["image"].shape == (2, 24, 24, 3)
    messages = "\n".join(r.getMessage() for r in caplog.records)
    assert f"{gone.image}" in messages and "file not found" in messages
    assert f"{broken.image}" in messages and "cannot decode image" in messages
    # Under the loop's "mofgseg" logger, so the skips also reach <workdir>/train.log.
    assert {r.name for r in caplog.records if "skipping" in r.getMessage()} == {"mofgseg.data"}


def test_grayscale_rgba_and_palette_images_become_rgb(tmp_path):
    rgb = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    for mode in ("L", "RGBA", "P", "LA", "CMYK"):
        path = tmp_path / f"x_{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
        Image.fromarray(rgb).convert(mode).save(path)
        out = decode_image(path.read_bytes())
        assert out.shape == (5, 7, 3) and out.dtype == np.uint8
        expected = np.asarray(Image.open(path).convert("RGB"))  # PIL's own conversion as reference
        np.testing.assert_array_equal(out, expected)
    gray = np.asarray(Image.fromarray(rgb).convert("L"))
    out = decode_image(_png(Image.fromarray(rgb).convert("L")))
    assert np.all(out[..., 0] == gray) and np.all(out[..., 1] == gray) and np.all(out[..., 2] == gray)


def _png(img):
    import io

    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def test_palette_png_mask_is_read_as_ids():
    ids = np.array([[0, 1, 2], [20, 255, 3]], np.uint8)
    img = Image.fromarray(ids, "P")
    img.putpalette([v for i in range(256) for v in (i, 255 - i, 7)])  # colours must not matter
    np.testing.assert_array_equal(decode_mask(_png(img), num_classes=21), ids)


def test_grayscale_mask_saved_as_rgb_is_accepted():
    ids = np.array([[0, 1], [255, 3]], np.uint8)
    out = decode_mask(_png(Image.fromarray(np.stack([ids] * 3, -1))), num_classes=4)
    np.testing.assert_array_equal(out, ids)


def test_colour_mask_whose_blue_alone_differs_is_refused():
    ids = np.array([[0, 1], [2, 3]], np.uint8)
    rgb = np.stack([ids, ids, ids], -1)
    rgb[0, 1, 2] = 7  # red == green everywhere; one blue value differs: a colour, not an id map
    with pytest.raises(DataError, match=r"mask is a colour \(RGB\) image"):
        decode_mask(_png(Image.fromarray(rgb)), num_classes=8)


def test_precomputed_edge_map_marks_every_nonzero_pixel():
    edge = np.array([[0, 1, 128], [255, 0, 2]], np.uint8)
    np.testing.assert_array_equal(decode_edge(_png(Image.fromarray(edge))), [[0, 1, 1], [1, 0, 1]])


def _encoded(array, fmt):
    import io

    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format=fmt)
    return buf.getvalue()


@pytest.mark.parametrize("array, fmt, mode", [
    (np.full((4, 5), 40000, np.uint16), "PNG", "I;16"),
    (np.full((4, 5), 40000, np.int32), "TIFF", "I"),
    (np.full((4, 5), 0.5, np.float32), "TIFF", "F"),
])
def test_16_bit_and_float_images_are_refused_naming_file_and_mode(tmp_path, array, fmt, mode):
    # PIL's convert('RGB') clips these to white: training on them would be training on blank images.
    path = tmp_path / f"deep.{fmt.lower()}"
    path.write_bytes(_encoded(array, fmt))
    with pytest.raises(DataError, match=rf"deep\.{fmt.lower()} \(l\.txt line 3\): image has more than 8 bits "
                                        rf"a channel \(PIL mode '{mode}'\)"):
        decode_image(path.read_bytes(), path=str(path), where="l.txt line 3")
    with pytest.raises(DataError, match=rf"deep\.{fmt.lower()} \(--input\): .*PIL mode '{mode}'"):
        read_image(str(path), where="--input")  # predict.py's reader


def test_16_bit_mask_of_ids_is_read_as_ids():
    ids = np.array([[0, 1, 2], [7, 255, 3]], np.uint16)
    np.testing.assert_array_equal(decode_mask(_encoded(ids, "PNG"), num_classes=8), ids)


def test_float_mask_must_hold_whole_class_ids():
    ids = np.array([[0, 1], [2, 255]], np.float32)
    np.testing.assert_array_equal(decode_mask(_encoded(ids, "TIFF"), num_classes=3), ids.astype(np.uint8))
    with pytest.raises(DataError, match=r"m\.tif \(v\.txt line 1\): float mask \(PIL mode 'F'\) has non-integer"):
        decode_mask(_encoded(ids + 0.5, "TIFF"), num_classes=3, path="m.tif", where="v.txt line 1")


def test_an_unknown_format_names_the_file_not_a_buffer():
    with pytest.raises(DataError, match=r"^x\.jpg \(here\): cannot decode image: not a known image format$"):
        decode_image(b"not an image at all", path="x.jpg", where="here")
