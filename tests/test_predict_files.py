"""Prediction for image files: inputs listed, output names, padding and the written pictures."""

import numpy as np
import pytest

from mofgseg_jax.errors import InputError, InputNotFoundError
from mofgseg_jax.train.predict_files import (list_images, output_names, output_paths, padded_canvas,
                                             prediction_pictures)


def test_folders_list_their_images_sorted_and_a_file_named_twice_once(tmp_path):
    for name in ("b.png", "a.JPG", "notes.txt"):
        (tmp_path / name).write_bytes(b"")
    assert list_images(f"{tmp_path},{tmp_path / 'a.JPG'}") == [str(tmp_path / "a.JPG"), str(tmp_path / "b.png")]


@pytest.mark.parametrize("spec", ["", " , "])
def test_an_input_that_names_nothing_is_an_error(spec):
    # predict.py --input "" loaded the model, created the output folders and reported 0 images.
    with pytest.raises(InputError, match="--input .*: names no file or folder"):
        list_images(spec)


def test_a_missing_input_and_an_image_free_folder_name_the_input(tmp_path):
    with pytest.raises(InputNotFoundError, match=r"--input .*nope: no such file or folder"):
        list_images(str(tmp_path / "nope"))
    with pytest.raises(InputNotFoundError, match=r"no images"):
        list_images(str(tmp_path))


def test_two_inputs_with_one_output_name_are_refused():
    assert output_names(["a/x.jpg", "a/y.png"]) == ["x.png", "y.png"]
    with pytest.raises(InputError, match=r"--input a/x.jpg and b/x.png would both be written as x.png"):
        output_names(["a/x.jpg", "b/x.png"])


def test_canvas_pads_below_and_right_to_the_multiple_with_zeros():
    image = np.full((5, 7, 3), 9, np.uint8)
    canvas = padded_canvas(image, 4)
    assert canvas.shape == (1, 8, 8, 3)
    assert (canvas[0, :5, :7] == 9).all() and canvas[0, 5:].sum() == 0 and canvas[0, :, 7:].sum() == 0
    assert padded_canvas(image, 1).shape == (1, 5, 7, 3)


def test_pictures_write_ids_with_no_prediction_as_ignore_and_colours_from_the_palette():
    pred = np.array([[0, 1], [-1, 1]])
    pictures = prediction_pictures(pred, ignore_index=255, palette=((10, 20, 30), (40, 50, 60)))
    assert np.asarray(pictures["ids"]).tolist() == [[0, 1], [255, 1]]
    colours = np.asarray(pictures["color"])
    assert colours[0, 0].tolist() == [10, 20, 30] and colours[0, 1].tolist() == [40, 50, 60]


def test_an_output_that_is_an_input_image_is_refused_even_with_overwrite(tmp_path):
    # --input photos/color --output photos: predict.py --overwrite replaced each photo by its prediction.
    (tmp_path / "color").mkdir()
    (tmp_path / "color" / "a.png").write_bytes(b"")
    images = list_images(str(tmp_path / "color"))
    with pytest.raises(InputError, match=r"would write .*color/a.png over the input image"):
        output_paths(str(tmp_path), images, output_names(images))
    assert output_paths(str(tmp_path / "pred"), images, ["a.png"]) == [
        str(tmp_path / "pred" / "ids" / "a.png"), str(tmp_path / "pred" / "color" / "a.png")]
