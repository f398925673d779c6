"""Split lists in the published format and deterministic split generation.

A list file has one `<image path> <mask path>` pair per line, both relative to the dataset root
(`unlabeled.txt` lists masks too; they are never read). A split folder holds `labeled.txt` and
`unlabeled.txt`; `val.txt` sits in its parent (`<root>/splits/<split>/labeled.txt`,
`<root>/splits/val.txt`).
"""

from __future__ import annotations

import codecs
import dataclasses
import math
import os
import re
from typing import Iterable, Sequence

import numpy as np

from mofgseg_jax.data.errors import DataError
from mofgseg_jax.errors import InputError
from mofgseg_jax.outputs import open_new


@dataclasses.dataclass(frozen=True)
class Entry:
    """One line of a list file; `list_file` and `line` (1-based) are kept for error messages."""

    image: str
    mask: str
    list_file: str = ""
    line: int = 0

    @property
    def where(self) -> str:
        return f"{self.list_file} line {self.line}" if self.list_file else self.image


# Only these end a line (\r alone: classic Mac text): str.splitlines also ends one at \f, \x1c, \x85,
# \u2028, ..., so the line numbers in messages would not be the file's.
_LINE_END = re.compile(r"\r\n|\r|\n")


def parse_list(text: str, *, list_file: str = "") -> list[Entry]:
    """Parses list-file text; blank lines are skipped, anything else must be exactly two paths inside
    the root, and each image may appear once (a repeated val image would count twice in mIoU)."""
    entries = []
    first_line: dict[str, int] = {}
    for number, raw in enumerate(_LINE_END.split(text), start=1):
        line = raw.strip()
        if not line:
            continue
        fields = line.split()
        if len(fields) != 2:
            raise DataError(f"{list_file or '<list>'} line {number}: expected '<image> <mask>', got {raw!r}")
        for path in fields:  # the root bounds what a list reads: a training run reads nothing else
            if os.path.isabs(path) or ".." in path.split("/"):
                raise DataError(f"{list_file or '<list>'} line {number}: {path} is not inside the dataset "
                                "root; list paths relative to it, without '..'")
        if fields[0] in first_line:
            raise DataError(f"{list_file or '<list>'} line {number}: {fields[0]} is listed again (first on "
                            f"line {first_line[fields[0]]}); each image may appear once")
        first_line[fields[0]] = number
        entries.append(Entry(fields[0], fields[1], list_file, number))
    return entries


def read_list(path: str, *, allow_empty: bool = False) -> list[Entry]:
    """Reads a list file; a missing or empty file is an error naming it."""
    if not os.path.exists(path):
        raise DataError(f"{path}: split list not found (launch/make_splits.py --root <dataset folder> "
                        "writes the lists of a dataset in the published layout)")
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as e:  # a folder, no permission, ...
        raise DataError(f"{path}: cannot read split list: {e.strerror or e}") from None
    data = data.removeprefix(codecs.BOM_UTF8)  # some editors start UTF-8 text with one; not part of a path
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = len(_LINE_END.findall(data[:e.start].decode("utf-8"))) + 1  # valid up to the bad byte
        raise DataError(f"{path} line {line}: split list is not UTF-8 text ({e.reason})") from None
    entries = parse_list(text, list_file=path)
    if not entries and not allow_empty:
        raise DataError(f"{path}: split list is empty")
    return entries


def format_list(pairs: Iterable[Entry | tuple[str, str]]) -> str:
    """The file text of `pairs`, one `<image> <mask>` per line, newline-terminated."""
    lines = []
    for pair in pairs:
        image, mask = (pair.image, pair.mask) if isinstance(pair, Entry) else pair
        if any(c.isspace() for c in image + mask):
            raise DataError(f"path with whitespace cannot be written to a split list: {image!r} {mask!r}")
        lines.append(f"{image} {mask}\n")
    return "".join(lines)


def write_list(path: str, pairs: Iterable[Entry | tuple[str, str]]) -> None:
    _write_whole(path, format_list(pairs))


