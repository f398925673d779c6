"""Procedural fine-grained demo dataset: deterministic, no download, seconds to generate.

Each image is a warped Voronoi partition into regions; each region is one of 8 texture classes.
Classes come in families that share a colour family and differ only in structure:

  0 smooth          low-frequency colour field (any hue)
  1 stripes_fine    straight stripes, period P                       (warm colours)
  2 stripes_coarse  straight stripes, period P * stripe_ratio        (warm colours)
  3 stripes_wavy    stripes of period P whose phase meanders         (warm colours)
  4 grain_fine      band-limited noise, grain G                      (green colours)
  5 grain_coarse    band-limited noise, grain G * grain_ratio        (green colours)
  6 dots            grid of round dots, period D                     (blue colours)
  7 checker         checkerboard, period D                           (blue colours)

Every region draws its own colour (family hue +- colour_spread, or with `off_family_prob` any hue),
contrast, orientation and phase; the image gets an illumination gradient and pixel noise, and is
stored as JPEG. Colour therefore separates families only loosely and never the classes within a
family: the texture has to be learnt, which takes labelled examples. The knobs (`stripe_ratio`,
`grain_ratio`, `colour_spread`, `off_family_prob`, `contrast_range`, `noise_std`, `num_regions`,
`warp`) make it easier or harder.

Layout written under `root` (the published raw layout):
  gt_jpg/{train,val}/NNNNN.jpg, label_png/{train,val}/NNNNN.png (ids 0..7),
  splits/{1_16,1_8,1_4,all}/{labeled,unlabeled}.txt, splits/val.txt, and mofgseg_demo.json (the
  generation parameters; `"complete": true` once everything else is written).
Generation writes only into a missing or empty folder (or with `overwrite`), so a folder that holds
anything else, such as a user's dataset named by `data.root`, is never written over.
"""

from __future__ import annotations

import json
import os
import time
from typing import Any, Sequence

import numpy as np
from PIL import Image

from mofgseg_jax.data.splits import make_splits, write_splits
from mofgseg_jax.errors import OutputExistsError
from mofgseg_jax.outputs import check_writable

CLASS_NAMES = ("smooth", "stripes_fine", "stripes_coarse", "stripes_wavy", "grain_fine", "grain_coarse",
               "dots", "checker")
# Hue (0..1) of each class's colour family; smooth regions take any hue (None).
FAMILY_HUE = (None, 0.06, 0.06, 0.06, 0.3, 0.3, 0.6, 0.6)
DEFAULT_SPLITS = ("1_16", "1_8", "1_4", "all")
# Claims the folder as demo data: written first with "complete": false, rewritten last with true.
MARKER_FILE = "mofgseg_demo.json"
# The first line of splits/val.txt of every demo dataset, also of those written before MARKER_FILE.
FIRST_VAL_PAIR = "gt_jpg/val/00000.jpg label_png/val/00000.png"


