"""Host-side transforms (DESIGN.md §3 steps 1-2) against NumPy/PIL references."""

import numpy as np
import pytest
from PIL import Image, ImageFilter

from mofgseg_jax.data import transforms
from mofgseg_jax.data.errors import DataError
from mofgseg_jax.errors import InputError
from tests.augment_references import colorsys_hue


def _example(h=30, w=50, seed=0):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
    return {"image": image, "label": image[..., 0] % 5, "edge": (image[..., 1] > 128).astype(np.uint8)}


def test_resize_scales_the_long_side_within_range_and_keeps_aspect():
    ex = _example()
    for seed in range(20):
        out = transforms.random_resize(ex, np.random.default_rng(seed), (0.5, 2.0))
        h, w = out["label"].shape
        assert 25 <= w <= 100 and abs(h / w - 30 / 50) < 0.05
        assert out["image"].shape == (h, w, 3) and out["edge"].shape == (h, w)
        assert set(np.unique(out["label"])) <= set(np.unique(ex["label"]))  # nearest: no new ids


def test_resize_samples_mask_and_edge_at_the_nearest_source_pixel():
    # Nearest rule (PIL NEAREST): output (y, x) reads source (floor((y + 0.5) h / h'), floor((x + 0.5) w / w')).
    # A void band beside class ids shows any interpolation: it would invent values between 0..4 and 255.
    # Odd source sides: (2y + 1) h / (2 h') is never an integer, so no tie depends on float rounding.
    ex = _example(31, 51)
    ex["label"][:, 20:26] = 255
    for seed in range(6):
        out = transforms.random_resize(ex, np.random.default_rng(seed), (0.5, 2.0))
        nh, nw = out["label"].shape
        rows = [min(int((y + 0.5) * 31 / nh), 30) for y in range(nh)]
        cols = [min(int((x + 0.5) * 51 / nw), 50) for x in range(nw)]
        for key in ("label", "edge"):
            expected = np.array([[ex[key][r, c] for c in cols] for r in rows], np.uint8)
            np.testing.assert_array_equal(out[key], expected, err_msg=f"{key}, seed {seed}")


def test_crop_of_a_larger_image_starts_at_every_offset_both_ends_included():
    ex = _example(18, 19)
    offsets = {(y, x) for y in range(18 - 16 + 1) for x in range(19 - 16 + 1)}
    seen = set()
    for seed in range(120):
        out = transforms.random_crop(ex, np.random.default_rng(seed), 16)
        matches = [(y, x) for y, x in offsets if np.array_equal(out["image"], ex["image"][y:y + 16, x:x + 16])]
        assert len(matches) == 1
        y, x = matches[0]
        np.testing.assert_array_equal(out["label"], ex["label"][y:y + 16, x:x + 16])
        seen.add((y, x))
    assert seen == offsets


def test_crop_pads_image_with_0_mask_with_ignore_edge_with_0():
    ex = _example(10, 12)
    out = transforms.random_crop(ex, np.random.default_rng(0), 16, ignore_index=255)
    assert out["image"].shape == (16, 16, 3)
    np.testing.assert_array_equal(out["image"][:10, :12], ex["image"])  # padding is bottom/right only
    assert np.all(out["image"][10:] == 0) and np.all(out["label"][:, 12:] == 255) and np.all(out["edge"][10:] == 0)


def test_geometry_moves_image_mask_and_edge_together():
    ex = _example(40, 40)
    ex["label"] = ex["image"][..., 0].copy()  # label == red channel pixelwise
    ex["edge"] = ex["image"][..., 1].copy()
    for seed in range(10):
        out = transforms.train_view(dict(ex), np.random.default_rng(seed), crop_size=32, scale_range=(1.0, 1.0),
                                    strong=False)
        np.testing.assert_array_equal(out["label"], out["image"][..., 0])
        np.testing.assert_array_equal(out["edge"], out["image"][..., 1])


