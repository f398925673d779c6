"""Direct folder source: reads the files a split list names, no build step.

A source is a random-access sequence of raw records (encoded bytes + paths); decoding and
validation happen in `decode.py`, shared with the TFDS source.
"""

from __future__ import annotations

import logging
import os
from typing import Any, Sequence

from mofgseg_jax.data.errors import DataError
from mofgseg_jax.data.splits import Entry

log = logging.getLogger("mofgseg.data")  # see data/pipeline.py


def edge_path(edge_dir: str, image_path: str) -> str:
    """Precomputed edge map of an image: `<edge_dir>/<image file stem>.png`."""
    return os.path.join(edge_dir, os.path.splitext(os.path.basename(image_path))[0] + ".png")


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


class FolderSource(Sequence[dict[str, Any]]):
    """Raw records `{'image', 'mask', 'edge': bytes | None, 'image_path', 'mask_path', 'edge_path',
    'where'}` of `entries`, read from `root`.

    Missing files are found at construction (one `os.path.exists` per file): an error naming the
    file and list line, or with `skip_invalid` a warning and the entry dropped (`self.skipped`).
    """

    def __init__(self, root: str, entries: Sequence[Entry], *, with_mask: bool = True,
                 edge_dir: str = "", skip_invalid: bool = False):
        self.root = root
        self.with_mask = with_mask
        self.edge_dir = edge_dir
        self.skipped: list[str] = []
        kept = []
        for entry in entries:
            problem = self._missing(entry)
            if problem is None:
                kept.append(entry)
            elif skip_invalid:
                self.skipped.append(problem)
                log.warning("skipping: %s", problem)
            else:
                raise DataError(problem)
        self.entries = kept

    def _missing(self, entry: Entry) -> str | None:
        paths = [os.path.join(self.root, entry.image)]
        if self.with_mask:
            paths.append(os.path.join(self.root, entry.mask))
        if self.edge_dir:
            paths.append(edge_path(self.edge_dir, entry.image))
        for path in paths:
            if not os.path.isfile(path):
                return f"{path} ({entry.where}): file not found"
        return None

    def __len__(self) -> int:
        return len(self.entries)

    def describe(self, index: int) -> str:
        """'<image path> (<list file> line <n>)' for messages."""
        entry = self.entries[index]
        return f"{os.path.join(self.root, entry.image)} ({entry.where})"

    def __getitem__(self, index: int) -> dict[str, Any]:
        entry = self.entries[index]
        image_path = os.path.join(self.root, entry.image)
        mask_path = os.path.join(self.root, entry.mask)
        epath = edge_path(self.edge_dir, entry.image) if self.edge_dir else ""
        try:
            return {"image": _read(image_path), "mask": _read(mask_path) if self.with_mask else None,
                    "edge": _read(epath) if epath else None, "image_path": image_path,
                    "mask_path": mask_path, "edge_path": epath, "where": entry.where}
        except OSError as e:  # deleted/unreadable after construction
            raise DataError(f"{e.filename} ({entry.where}): cannot read: {e.strerror}") from None
