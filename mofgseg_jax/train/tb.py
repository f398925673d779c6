"""TensorBoard logging (tensorboardX, no TensorFlow) and colourised prediction grids.

Tags written (view with `tensorboard --logdir <workdir>`):
  train/<metric>                every `train.log_every` steps: each loss (mean over the window), lr,
                                confidence ratio, contrastive classes, grad norm, steps/s
  eval/<student|teacher>/mIoU   at every evaluation
  eval/<student|teacher>/IoU/<class name>
  eval/predictions              image | ground truth | student | teacher for a few validation images
  config                        the resolved config (text)
Only process 0 writes.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping, Sequence

import numpy as np

IGNORE_COLOUR = (255, 255, 255)  # ignore label / no prediction


def colorize(ids: np.ndarray, palette: Sequence[Sequence[int]], *,
             ignore_colour: Sequence[int] = IGNORE_COLOUR) -> np.ndarray:
    """Class ids `[H, W]` -> RGB uint8 `[H, W, 3]` with the dataset palette; ids outside it
    (ignore 255, no prediction -1) get `ignore_colour`."""
    ids = np.asarray(ids).astype(np.int64)
    table = np.asarray(palette, np.uint8).reshape(-1, 3)
    inside = (ids >= 0) & (ids < len(table))
    out = np.empty(ids.shape + (3,), np.uint8)
    out[...] = np.asarray(ignore_colour, np.uint8)
    out[inside] = table[ids[inside]]
    return out


def prediction_grid(kept: Sequence[Mapping[str, np.ndarray]], palette: Sequence[Sequence[int]], *,
                    gap: int = 2) -> np.ndarray:
    """Rows of image | ground truth | prediction 1 | prediction 2 ... as one uint8 `[H', W', 3]` image.

    kept: per row {'image' uint8 `[h, w, 3]`, 'label' `[h, w]`, 'preds' `[N, h, w]`} (from `evaluate`);
    rows of different sizes are padded with white.
    """
    rows = []
    for sample in kept:
        h, w = sample["label"].shape
        tiles = [np.asarray(sample["image"], np.uint8), colorize(sample["label"], palette)]
        tiles += [colorize(p, palette) for p in sample["preds"]]
        sep = np.full((h, gap, 3), 255, np.uint8)
        row = tiles[0]
        for t in tiles[1:]:
            row = np.concatenate([row, sep, t], axis=1)
        rows.append(row)
    width = max(r.shape[1] for r in rows)
    padded = [np.pad(r, ((0, gap), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(padded, axis=0)


def tag_name(name: str) -> str:
    """A class name usable in a TensorBoard tag ('tv/monitor' -> 'tv_monitor')."""
    return re.sub(r"[^A-Za-z0-9_.\-]+", "_", name).strip("_") or "class"


class Writer:
    """tensorboardX `SummaryWriter` on process 0; a no-op elsewhere."""

    def __init__(self, logdir: str, *, enabled: bool = True):
        self.logdir = logdir
        self._writer = None
        if enabled:
            from tensorboardX import SummaryWriter  # noqa: PLC0415 (cheap import for other processes)

            os.makedirs(logdir, exist_ok=True)
            self._writer = SummaryWriter(logdir)

    def text(self, tag: str, text: str, step: int = 0) -> None:
        if self._writer is not None:
            self._writer.add_text(tag, text, step)

    def scalars(self, step: int, values: Mapping[str, float], prefix: str = "") -> None:
        if self._writer is None:
            return
        for key, value in values.items():
            self._writer.add_scalar(f"{prefix}{key}", float(value), step)

    def evaluation(self, step: int, result: Mapping[str, Any], class_names: Sequence[str],
                   names: Sequence[str] = ("student", "teacher")) -> None:
        """mIoU and per-class IoU (tagged with class names) of each network in `result`."""
        if self._writer is None:
            return
        for name in names:
            self._writer.add_scalar(f"eval/{name}/mIoU", result[name]["miou"], step)
            for cls, iou in zip(class_names, result[name]["iou"]):
                self._writer.add_scalar(f"eval/{name}/IoU/{tag_name(cls)}", iou, step)

    def image(self, tag: str, image: np.ndarray, step: int) -> None:
        if self._writer is not None:
            self._writer.add_image(tag, image, step, dataformats="HWC")

    def flush(self) -> None:
        if self._writer is not None:
            self._writer.flush()

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