def test_crop_pads_inside_with_0():
    ex = dict(_example(10, 12), inside=np.ones((10, 12), np.uint8))
    out = transforms.random_crop(ex, np.random.default_rng(0), 16, ignore_index=255)
    expected = np.zeros((16, 16), np.uint8)
    expected[:10, :12] = 1
    np.testing.assert_array_equal(out["inside"], expected)


def test_inside_marks_exactly_the_image_pixels_not_void_after_resize_crop_flip():
    # Every image pixel has blue >= 50 and crop padding is 0, so "blue > 0" is an independent
    # record of where the image is after any resize/crop/flip. The mask has a void (255) band.
    ex = _example(30, 50)
    ex["image"][..., 2] = 50 + ex["image"][..., 2] % 200
    ex["label"][10:14, :] = 255
    del ex["edge"]
    padded_right = padded_left = void_inside = 0
    for seed in range(30):
        out = transforms.train_view(dict(ex), np.random.default_rng(seed), crop_size=48, strong=False,
                                    with_inside=True)
        inside = out["inside"]
        assert inside.shape == (48, 48) and inside.dtype == np.uint8
        np.testing.assert_array_equal(inside, (out["image"][..., 2] > 0).astype(np.uint8))
        assert np.all(out["label"][inside == 0] == 255)
        padded_right += int(inside[:, -1].min() == 0)
        padded_left += int(inside[:, 0].min() == 0)  # padded, then flipped
        void_inside += int(np.any((out["label"] == 255) & (inside == 1)))
    assert padded_right and padded_left and void_inside  # every case was exercised


def test_train_view_adds_inside_only_when_asked():
    ex = _example()
    plain = transforms.train_view(dict(ex), np.random.default_rng(3), crop_size=24)
    with_inside = transforms.train_view(dict(ex), np.random.default_rng(3), crop_size=24, with_inside=True)
    assert set(plain) == {"image", "label", "edge"} and set(with_inside) == set(plain) | {"inside"}
    for key in plain:  # the same random draws: the map changes nothing else
        np.testing.assert_array_equal(plain[key], with_inside[key])


def test_flip_probability_one_reverses_columns():
    ex = _example()
    out = transforms.random_hflip(ex, np.random.default_rng(0), prob=1.0)
    np.testing.assert_array_equal(out["image"], ex["image"][:, ::-1])
    np.testing.assert_array_equal(out["label"], ex["label"][:, ::-1])


def test_train_view_shapes_dtypes_and_determinism():
    ex = _example()
    a = transforms.train_view(dict(ex), np.random.default_rng(3), crop_size=24)
    b = transforms.train_view(dict(ex), np.random.default_rng(3), crop_size=24)
    assert a["image"].shape == (24, 24, 3) and a["image"].dtype == np.uint8 and a["label"].dtype == np.uint8
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])


def test_brightness_only_jitter_matches_numpy_scaling():
    image = _example()["image"]
    rng = np.random.default_rng(1)
    factor = np.random.default_rng(1)
    factor.permutation(4)
    expected_f = factor.uniform(0.5, 1.5)
    out = transforms.colour_jitter(Image.fromarray(image), rng, brightness=0.5, contrast=0, saturation=0, hue=0)
    expected = np.clip(image.astype(np.float64) * expected_f, 0, 255)
    assert np.max(np.abs(np.asarray(out).astype(np.float64) - expected)) <= 1.0


def test_hue_only_jitter_rotates_hue_by_a_uniform_fraction_of_a_turn():
    image = _example(12, 16)["image"]
    for seed in range(4):
        draws = np.random.default_rng(seed)
        draws.permutation(4)
        shift = draws.uniform(-0.25, 0.25)  # the op's one draw: U(-hue, hue) of a full turn
        out = transforms.colour_jitter(Image.fromarray(image), np.random.default_rng(seed), brightness=0,
                                       contrast=0, saturation=0, hue=0.25)
        diff = np.abs(np.asarray(out, np.float64) - colorsys_hue(image / 255.0, shift) * 255)
        # PIL's HSV is uint8 (hue in 1/255 turns, S and V rounded): a few levels, never a misplaced hue.
        assert diff.max() <= 16 and diff.mean() <= 2, (seed, shift, diff.max(), diff.mean())


