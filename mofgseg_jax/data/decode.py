"""The one decoding + validation path for both sources (folder files and TFDS records).

Every check names the file and the split-list line it came from, so a bad dataset is fixed in one
look: unreadable/corrupt image, mask size differing from its image, mask values that are neither a
class id nor the ignore label, a colour (RGB) mask where class ids are expected. Grayscale, RGBA,
palette and CMYK images are converted to RGB; 16-bit and float images are refused (no one scaling
to 8 bits fits all data), as are modes PIL cannot convert. `read_image` reads an image file the
same way (predict.py uses it).
"""

from __future__ import annotations

import io
import re
from typing import Any

import numpy as np
from PIL import Image, ImageMode, UnidentifiedImageError

from mofgseg_jax.data.errors import DataError

# Colour images a mask file may legitimately be stored as: only when all channels are equal
# (a grayscale id map saved as RGB). A palette ('P') PNG stores ids as indices, as PASCAL does.
_COLOUR_MODES = ("RGB", "RGBA", "CMYK", "YCbCr", "HSV", "LAB")

# PIL reads a 16-bit colour file (RGB / grey+alpha / RGBA PNG, RGB TIFF, ...) into an 8-bit mode,
# keeping only each sample's high byte: ids 0..255 all become 0. Only the raw mode it decodes from
# says so ('RGB;16B'; B, L, N the byte order). 'BGR;16' (a BMP's 5-6-5 pixel) holds 8-bit samples.
_SIXTEEN_BIT_RAW_MODE = re.compile(r";16[BLN]")


def _open(data: bytes, path: str, where: str, kind: str) -> Image.Image:
    if not data:
        raise DataError(f"{path} ({where}): {kind} file is empty")
    try:
        img = Image.open(io.BytesIO(data))
        raw_modes = _raw_modes(img)  # before load(), which forgets them
        img.load()  # decode now: a truncated/corrupt file fails here, not later in a worker
    except UnidentifiedImageError:  # its message names the in-memory buffer, not the file
        raise DataError(f"{path} ({where}): cannot decode {kind}: not a known image format") from None
    except Exception as e:  # PIL raises many types (OSError, SyntaxError, ValueError, ...)
        raise DataError(f"{path} ({where}): cannot decode {kind}: {e}") from None
    if ImageMode.getmode(img.mode).typestr == "|u1" and any(map(_SIXTEEN_BIT_RAW_MODE.search, raw_modes)):
        also = " (or as 16-bit greyscale, read as ids)" if kind == "mask" else ""
        raise DataError(f"{path} ({where}): {kind} has 16 bits a channel, which PIL reads as 8-bit mode "
                        f"{img.mode!r} keeping only the high byte; save it with 8 bits a channel{also}")
    return img


def _raw_modes(img: Image.Image) -> list[str]:
    """The raw modes PIL will decode `img`'s file from: each tile's argument, or its first item."""
    modes = []
    for tile in getattr(img, "tile", None) or ():
        args = tile.args if isinstance(tile.args, tuple) else (tile.args,)
        if args and isinstance(args[0], str):
            modes.append(args[0])
    return modes


def _convert(img: Image.Image, mode: str, path: str, where: str, kind: str) -> Image.Image:
    """`img.convert(mode)`; a mode PIL has no conversion for (a TIFF's premultiplied 'La', 'LAB' to
    'L') is a `DataError` naming the file and the mode, not PIL's ValueError."""
    try:
        return img.convert(mode)
    except ValueError:
        raise DataError(f"{path} ({where}): {kind} has PIL mode {img.mode!r}, which PIL cannot convert to "
                        f"{mode!r}; save it as 8-bit RGB or greyscale") from None


def decode_image(data: bytes, *, path: str = "<image>", where: str = "") -> np.ndarray:
    """Encoded JPEG/PNG bytes -> uint8 `[H, W, 3]` RGB (grayscale/RGBA/palette converted).

    Images with more than 8 bits a channel (16-bit, 32-bit int or float) are an error: PIL's
    conversion clips them to white, and how their range maps to 0..255 depends on the data.
    """
    img = _open(data, path, where, "image")
    if ImageMode.getmode(img.mode).typestr not in ("|u1", "|b1"):  # 8-bit and 1-bit modes convert exactly
        raise DataError(f"{path} ({where}): image has more than 8 bits a channel (PIL mode {img.mode!r}); "
                        "convert it to 8-bit RGB first, choosing how its value range maps to 0..255")
    if img.mode != "RGB":
        img = _convert(img, "RGB", path, where, "image")
    return np.asarray(img, dtype=np.uint8)