def _smooth_field(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """Smooth random field in [-1, 1], `[size, size]` float32: a `cells`^2 grid upsampled bicubic."""
    grid = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    return np.asarray(Image.fromarray(grid, "F").resize((size, size), Image.BICUBIC))


def _hsv_to_rgb(h: float, s: float, v: float) -> np.ndarray:
    rgb = Image.new("HSV", (1, 1), (int(h % 1.0 * 255), int(s * 255), int(v * 255))).convert("RGB")
    return np.asarray(rgb, np.float32)[0, 0]


def _pattern(cls: int, rng: np.random.Generator, yy: np.ndarray, xx: np.ndarray, *, stripe_period: float,
             stripe_ratio: float, grain: float, grain_ratio: float, dot_period: float) -> np.ndarray:
    """Texture value in [0, 1] of class `cls` over the pixel grid `[S, S]`."""
    size = yy.shape[0]
    angle = rng.uniform(0, np.pi)
    u = xx * np.cos(angle) + yy * np.sin(angle)
    phase = rng.uniform(0, 2 * np.pi)
    if cls == 0:
        return 0.5 + 0.5 * _smooth_field(rng, size, 3)
    if cls in (1, 2, 3):
        period = stripe_period * (stripe_ratio if cls == 2 else 1.0) * rng.uniform(0.92, 1.08)
        if cls == 3:  # meandering phase: same period, curved stripes
            u = u + 0.35 * period * _smooth_field(rng, size, 4) * 2
        return 0.5 + 0.5 * np.sin(2 * np.pi * u / period + phase)
    if cls in (4, 5):
        g = grain * (grain_ratio if cls == 5 else 1.0) * rng.uniform(0.9, 1.1)
        cells = max(2, int(round(size / g)))
        field = _smooth_field(rng, size, cells)
        return np.clip(0.5 + 0.9 * field, 0, 1)
    period = dot_period * rng.uniform(0.92, 1.08)
    v = -xx * np.sin(angle) + yy * np.cos(angle)
    fu, fv = (u / period + rng.uniform()) % 1.0, (v / period + rng.uniform()) % 1.0
    if cls == 6:
        r = np.sqrt((fu - 0.5) ** 2 + (fv - 0.5) ** 2)
        return np.clip((0.32 - r) / 0.06 + 0.5, 0, 1)
    return ((fu < 0.5) ^ (fv < 0.5)).astype(np.float32)


def render(rng: np.random.Generator, *, size: int = 96, num_regions: Sequence[int] = (3, 7),
           warp: float = 10.0, stripe_period: float = 6.0, stripe_ratio: float = 1.6, grain: float = 3.0,
           grain_ratio: float = 2.2, dot_period: float = 9.0, colour_spread: float = 0.06,
           off_family_prob: float = 0.25, contrast_range: Sequence[float] = (0.25, 0.6),
           noise_std: float = 8.0) -> tuple[np.ndarray, np.ndarray]:
    """One image uint8 `[S, S, 3]` and its class-id mask uint8 `[S, S]`."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    n = int(rng.integers(num_regions[0], num_regions[1] + 1))
    seeds = rng.uniform(0, size, (n, 2))
    wy = yy + warp * _smooth_field(rng, size, 4)
    wx = xx + warp * _smooth_field(rng, size, 4)
    dist = (wy[None] - seeds[:, 0, None, None]) ** 2 + (wx[None] - seeds[:, 1, None, None]) ** 2
    region = np.argmin(dist, axis=0)
    classes = rng.integers(0, len(CLASS_NAMES), n)
    image = np.zeros((size, size, 3), np.float32)
    for r in range(n):
        cls = int(classes[r])
        where = region == r
        if not where.any():
            continue
        t = _pattern(cls, rng, yy, xx, stripe_period=stripe_period, stripe_ratio=stripe_ratio, grain=grain,
                     grain_ratio=grain_ratio, dot_period=dot_period)
        hue = FAMILY_HUE[cls]
        if hue is None or rng.uniform() < off_family_prob:
            hue = rng.uniform()
        hue += rng.uniform(-colour_spread, colour_spread)
        base = _hsv_to_rgb(hue, rng.uniform(0.35, 0.8), rng.uniform(0.45, 0.85))
        contrast = rng.uniform(*contrast_range)
        pixel = base[None, None] * (1 - contrast + 2 * contrast * t[..., None])
        image[where] = pixel[where]
    illumination = 1.0 + 0.25 * _smooth_field(rng, size, 2)
    image = image * illumination[..., None] + rng.normal(0, noise_std, image.shape)
    return np.clip(image + 0.5, 0, 255).astype(np.uint8), classes[region].astype(np.uint8)


def generate(root: str, *, overwrite: bool = False, seed: int = 0, num_train: int = 512, num_val: int = 96,
             size: int = 96, ratios: Sequence[str] = DEFAULT_SPLITS, split_seed: int = 0, jpeg_quality: int = 90,
             flag: str = "data.root", **render_kwargs: Any) -> dict[str, Any]:
    """Writes the demo dataset under `root` (layout in the module docstring); returns a summary.

    Image i of a subset depends only on (seed, subset, i), so any count reproduces the same images.
    `render_kwargs` are `render`'s difficulty knobs. `root` must be missing or empty unless
    `overwrite` (then same-named files are replaced and other files stay); else `OutputExistsError`.
    A `root` that cannot be written is `InputNotWritableError`, naming `flag` (how the user gave it).
    """
    _refuse_unless_empty(root, overwrite=overwrite)
    check_writable(root, flag)  # a read-only or file-blocked path: one line, not makedirs' traceback
    start = time.perf_counter()
    params = {"seed": seed, "num_train": num_train, "num_val": num_val, "size": size, "splits": list(ratios),
              "split_seed": split_seed, "jpeg_quality": jpeg_quality, **render_kwargs}
    _write_marker(root, params, complete=False)
    counts = np.zeros(len(CLASS_NAMES), np.int64)
    pairs = {}
    for subset_id, (subset, num) in enumerate((("train", num_train), ("val", num_val))):
        os.makedirs(os.path.join(root, "gt_jpg", subset), exist_ok=True)
        os.makedirs(os.path.join(root, "label_png", subset), exist_ok=True)
        pairs[subset] = []
        for i in range(num):
            rng = np.random.default_rng([seed, subset_id, i])
            image, mask = render(rng, size=size, **render_kwargs)
            image_rel, mask_rel = f"gt_jpg/{subset}/{i:05d}.jpg", f"label_png/{subset}/{i:05d}.png"
            Image.fromarray(image).save(os.path.join(root, image_rel), quality=jpeg_quality)
            Image.fromarray(mask, "L").save(os.path.join(root, mask_rel))
            counts += np.bincount(mask.ravel(), minlength=len(CLASS_NAMES))
            pairs[subset].append((image_rel, mask_rel))
    write_splits(os.path.join(root, "splits"), make_splits(pairs["train"], ratios, seed=split_seed),
                 val=pairs["val"])
    _write_marker(root, params, complete=True)
    return {"root": root, "num_train": num_train, "num_val": num_val, "size": size,
            "splits": list(ratios), "classes": list(CLASS_NAMES),
            "class_pixel_fraction": [round(float(c) / float(counts.sum()), 4) for c in counts],
            "seconds": round(time.perf_counter() - start, 2)}


def needs_generating(root: str) -> bool:
    """Whether `ensure` would generate under `root`; reads only. A folder it must not write (not
    empty, not a demo dataset) raises `OutputExistsError`, so every process of a run can ask
    before any writes and all of them stop, instead of the others waiting for process 0."""
    marker = _read_marker(root)
    if marker is not None:
        return marker.get("complete") is not True  # an interrupted generation is redone
    if _is_demo_without_marker(root):
        return False
    _refuse_unless_empty(root, overwrite=False)
    return True


def ensure(root: str, **kwargs: Any) -> bool:
    """Generates the demo data under `root` unless a complete demo dataset is already there.

    Returns True when it generated. For the demo config's 'generated on first use'. Generates into
    a missing or empty folder, or over an interrupted generation (its marker says incomplete); any
    other folder is refused with `OutputExistsError`, never written over.
    """
    if not needs_generating(root):
        return False
    generate(root, overwrite=_read_marker(root) is not None, **kwargs)
    return True


def _refuse_unless_empty(root: str, *, overwrite: bool) -> None:
    if overwrite or not os.path.lexists(root):
        return
    if not os.path.isdir(root):
        raise OutputExistsError(f"{root}: exists and is not a folder; the demo data needs a missing or empty "
                                "folder (nothing was written)")
    marker = _read_marker(root)
    if marker is not None and marker.get("complete") is not True:
        # Not "not a demo dataset": this is ours, stopped (or still running in another process).
        raise OutputExistsError(
            f"{root}: holds a demo generation that was stopped or is still running ({MARKER_FILE} says "
            "incomplete); once none is running, redo it with "
            f"`python launch/make_demo_data.py --out {root} --overwrite` (nothing was written)")
    if os.listdir(root):
        raise OutputExistsError(
            f"{root}: the folder holds files that are not a demo dataset (no complete {MARKER_FILE}); the demo "
            "data is generated only into a missing or empty folder, so choose another one, or replace its "
            f"contents with `python launch/make_demo_data.py --out {root} --overwrite` (nothing was written)")


def _write_marker(root: str, params: dict[str, Any], *, complete: bool) -> None:
    # Written beside and renamed: a marker is never half-written.
    path = os.path.join(root, MARKER_FILE)
    os.makedirs(root, exist_ok=True)
    with open(path + ".tmp", "w") as f:
        json.dump({"complete": complete, **params}, f, indent=2, sort_keys=True)
    os.replace(path + ".tmp", path)


def _read_marker(root: str) -> dict[str, Any] | None:
    """The marker's content; None when there is none (or it is not ours: not a JSON object)."""
    try:
        with open(os.path.join(root, MARKER_FILE)) as f:
            marker = json.load(f)
    except (OSError, ValueError):
        return None
    return marker if isinstance(marker, dict) else None


def _is_demo_without_marker(root: str) -> bool:
    """A complete demo dataset written before the marker existed: splits/val.txt, written last, lists
    the demo's validation images."""
    try:
        with open(os.path.join(root, "splits", "val.txt")) as f:
            return f.readline().strip() == FIRST_VAL_PAIR
    except (OSError, UnicodeDecodeError):
        return False
