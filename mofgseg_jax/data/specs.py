"""Dataset descriptions: `data_specs/<name>.json` loaded into a `DatasetSpec`.

A spec holds what code must not repeat: class names, colour palette, ignore label, the raw folder
layout and the published training settings. `custom` is the standard layout with the classes taken
from the config (`model.num_classes` -> `data.num_classes`, `data.class_names`).
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Sequence

from mofgseg_jax.errors import InputError

SPEC_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                        "data_specs")


@dataclasses.dataclass(frozen=True)
class DatasetSpec:
    """One dataset's description.

    `layout[subset]` ('train' / 'val') gives `images` and `masks` folders relative to the root;
    `image_ext` / `mask_ext` the file endings. `published` holds the paper's training settings
    (crop_size, epochs, batch_size_per_gpu, num_gpus, lr, lr_multi); empty for custom/demo data.
    """

    name: str
    num_classes: int
    class_names: tuple[str, ...]
    palette: tuple[tuple[int, int, int], ...]
    ignore_index: int
    layout: dict[str, Any]
    splits: tuple[str, ...]
    published: dict[str, Any]
    description: str = ""

    def image_path(self, subset: str, image_id: str) -> str:
        """Root-relative image path of `image_id` in `subset`, e.g. 'gt_jpg/train/10000.jpg'."""
        return f"{self.layout[subset]['images']}/{image_id}{self.layout['image_ext']}"

    def mask_path(self, subset: str, image_id: str) -> str:
        return f"{self.layout[subset]['masks']}/{image_id}{self.layout['mask_ext']}"


def available_specs() -> list[str]:
    """Names with a file under data_specs/ (including 'custom')."""
    return sorted(f[:-5] for f in os.listdir(SPEC_DIR) if f.endswith(".json"))


def default_palette(num_classes: int) -> tuple[tuple[int, int, int], ...]:
    """The PASCAL VOC bit-interleaved palette, extended to any class count (for custom data)."""
    palette = []
    for label in range(num_classes):
        r = g = b = 0
        c = label
        for shift in range(7, -1, -1):
            r |= ((c >> 0) & 1) << shift
            g |= ((c >> 1) & 1) << shift
            b |= ((c >> 2) & 1) << shift
            c >>= 3
        palette.append((r, g, b))
    return tuple(palette)


# What a spec file must hold (dotted keys are nested), with the JSON type of each; `_OPTIONAL_KEYS`
# are checked only when present. Checked once on loading, so a bad file is one line naming the key.
_REQUIRED_KEYS = {"name": str, "num_classes": int, "class_names": list, "palette": list, "layout": dict,
                  "layout.train": dict, "layout.train.images": str, "layout.train.masks": str,
                  "layout.val": dict, "layout.val.images": str, "layout.val.masks": str,
                  "layout.image_ext": str, "layout.mask_ext": str}
_OPTIONAL_KEYS = {"ignore_index": int, "splits": list, "published": dict, "description": str}
_JSON_TYPE_NAMES = {str: "a string", int: "an int", list: "a list", dict: "an object"}
_MISSING = object()


def _read_spec(path: str) -> dict[str, Any]:
    """The JSON object in `path`, with `_REQUIRED_KEYS` present and every key of the right type."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = json.load(f)
    except (OSError, ValueError) as e:  # JSONDecodeError and UnicodeDecodeError are ValueErrors
        raise InputError(f"{path}: not a readable JSON spec ({e})") from None
    except RecursionError:  # json recurses once per nested [ or {
        raise InputError(f"{path}: not a readable JSON spec (values nested too deeply)") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: must be a JSON object of spec keys, got {type(raw).__name__}")
    for key, kind in {**_REQUIRED_KEYS, **_OPTIONAL_KEYS}.items():
        value = raw
        for part in key.split("."):  # parents come first in the table, so each is a dict here
            value = value.get(part, _MISSING)
        if value is _MISSING:
            if key in _REQUIRED_KEYS:
                raise InputError(f"{path}: key '{key}' missing")
        elif not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise InputError(f"{path}: key '{key}' must be {_JSON_TYPE_NAMES[kind]}, got {value!r}")
    for i, class_name in enumerate(raw["class_names"]):
        if not isinstance(class_name, str):
            raise InputError(f"{path}: key 'class_names' item {i} must be a string, got {class_name!r}")
    for i, colour in enumerate(raw["palette"]):
        if not (isinstance(colour, list) and len(colour) == 3
                and all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in colour)):
            raise InputError(f"{path}: key 'palette' item {i} must be [r, g, b] of ints 0..255, got {colour!r}")
    if not 0 <= raw.get("ignore_index", 255) <= 255:  # masks are uint8: padding and void pixels hold it
        raise InputError(f"{path}: key 'ignore_index' must be an int 0..255 (masks are 8-bit), "
                         f"got {raw['ignore_index']!r}")
    return raw


