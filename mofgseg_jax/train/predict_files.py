"""Prediction for image files: which files an `--input` names, their output names, and one image's
padded canvas and output pictures. `launch/predict.py` runs these around the jitted model."""

from __future__ import annotations

import os
from typing import Any, Sequence

import numpy as np

from mofgseg_jax.errors import InputError, InputNotFoundError

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
OUTPUT_KINDS = ("ids", "color")  # <output>/ids/<name>.png (class ids), <output>/color/<name>.png


def list_images(spec: str) -> list[str]:
    """Image paths named by a comma-separated list of files and folders (folders: sorted, not
    recursive); a file named twice (also through its folder) is listed once."""
    items = [s.strip() for s in spec.split(",") if s.strip()]
    if not items:  # `--input "$IMAGES"` with the variable unset: not a run that predicts nothing
        raise InputError(f"--input {spec!r}: names no file or folder")
    paths = []
    for item in items:
        if os.path.isdir(item):
            found = sorted(os.path.join(item, n) for n in os.listdir(item) if n.lower().endswith(IMAGE_EXTS))
            if not found:
                raise InputNotFoundError(f"--input {item}: no images ({', '.join(IMAGE_EXTS)}) in this folder")
            paths += found
        elif os.path.isfile(item):
            paths.append(item)
        else:
            raise InputNotFoundError(f"--input {item}: no such file or folder")
    unique: dict[str, str] = {}
    for path in paths:
        unique.setdefault(os.path.realpath(path), path)
    return list(unique.values())


def output_names(images: list[str]) -> list[str]:
    """The output file name of each image, `<file name without extension>.png`; two images with one
    name (`a/x.jpg`, `b/x.png`) are an error naming both, as the second would replace the first."""
    first: dict[str, str] = {}
    for path in images:
        name = os.path.splitext(os.path.basename(path))[0] + ".png"
        if name in first:
            raise InputError(f"--input {first[name]} and {path} would both be written as {name}; "
                             "predict them into separate --output folders")
        first[name] = path
    return list(first)


def output_paths(output: str, images: list[str], names: list[str]) -> list[str]:
    """`<output>/<kind>/<name>` for every name (of `output_names(images)`) and kind. One that is an
    input image is an error, --overwrite or not: `--input photos/color --output photos` replaced
    each photo with its prediction."""
    inputs = {os.path.realpath(p): p for p in images}
    paths = [os.path.join(output, kind, name) for name in names for kind in OUTPUT_KINDS]
    for path in paths:
        if os.path.realpath(path) in inputs:
            raise InputError(f"--output {output}: would write {path} over the input image "
                             f"{inputs[os.path.realpath(path)]}; choose an --output that holds no input")
    return paths


def check_images(images: list[str]) -> None:
    """Decodes every image once (the pixels are dropped), so that a truncated, non-image or 16-bit
    file ends the run before the model loads and anything is written: found in the write loop, it
    left the earlier images' outputs behind, which the rerun then refused as existing."""
    from mofgseg_jax.data.decode import read_image  # noqa: PLC0415

    for path in images:
        read_image(path, where="--input")


def padded_canvas(image: np.ndarray, multiple: int) -> np.ndarray:
    """uint8 `[H, W, 3]` -> `[1, Hp, Wp, 3]`, zero-padded below and right to multiples of `multiple`
    (so that similar sizes share one compilation; 1 = unpadded)."""
    h, w = image.shape[:2]
    m = max(1, int(multiple))
    canvas = np.zeros((1, -(-h // m) * m, -(-w // m) * m, 3), np.uint8)
    canvas[0, :h, :w] = image
    return canvas


def prediction_pictures(pred: np.ndarray, *, ignore_index: int,
                        palette: Sequence[Sequence[int]]) -> dict[str, Any]:
    """PIL images of one prediction, int `[H, W]` (< 0 = no prediction): 'ids' (uint8 class ids, no
    prediction as `ignore_index`) and 'color' (the dataset palette)."""
    from PIL import Image  # noqa: PLC0415

    from mofgseg_jax.train.tb import colorize  # noqa: PLC0415

    ids = np.where(pred < 0, ignore_index, pred).astype(np.uint8)
    return {"ids": Image.fromarray(ids, "L"), "color": Image.fromarray(colorize(pred, palette))}