def decode_mask(data: bytes, *, num_classes: int, ignore_index: int = 255, path: str = "<mask>",
                where: str = "", image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Encoded PNG of class ids -> uint8 `[H, W]`; values must be in [0, num_classes) or ignore.

    `image_shape` (`[H, W, ...]` of the paired image) makes a size mismatch an error.
    """
    img = _open(data, path, where, "mask")
    if img.mode in _COLOUR_MODES:
        arr = np.asarray(img)
        if arr.ndim == 3 and not (np.all(arr[..., :1] == arr[..., 1:3])):
            raise DataError(
                f"{path} ({where}): mask is a colour ({img.mode}) image; expected one channel of class ids "
                f"0..{num_classes - 1} (or {ignore_index} = ignore). Convert colour masks to ids with the "
                "dataset palette first")
        arr = arr[..., 0] if arr.ndim == 3 else arr
    elif img.mode == "LA":
        arr = np.asarray(img)[..., 0]
    else:  # 'L', 'P' (palette indices are the ids), '1', 'I', 'I;16'
        arr = np.asarray(img)
    if arr.ndim != 2:
        raise DataError(f"{path} ({where}): mask must be a single-channel image, got shape {arr.shape}")
    if image_shape is not None and tuple(arr.shape) != tuple(image_shape[:2]):
        raise DataError(f"{path} ({where}): mask size {arr.shape[1]}x{arr.shape[0]} (WxH) differs from its "
                        f"image's {image_shape[1]}x{image_shape[0]}")
    if arr.dtype != np.uint8:
        if arr.dtype.kind == "f" and not np.array_equal(arr, np.round(arr)):  # NaN fails too
            raise DataError(f"{path} ({where}): float mask (PIL mode {img.mode!r}) has non-integer values; "
                            "class ids must be whole numbers")
        if arr.dtype == bool:
            arr = arr.astype(np.uint8)
        elif arr.min() < 0 or arr.max() > 255:
            raise DataError(f"{path} ({where}): mask values {int(arr.min())}..{int(arr.max())} do not fit "
                            f"class ids 0..{num_classes - 1} / {ignore_index}")
        arr = arr.astype(np.uint8)
    _check_ids(arr, num_classes, ignore_index, path, where)
    return arr


def _check_ids(arr: np.ndarray, num_classes: int, ignore_index: int, path: str, where: str) -> None:
    present = np.flatnonzero(np.bincount(arr.ravel(), minlength=256))
    bad = present[(present >= num_classes) & (present != ignore_index)]
    if bad.size:
        shown = ", ".join(str(v) for v in bad[:8]) + (", ..." if bad.size > 8 else "")
        raise DataError(f"{path} ({where}): mask has values {shown} that are neither a class id "
                        f"0..{num_classes - 1} nor the ignore label {ignore_index}")


def decode_edge(data: bytes, *, path: str = "<edge>", where: str = "",
                image_shape: tuple[int, ...] | None = None) -> np.ndarray:
    """Precomputed edge map (any non-zero = boundary) -> uint8 `[H, W]` in {0, 1}."""
    img = _open(data, path, where, "edge map")
    arr = np.asarray(_convert(img, "L", path, where, "edge map"))
    if image_shape is not None and tuple(arr.shape) != tuple(image_shape[:2]):
        raise DataError(f"{path} ({where}): edge map size {arr.shape[1]}x{arr.shape[0]} differs from its "
                        f"image's {image_shape[1]}x{image_shape[0]}")
    return (arr > 0).astype(np.uint8)


def read_image(path: str, *, where: str = "") -> np.ndarray:
    """An image file -> uint8 `[H, W, 3]` RGB by `decode_image`; an unreadable file is a `DataError`."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:
        raise DataError(f"{path} ({where}): cannot read image: {e.strerror or e}") from None
    return decode_image(data, path=path, where=where)


def decode_record(record: dict[str, Any], *, num_classes: int, ignore_index: int = 255,
                  with_mask: bool = True, with_edge: bool = False) -> dict[str, np.ndarray]:
    """A raw record (bytes + paths, see `sources.py`) -> {'image', ['label'], ['edge']} arrays."""
    where = record.get("where", "")
    image = decode_image(record["image"], path=record["image_path"], where=where)
    out = {"image": image}
    if with_mask:
        out["label"] = decode_mask(record["mask"], num_classes=num_classes, ignore_index=ignore_index,
                                   path=record["mask_path"], where=where, image_shape=image.shape)
    if with_edge:
        out["edge"] = decode_edge(record["edge"], path=record["edge_path"], where=where,
                                  image_shape=image.shape)
    return out