def load_spec(name: str, *, num_classes: int = 0, class_names: Sequence[str] = (),
              ignore_index: int | None = None) -> DatasetSpec:
    """Loads `data_specs/<name>.json`.

    For 'custom', `num_classes` (or `len(class_names)`) is required; names default to 'class_<i>'
    and the palette to `default_palette`. For a named dataset a non-zero `num_classes` must agree
    with the spec (a config that disagrees with its dataset is an error, not a silent override).
    A given `ignore_index` must agree with the spec's for every dataset: the host pipeline pads and
    checks masks with the spec's value, the train step's losses and edge targets use the config's.
    """
    path = os.path.join(SPEC_DIR, f"{name}.json")
    if not os.path.exists(path):
        raise InputError(f"data.name={name!r}: no {path}; choose one of {', '.join(available_specs())}")
    raw = _read_spec(path)
    class_names = tuple(class_names)
    if name == "custom":
        k = int(num_classes) or len(class_names)
        if k <= 0:
            raise InputError("data.name='custom' needs model.num_classes (or data.class_names) to be set")
        if class_names and len(class_names) != k:
            raise InputError(f"data.class_names has {len(class_names)} names but num_classes is {k}")
        raw["num_classes"] = k
        raw["class_names"] = list(class_names or (f"class_{i}" for i in range(k)))
        raw["palette"] = [list(c) for c in default_palette(k)]
    else:
        if raw["num_classes"] < 1:  # custom.json alone holds 0: its classes come from the config
            raise InputError(f"{path}: key 'num_classes' must be at least 1, got {raw['num_classes']}")
        if num_classes and int(num_classes) != raw["num_classes"]:
            raise InputError(f"{path}: dataset has {raw['num_classes']} classes but the config says "
                             f"num_classes={num_classes}")
        if class_names and tuple(class_names) != tuple(raw["class_names"]):
            raise InputError(f"{path}: data.class_names differs from the spec's class names")
    spec_ignore = int(raw.get("ignore_index", 255))
    if ignore_index is not None and int(ignore_index) != spec_ignore:
        raise InputError(f"data.ignore_index={ignore_index} differs from {path}'s ignore_index={spec_ignore}; "
                         "masks are padded with the spec's value, so change both or neither")
    if len(raw["class_names"]) != raw["num_classes"] or len(raw["palette"]) != raw["num_classes"]:
        raise InputError(f"{path}: class_names/palette length differs from num_classes={raw['num_classes']}")
    if spec_ignore < raw["num_classes"]:  # losses and mIoU skip its pixels: that class would never count
        raise InputError(f"{path}: key 'ignore_index' {spec_ignore} is one of the class ids "
                         f"0..{raw['num_classes'] - 1}; it must be num_classes..255")
    return DatasetSpec(
        name=raw["name"], num_classes=int(raw["num_classes"]), class_names=tuple(raw["class_names"]),
        palette=tuple(tuple(int(v) for v in c) for c in raw["palette"]),
        ignore_index=spec_ignore, layout=raw["layout"],
        splits=tuple(raw.get("splits", ())), published=dict(raw.get("published", {})),
        description=raw.get("description", ""))


def spec_from_config(data_cfg: Any) -> DatasetSpec:
    """The spec named by `data_cfg.name`, with `num_classes` / `class_names` from the config (and its
    `ignore_index` checked against the spec's)."""
    return load_spec(data_cfg.name, num_classes=int(cfg_get(data_cfg, "num_classes", 0) or 0),
                     class_names=tuple(cfg_get(data_cfg, "class_names", ()) or ()),
                     ignore_index=cfg_get(data_cfg, "ignore_index", None))


def cfg_get(cfg: Any, key: str, default: Any) -> Any:
    """`cfg.key` for ConfigDicts, dicts and plain objects alike."""
    if isinstance(cfg, dict):
        return cfg.get(key, default)
    try:
        return getattr(cfg, key)
    except (AttributeError, KeyError):
        return default
