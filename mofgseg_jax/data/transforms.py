"""Host-side transforms of DESIGN.md §3 steps 1-2, with PIL/NumPy and an explicit `np.random.Generator`.

Outputs stay uint8 and un-normalised: the device converts to [0, 1] and normalises (`data.mean`,
`data.std`; in the train step and in evaluation), so the host->device transfer is 4x smaller.
Geometric ops move the mask (and edge map, and `inside` map) with the image: image bilinear, masks
nearest; crop padding is 0 for the image, the edge map and `inside`, the ignore label for the mask.
`inside` (1 = pixel of the image, 0 = crop padding) tells on-the-fly edge targets padding apart from
void that the mask file labels with the ignore label too (`losses.boundary.edge_targets`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
from PIL import Image, ImageEnhance, ImageFilter

from mofgseg_jax.data.errors import DataError
from mofgseg_jax.errors import InputError

Example = dict[str, np.ndarray]  # {'image': uint8[H,W,3], optional 'label'/'edge'/'inside': uint8[H,W]}


def _resize(arr: np.ndarray, size_wh: tuple[int, int], resample: int) -> np.ndarray:
    return np.asarray(Image.fromarray(arr).resize(size_wh, resample))


def random_resize(example: Example, rng: np.random.Generator, scale_range: Sequence[float]) -> Example:
    """Scales so that the long side becomes `long_side * U(scale_range)`, keeping the aspect ratio."""
    h, w = example["image"].shape[:2]
    scale = rng.uniform(scale_range[0], scale_range[1])
    long_side = max(1, int(max(h, w) * scale + 0.5))
    if h >= w:
        new_h, new_w = long_side, max(1, int(w * long_side / h + 0.5))
    else:
        new_w, new_h = long_side, max(1, int(h * long_side / w + 0.5))
    out = {}
    for key, arr in example.items():
        out[key] = _resize(arr, (new_w, new_h), Image.BILINEAR if key == "image" else Image.NEAREST)
    return out


def random_crop(example: Example, rng: np.random.Generator, crop_size: int, *, ignore_index: int = 255,
                image_fill: int = 0) -> Example:
    """Pads bottom/right to at least `crop_size` (image `image_fill`, mask ignore, edge and inside 0),
    then crops a uniformly placed `crop_size` square."""
    h, w = example["image"].shape[:2]
    ph, pw = max(crop_size - h, 0), max(crop_size - w, 0)
    fills = {"image": image_fill, "label": ignore_index, "edge": 0, "inside": 0}
    out = {}
    y = int(rng.integers(0, max(h, crop_size) - crop_size + 1))
    x = int(rng.integers(0, max(w, crop_size) - crop_size + 1))
    for key, arr in example.items():
        if ph or pw:
            pad = ((0, ph), (0, pw)) + ((0, 0),) * (arr.ndim - 2)
            arr = np.pad(arr, pad, constant_values=fills[key])
        out[key] = arr[y:y + crop_size, x:x + crop_size]
    return out


def random_hflip(example: Example, rng: np.random.Generator, prob: float = 0.5) -> Example:
    if rng.random() < prob:
        return {key: arr[:, ::-1] for key, arr in example.items()}
    return example


def colour_jitter(img: Image.Image, rng: np.random.Generator, *, brightness: float, contrast: float,
                  saturation: float, hue: float) -> Image.Image:
    """torchvision ColorJitter semantics on PIL: factors U(1-x, 1+x), hue shift U(-hue, hue) of a
    full turn, the four ops in a random order."""
    for op in rng.permutation(4):
        if op == 0 and brightness > 0:
            img = ImageEnhance.Brightness(img).enhance(rng.uniform(max(0.0, 1 - brightness), 1 + brightness))
        elif op == 1 and contrast > 0:
            img = ImageEnhance.Contrast(img).enhance(rng.uniform(max(0.0, 1 - contrast), 1 + contrast))
        elif op == 2 and saturation > 0:
            img = ImageEnhance.Color(img).enhance(rng.uniform(max(0.0, 1 - saturation), 1 + saturation))
        elif op == 3 and hue > 0:
            shift = int(round(rng.uniform(-hue, hue) * 255))
            h, s, v = img.convert("HSV").split()
            h = Image.fromarray(((np.asarray(h, np.int16) + shift) % 256).astype(np.uint8), "L")
            img = Image.merge("HSV", (h, s, v)).convert("RGB")
    return img


def strong_colour_view(image: np.ndarray, rng: np.random.Generator, *, jitter_prob: float = 0.8,
                       brightness: float = 0.5, contrast: float = 0.5, saturation: float = 0.5,
                       hue: float = 0.25, grayscale_prob: float = 0.2, blur_prob: float = 0.5,
                       blur_sigma: Sequence[float] = (0.1, 2.0)) -> np.ndarray:
    """The labelled strong view: colour jitter (p=jitter_prob), grayscale (p), Gaussian blur (p,
    sigma U(blur_sigma)). uint8 `[H, W, 3]` in and out."""
    img = Image.fromarray(image)
    # Draw every decision even when unused, so one op's probability does not shift the others' draws.
    do_jitter, do_gray, do_blur = rng.random(3)
    if do_jitter < jitter_prob:
        img = colour_jitter(img, rng, brightness=brightness, contrast=contrast, saturation=saturation, hue=hue)
    if do_gray < grayscale_prob:
        img = img.convert("L").convert("RGB")
    sigma = rng.uniform(blur_sigma[0], blur_sigma[1])
    if do_blur < blur_prob:
        img = img.filter(ImageFilter.GaussianBlur(radius=sigma))
    return np.asarray(img, dtype=np.uint8)


def train_view(example: Example, rng: np.random.Generator, *, crop_size: int,
               scale_range: Sequence[float] = (0.5, 2.0), ignore_index: int = 255, flip_prob: float = 0.5,
               strong: bool = True, with_inside: bool = False, **colour_kwargs) -> Example:
    """Resize -> crop -> flip (-> strong colour view when `strong`): a `crop_size` square example.

    Labelled examples use `strong=True` (DESIGN.md step 1); unlabelled ones the weak view only (step 2).
    `with_inside` adds 'inside': uint8 `[C, C]`, 1 on the image's pixels and 0 on crop padding, moved
    like the mask (for edge targets derived on the fly).
    """
    if with_inside:
        example = {**example, "inside": np.ones(example["image"].shape[:2], np.uint8)}
    example = random_resize(example, rng, scale_range)
    example = random_crop(example, rng, crop_size, ignore_index=ignore_index)
    example = random_hflip(example, rng, flip_prob)
    if strong:
        example["image"] = strong_colour_view(example["image"], rng, **colour_kwargs)
    return {key: np.ascontiguousarray(arr) for key, arr in example.items()}


def canvas_hw(pad_size: int | Sequence[int], key: str = "data.eval_pad_size") -> tuple[int, int]:
    """(height, width) of a validation canvas given as an int (a square) or a (height, width) pair.

    Raises a one-line `InputError` naming `key` for anything else (0, negative, 3 numbers, a string).
    """
    if isinstance(pad_size, (int, np.integer)) and not isinstance(pad_size, (bool, np.bool_)):
        sides: tuple = (pad_size, pad_size)
    elif isinstance(pad_size, (tuple, list)) and len(pad_size) == 2:
        sides = tuple(pad_size)
    else:
        sides = ()
    if len(sides) != 2 or not all(isinstance(s, (int, np.integer)) and not isinstance(s, (bool, np.bool_))
                                  and s > 0 for s in sides):
        raise InputError(f"{key}={pad_size!r}: expected a positive int (a square canvas) or (height, width), "
                         f"two positive ints, e.g. 1024 or (620, 2026)")
    return int(sides[0]), int(sides[1])


def pad_to(example: Example, pad_size: int | Sequence[int], *, ignore_index: int = 255, where: str = "") -> Example:
    """Pads bottom/right to the `pad_size` canvas (image 0, label ignore) and records the true size.

    pad_size: an int (a square canvas) or (height, width); an image of exactly that size is not
    padded. Returns {'image': uint8[Hp,Wp,3], 'label': uint8[Hp,Wp], 'height', 'width': int32,
    'valid': bool}.
    """
    hp, wp = canvas_hw(pad_size)
    h, w = example["image"].shape[:2]
    if h > hp or w > wp:
        raise DataError(f"{where}: image of height {h}, width {w} does not fit data.eval_pad_size={pad_size!r} "
                        f"(height {hp}, width {wp}); raise it")
    image = np.zeros((hp, wp, 3), np.uint8)
    image[:h, :w] = example["image"]
    label = np.full((hp, wp), ignore_index, np.uint8)
    label[:h, :w] = example["label"]
    return {"image": image, "label": label, "height": np.int32(h), "width": np.int32(w),
            "valid": np.bool_(True)}