def test_strong_view_grayscale_and_blur_follow_their_probabilities():
    image = _example()["image"]
    gray = transforms.strong_colour_view(image, np.random.default_rng(0), jitter_prob=0, grayscale_prob=1,
                                         blur_prob=0)
    expected = np.asarray(Image.fromarray(image).convert("L"))
    for c in range(3):
        np.testing.assert_array_equal(gray[..., c], expected)
    rng = np.random.default_rng(4)
    blurred = transforms.strong_colour_view(image, rng, jitter_prob=0, grayscale_prob=0, blur_prob=1,
                                            blur_sigma=(1.0, 1.0))
    reference = np.asarray(Image.fromarray(image).filter(ImageFilter.GaussianBlur(radius=1.0)))
    np.testing.assert_array_equal(blurred, reference)
    untouched = transforms.strong_colour_view(image, rng, jitter_prob=0, grayscale_prob=0, blur_prob=0)
    np.testing.assert_array_equal(untouched, image)


def test_pad_to_records_true_size():
    ex = _example(20, 30)
    out = transforms.pad_to({"image": ex["image"], "label": ex["label"]}, 32)
    assert (out["height"], out["width"], bool(out["valid"])) == (20, 30, True)
    assert out["image"].shape == (32, 32, 3) and np.all(out["label"][20:] == 255)


def test_pad_to_a_height_width_canvas_pads_bottom_right_and_records_true_size():
    ex = _example(20, 30)
    out = transforms.pad_to({"image": ex["image"], "label": ex["label"]}, (24, 40), ignore_index=255)
    assert out["image"].shape == (24, 40, 3) and out["label"].shape == (24, 40)
    assert (out["height"], out["width"], bool(out["valid"])) == (20, 30, True)
    np.testing.assert_array_equal(out["image"][:20, :30], ex["image"])
    np.testing.assert_array_equal(out["label"][:20, :30], ex["label"])
    assert np.all(out["image"][20:] == 0) and np.all(out["image"][:, 30:] == 0)
    assert np.all(out["label"][20:] == 255) and np.all(out["label"][:, 30:] == 255)


def test_pad_to_a_canvas_of_the_image_size_leaves_the_image_as_it_is():
    ex = _example(20, 30)
    out = transforms.pad_to({"image": ex["image"], "label": ex["label"]}, (20, 30))
    np.testing.assert_array_equal(out["image"], ex["image"])
    np.testing.assert_array_equal(out["label"], ex["label"])


@pytest.mark.parametrize("canvas", [(20, 29), (19, 30), 29])
def test_an_image_larger_than_the_canvas_is_a_one_line_error_naming_file_key_and_sides(canvas):
    ex = _example(20, 30)
    with pytest.raises(DataError) as info:
        transforms.pad_to({"image": ex["image"], "label": ex["label"]}, canvas, where="val.txt:3 gt_jpg/val/a.jpg")
    message = str(info.value)
    assert "\n" not in message and message.startswith("val.txt:3 gt_jpg/val/a.jpg: image of height 20, width 30")
    assert f"data.eval_pad_size={canvas!r}" in message
    hp, wp = canvas if isinstance(canvas, tuple) else (canvas, canvas)
    assert f"(height {hp}, width {wp})" in message


@pytest.mark.parametrize("value", [0, -4, (1, 2, 3), (0, 8), (8, -1), (8.0, 8), "abc", "512", True, None, ()])
def test_a_malformed_canvas_is_a_one_line_input_error_naming_the_key(value):
    with pytest.raises(InputError) as info:
        transforms.canvas_hw(value)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"data.eval_pad_size={value!r}: expected")


@pytest.mark.parametrize("value, sides", [(96, (96, 96)), ((620, 2026), (620, 2026)), ([620, 2026], (620, 2026)),
                                          (np.int64(64), (64, 64))])
def test_a_canvas_is_an_int_square_or_height_width(value, sides):
    assert transforms.canvas_hw(value) == sides