def _write_whole(path: str, text: str, *, overwrite: bool = True, flag: str = "--out") -> None:
    """Writes one list whole or not at all (`outputs.open_new`): a write that stops half way (disk
    full, Ctrl-C) leaves the earlier file, never half a list."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open_new(path, flag, overwrite=overwrite, binary=True) as f:
        f.write(text.encode("utf-8"))


def split_files(root: str, split: str, split_dir: str = "") -> dict[str, str]:
    """Paths of labeled.txt / unlabeled.txt / val.txt for a config (`split_dir` overrides root)."""
    if not (root or split_dir):
        # The dataset configs leave the root empty: without this, lists are looked up in ./splits.
        raise InputError("data.root is empty: pass --config.data.root=<the dataset folder> "
                         "(or data.split_dir, a folder of split lists)")
    split_dir = split_dir or os.path.join(root, "splits", split)
    return {"labeled": os.path.join(split_dir, "labeled.txt"),
            "unlabeled": os.path.join(split_dir, "unlabeled.txt"),
            "val": os.path.join(os.path.dirname(os.path.normpath(split_dir)), "val.txt")}


def labeled_count(num_items: int, ratio: str) -> int:
    """How many of `num_items` a split name labels: '1_8' -> round(n/8), '92' -> 92, 'all' -> n."""
    if ratio == "all":
        return num_items
    if "_" in ratio:
        num, den = ratio.rsplit("_", 1)
        try:
            fraction = int(num) / int(den)
        except ValueError:
            raise InputError(f"split name {ratio!r}: expected 'A_B' (fraction A/B), a count, or 'all'") from None
        count = int(math.floor(num_items * fraction + 0.5))
    else:
        try:
            count = int(ratio)
        except ValueError:
            raise InputError(f"split name {ratio!r}: expected 'A_B' (fraction A/B), a count, or 'all'") from None
    if not 0 < count <= num_items:
        raise InputError(f"split {ratio!r} labels {count} of {num_items} images; needs 1..{num_items}")
    return count


def make_splits(pairs: Sequence[Entry | tuple[str, str]], ratios: Sequence[str], *,
                seed: int = 0) -> dict[str, dict[str, list[tuple[str, str]]]]:
    """Deterministic labelled/unlabelled partitions of `pairs` for each split name in `ratios`.

    One seeded permutation of the sorted pairs is shared by all ratios, so smaller labelled sets
    are subsets of larger ones (1/16 ⊂ 1/8 ⊂ 1/4) and results are independent of input order.
    'all' labels everything and, as the published tas500 'all' split, keeps every image unlabelled
    too. Returns {ratio: {'labeled': [...], 'unlabeled': [...]}} with each list sorted.
    """
    items = sorted({(p.image, p.mask) if isinstance(p, Entry) else tuple(p) for p in pairs})
    if not items:
        raise DataError("cannot make splits from an empty image list")
    order = np.random.default_rng(seed).permutation(len(items))
    shuffled = [items[i] for i in order]
    out = {}
    for ratio in ratios:
        k = labeled_count(len(items), ratio)
        labeled = sorted(shuffled[:k])
        unlabeled = sorted(items) if ratio == "all" else sorted(shuffled[k:])
        out[ratio] = {"labeled": labeled, "unlabeled": unlabeled}
    return out


def split_lists(out_dir: str, splits: dict[str, dict[str, list[tuple[str, str]]]],
                val: Sequence[Entry | tuple[str, str]] | None = None) -> dict[str, Sequence]:
    """{path: pairs} of the lists `write_splits` writes: `<out_dir>/<ratio>/{labeled,unlabeled}.txt`
    and, if `val` is given, `<out_dir>/val.txt`."""
    lists = {os.path.join(out_dir, ratio, f"{part}.txt"): pairs
             for ratio, parts in splits.items() for part, pairs in parts.items()}
    if val is not None:
        lists[os.path.join(out_dir, "val.txt")] = val
    return lists


def write_splits(out_dir: str, splits: dict[str, dict[str, list[tuple[str, str]]]],
                 val: Sequence[Entry | tuple[str, str]] | None = None, *, overwrite: bool = True,
                 flag: str = "--out") -> None:
    """Writes the lists of `split_lists`, each whole (see `_write_whole`). Without `overwrite` a list
    that exists is `OutputExistsError`: of two runs writing one folder at once (other seeds), the
    second stops at the first list the other wrote, so the lists on disk are never a mix of both."""
    # All formatted first: a path that cannot be listed leaves every list as it was, not some replaced.
    texts = {path: format_list(pairs) for path, pairs in split_lists(out_dir, splits, val).items()}
    for path, text in texts.items():
        _write_whole(path, text, overwrite=overwrite, flag=flag)


def scan_layout(root: str, images_dir: str, masks_dir: str, image_ext: str,
                mask_ext: str) -> list[tuple[str, str]]:
    """All (image, mask) root-relative pairs of a raw folder, by image file name, sorted."""
    folder = os.path.join(root, images_dir)
    if not os.path.isdir(folder):
        raise DataError(f"{folder}: image folder not found")
    pairs = []
    for name in sorted(os.listdir(folder)):
        if name.endswith(image_ext):
            stem = name[: -len(image_ext)]
            pairs.append((f"{images_dir}/{name}", f"{masks_dir}/{stem}{mask_ext}"))
    if not pairs:  # read_list refuses an empty list when training starts; say so now, naming the folder
        raise DataError(f"{folder}: no *{image_ext} images to list")
    return pairs
