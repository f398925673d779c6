"""Evaluation: fixed-shape segmentation of padded validation batches, confusion matrices, mIoU.

Validation batches arrive padded to one canvas `[B, Hp, Wp]` (DESIGN.md §4;
`data.pipeline.make_val_batches`), so every function here compiles once: `data.eval_pad_size`, an int
(a square) or (height, width). An image of exactly the canvas size is not padded. Three modes, as the published code:
  - `original`: the whole (padded) image in one forward pass. MiT's attention is global, so padding
    changes the logits inside the image too: only an image that fills the canvas gets exactly the
    published `model(img)`; set the canvas to the image size when a dataset has one;
  - `center_crop`: the central `crop x crop` window of each image;
  - `sliding_window`: `crop x crop` windows every `stride = int(crop * window_stride_ratio)` pixels
    (2/3 of the window, as published), softmax probabilities summed where windows overlap (the argmax
    of the sum is the argmax of the average), `num_classes` channels (the published code hard-codes 19).
Images are normalised with `data.mean` / `data.std` (the caller passes them; ImageNet's by default).
Pixels outside an image (padding) are set to 0 after normalisation (the mean colour) and never scored.
The predictions of a mode are written on the padded canvas: `int32[B, Hp, Wp]`, `NO_PREDICTION`
where the mode predicts nothing (padding, outside the centre crop).

Scores: a confusion matrix `[K, K]` (rows = ground truth, columns = prediction) per batch, summed over
devices with `lax.psum` inside `shard_map` (which spans every host of a multi-host mesh), accumulated
on the host in int64; IoU_k = I_k / (U_k + 1e-10) * 100 and mIoU = mean over all K classes.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Iterable, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mofgseg_jax.augment.photometric import IMAGENET_MEAN, IMAGENET_STD, mean_std, normalize
from mofgseg_jax.errors import InputError

MODES = ("original", "center_crop", "sliding_window")
NO_PREDICTION = -1
IOU_EPS = 1e-10  # as the published `intersectionAndUnion` mIoU

# logits_fn(images `[B, h, w, 3]` normalised float32) -> logits `[B, h, w, K]`
LogitsFn = Callable[[jax.Array], jax.Array]


def prepare_images(images_u8: jax.Array, height: jax.Array, width: jax.Array, *,
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> jax.Array:
    """uint8 `[B, Hp, Wp, 3]` -> float32 (x / 255 - mean) / std, 0 (the mean colour) outside each
    image's h x w. mean, std: per channel, on the [0, 1] scale (`data.mean`, `data.std`)."""
    x = normalize(images_u8.astype(jnp.float32) / 255.0, mean, std)
    return x * inside_mask(x.shape[1], x.shape[2], height, width)[..., None]


def inside_mask(hp: int, wp: int, height: jax.Array, width: jax.Array) -> jax.Array:
    """bool `[B, hp, wp]`: True where row < height[b] and col < width[b]."""
    rows = jnp.arange(hp)[None, :, None] < height[:, None, None]
    cols = jnp.arange(wp)[None, None, :] < width[:, None, None]
    return rows & cols


def window_starts(size: int, crop: int, stride: int) -> list[int]:
    """Window origins along one axis: 0, stride, 2*stride, ... < size (the published loop)."""
    return list(range(0, max(size, 1), stride))


def window_stride(crop_size: int, stride_ratio: float) -> int:
    """Pixels between sliding windows: int(crop_size * stride_ratio).

    Raises an `InputError` naming `eval.window_stride_ratio` unless 0 < ratio <= 1 and the stride is
    at least one pixel: clamping a ratio near 0 to stride 1 would mean a window at every pixel of the
    canvas (a million at 1024 x 1024), a run that never ends."""
    if not (isinstance(stride_ratio, (int, float)) and not isinstance(stride_ratio, bool)
            and 0 < stride_ratio <= 1):
        raise InputError(f"eval.window_stride_ratio={stride_ratio!r}: expected a fraction of the window "
                         "in (0, 1], e.g. 2/3 (published)")
    stride = int(crop_size * stride_ratio)
    if stride < 1:
        raise InputError(f"eval.window_stride_ratio={stride_ratio!r}: a stride of {crop_size} * "
                         f"{stride_ratio} < 1 pixel; expected at least 1 / data.crop_size")
    return stride


def window_origins(hp: int, wp: int, crop_size: int, stride_ratio: float) -> list[tuple[int, int]]:
    """(row, col) origins of the sliding windows over an `hp` x `wp` canvas, row by row."""
    stride = window_stride(crop_size, stride_ratio)
    cols = window_starts(wp, crop_size, stride)
    return [(r, c) for r in window_starts(hp, crop_size, stride) for c in cols]


def predict_original(logits_fn: LogitsFn, images: jax.Array, height: jax.Array, width: jax.Array) -> jax.Array:
    """Whole-canvas prediction. images: normalised `[B, Hp, Wp, 3]` -> int32 `[B, Hp, Wp]`.

    The network sees the padding too; an image that fills the canvas is predicted as on its own."""
    pred = jnp.argmax(logits_fn(images), axis=-1).astype(jnp.int32)
    return jnp.where(inside_mask(images.shape[1], images.shape[2], height, width), pred, NO_PREDICTION)


def _pad_canvas(images: jax.Array, hc: int, wc: int) -> jax.Array:
    return jnp.pad(images, ((0, 0), (0, hc - images.shape[1]), (0, wc - images.shape[2]), (0, 0)))


def predict_center_crop(logits_fn: LogitsFn, images: jax.Array, height: jax.Array, width: jax.Array, *,
                        crop_size: int) -> jax.Array:
    """Prediction of each image's central `crop x crop` window (origin max((h - crop) // 2, 0)),
    written back on the canvas. images: `[B, Hp, Wp, 3]` -> int32 `[B, Hp, Wp]`."""
    b, hp, wp, _ = images.shape
    hc, wc = max(hp, crop_size), max(wp, crop_size)
    canvas = _pad_canvas(images, hc, wc)
    top = jnp.maximum((height - crop_size) // 2, 0)
    left = jnp.maximum((width - crop_size) // 2, 0)

    def cut(img, t, l):
        return lax.dynamic_slice(img, (t, l, 0), (crop_size, crop_size, img.shape[-1]))

    crops = jax.vmap(cut)(canvas, top, left)
    pred = jnp.argmax(logits_fn(crops), axis=-1).astype(jnp.int32)
    # Valid inside the crop only where the crop lies inside the image.
    pred = jnp.where(inside_mask(crop_size, crop_size, height - top, width - left), pred, NO_PREDICTION)

    def paste(p, t, l):
        out = jnp.full((hc, wc), NO_PREDICTION, jnp.int32)
        return lax.dynamic_update_slice(out, p, (t, l))

    return jax.vmap(paste)(pred, top, left)[:, :hp, :wp]


def predict_sliding_window(logits_fn: LogitsFn, images: jax.Array, height: jax.Array, width: jax.Array, *,
                           crop_size: int, num_classes: int, stride_ratio: float = 2 / 3) -> jax.Array:
    """Sliding-window prediction with summed softmax. images: `[B, Hp, Wp, 3]` -> int32 `[B, Hp, Wp]`.

    Window origins are fixed by the canvas (`window_starts(Hp)`), so shapes never change; a window that
    starts outside every image of the batch is skipped (`lax.cond`), and each window adds its
    probabilities only inside its own image, so the result equals the per-image published loop
    (windows 0, s, 2s, ... < h, truncated at the image border) except that a truncated window sees
    zero padding instead of a smaller input.
    """
    b, hp, wp, _ = images.shape
    origins = window_origins(hp, wp, crop_size, stride_ratio)
    hc, wc = origins[-1][0] + crop_size, origins[-1][1] + crop_size
    canvas = _pad_canvas(images, hc, wc)
    inside = inside_mask(hc, wc, height, width)
    origins = jnp.asarray(origins, jnp.int32)

    def add_window(acc, origin):
        r, c = origin[0], origin[1]

        def run(acc):
            window = lax.dynamic_slice(canvas, (0, r, c, 0), (b, crop_size, crop_size, canvas.shape[-1]))
            probs = jax.nn.softmax(logits_fn(window).astype(jnp.float32), axis=-1)
            keep = lax.dynamic_slice(inside, (0, r, c), (b, crop_size, crop_size))
            old = lax.dynamic_slice(acc, (0, r, c, 0), (b, crop_size, crop_size, num_classes))
            return lax.dynamic_update_slice(acc, old + probs * keep[..., None], (0, r, c, 0))

        any_inside = jnp.any((r < height) & (c < width))
        return lax.cond(any_inside, run, lambda a: a, acc), None

    acc = jnp.zeros((b, hc, wc, num_classes), jnp.float32)
    acc, _ = lax.scan(add_window, acc, origins)
    pred = jnp.argmax(acc, axis=-1).astype(jnp.int32)
    return jnp.where(inside, pred, NO_PREDICTION)[:, :hp, :wp]


def predict(logits_fn: LogitsFn, images_u8: jax.Array, height: jax.Array, width: jax.Array, *, mode: str,
            crop_size: int, num_classes: int, stride_ratio: float = 2 / 3,
            mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD) -> jax.Array:
    """Predicted class ids on the canvas for `mode`. images_u8 `[B, Hp, Wp, 3]` -> int32 `[B, Hp, Wp]`.

    mean, std: the normalisation (`prepare_images`)."""
    images = prepare_images(images_u8, height, width, mean=mean, std=std)
    if mode == "original":
        return predict_original(logits_fn, images, height, width)
    if mode == "center_crop":
        return predict_center_crop(logits_fn, images, height, width, crop_size=crop_size)
    if mode == "sliding_window":
        return predict_sliding_window(logits_fn, images, height, width, crop_size=crop_size,
                                      num_classes=num_classes, stride_ratio=stride_ratio)
    raise InputError(f"eval.mode={mode!r}: choose from {', '.join(MODES)}")


def confusion_matrix(pred: jax.Array, label: jax.Array, valid: jax.Array, *, num_classes: int,
                     ignore_index: int = 255) -> jax.Array:
    """int32 `[K, K]` counts of (ground truth, prediction) over scored pixels.

    pred, label: int `[B, H, W]`; valid: bool `[B]` (False = a padding sample). A pixel is scored when
    its sample is valid, its label is not `ignore_index` (nor out of range) and it has a prediction.
    """
    label = label.astype(jnp.int32)
    scored = (valid[:, None, None] & (label != ignore_index) & (label >= 0) & (label < num_classes)
              & (pred >= 0) & (pred < num_classes))
    index = jnp.where(scored, label * num_classes + pred, 0)
    counts = jnp.bincount(index.reshape(-1), weights=scored.reshape(-1).astype(jnp.int32),
                          length=num_classes * num_classes)
    return counts.astype(jnp.int32).reshape(num_classes, num_classes)


def iou_from_confusion(confusion: np.ndarray) -> tuple[float, np.ndarray]:
    """(mIoU, per-class IoU `[K]`), both in percent, from a `[K, K]` confusion matrix."""
    confusion = np.asarray(confusion, np.float64)
    intersection = np.diag(confusion)
    union = confusion.sum(0) + confusion.sum(1) - intersection
    iou = intersection / (union + IOU_EPS) * 100.0
    return float(iou.mean()), iou


def logits_fn_for(model: Any, variables: Any) -> LogitsFn:
    """Inference-mode logits of a MOFGSeg module with `variables` = {'params', 'batch_stats'}."""
    return lambda images: model.apply(variables, images, train=False)["logits"]


def prediction_settings(config: Any, num_classes: int, mode: str | None = None) -> dict[str, Any]:
    """The keyword arguments of `predict` and `make_eval_step` that a run's config sets: `eval.mode`
    (unless `mode` is given), the crop, the window stride ratio, and the normalisation (ImageNet's for
    a run stored before `data.mean` / `data.std`)."""
    mean, std = mean_std(config.data)
    return dict(mode=mode or str(config.eval.mode), crop_size=int(config.data.crop_size), num_classes=num_classes,
                stride_ratio=float(config.eval.window_stride_ratio), mean=mean, std=std)


def make_eval_step(model: Any, mesh: Mesh, *, mode: str, crop_size: int, num_classes: int,
                   stride_ratio: float = 2 / 3, ignore_index: int = 255, axis_name: str = "data",
                   mean: Sequence[float] = IMAGENET_MEAN, std: Sequence[float] = IMAGENET_STD):
    """Jitted `(variables_list, batch) -> (confusion int32[N, K, K], pred int32[N, B, Hp, Wp])`.

    `variables_list`: a tuple of N variable sets (e.g. student and teacher), replicated; `batch`: a
    global validation batch sharded on axis 0 over `mesh`. Confusions are `psum`-ed over `axis_name`
    (all devices of all hosts); predictions stay sharded over the batch. `mean`, `std`: the
    normalisation (`prepare_images`).
    """
    if mode not in MODES:
        raise InputError(f"eval.mode={mode!r}: choose from {', '.join(MODES)}")

    def body(variables_list, batch):
        confusions, preds = [], []
        for variables in variables_list:
            pred = predict(logits_fn_for(model, variables), batch["image"], batch["height"], batch["width"],
                           mode=mode, crop_size=crop_size, num_classes=num_classes, stride_ratio=stride_ratio,
                           mean=mean, std=std)
            conf = confusion_matrix(pred, batch["label"], batch["valid"], num_classes=num_classes,
                                    ignore_index=ignore_index)
            confusions.append(lax.psum(conf, axis_name))
            preds.append(pred)
        return jnp.stack(confusions), jnp.stack(preds)

    mapped = jax.shard_map(body, mesh=mesh, in_specs=(P(), P(axis_name)), out_specs=(P(), P(None, axis_name)),
                           check_vma=False)
    return jax.jit(mapped)


# ----------------------------------------------------------------------------------------------
# Host side: feeding batches to the mesh and accumulating scores.

EVAL_KEYS = ("image", "label", "height", "width", "valid")


def pad_batch(batch: dict[str, np.ndarray], size: int) -> dict[str, np.ndarray]:
    """Pads a host validation batch to `size` samples with invalid (valid=False) samples."""
    n = batch["image"].shape[0]
    if n == size:
        return batch
    if n > size:
        raise ValueError(f"validation batch of {n} samples is larger than the evaluation batch {size}")
    out = {}
    for key in EVAL_KEYS:
        value = np.asarray(batch[key])
        fill = 255 if key == "label" else 0
        pad = np.full((size - n,) + value.shape[1:], fill, value.dtype)
        out[key] = np.concatenate([value, pad])
    out["valid"] = out["valid"].astype(bool)
    out["valid"][n:] = False
    return out


def local_batch_size(batch_size: int, num_local_devices: int) -> int:
    """The per-process batch: `batch_size` rounded up to a multiple of the local device count."""
    return max(1, math.ceil(batch_size / num_local_devices)) * num_local_devices


def evaluate(eval_step: Callable, variables_list: Sequence[Any], batches: Iterable[dict[str, np.ndarray]], *,
             mesh: Mesh, num_classes: int, names: Sequence[str] = ("student", "teacher"),
             num_keep: int = 0, progress: bool = False, axis_name: str = "data") -> dict[str, Any]:
    """Runs `eval_step` over this process's validation batches and returns the scores.

    `batches`: this process's share (`make_val_batches(..., process_index, process_count)`); every
    process must yield the same number of batches (the data pipeline pads with invalid samples), as
    each step is a collective over the whole mesh.
    Returns `{name: {'miou': float, 'iou': [K] list, 'confusion': int64 [K, K]}, 'kept': [...]}` where
    'kept' holds up to `num_keep` dicts {'image' `[h, w, 3]`, 'label' `[h, w]`, 'preds' `[N, h, w]`}
    of this process's first valid samples, padding cropped away (for TensorBoard).
    """
    ndev = len(mesh.local_devices)
    sharding = NamedSharding(mesh, P(axis_name))
    total = np.zeros((len(variables_list), num_classes, num_classes), np.int64)
    kept: list[dict[str, Any]] = []
    iterator: Iterable = batches
    if progress and jax.process_index() == 0:
        from tqdm.auto import tqdm  # noqa: PLC0415 (only for interactive runs)
        iterator = tqdm(batches, desc="eval", leave=False, dynamic_ncols=True,
                        total=len(batches) if hasattr(batches, "__len__") else None)
    count = 0
    for batch in iterator:
        size = local_batch_size(int(np.asarray(batch["image"]).shape[0]), ndev)
        host = pad_batch(batch, size)
        global_batch = {k: jax.make_array_from_process_local_data(sharding, np.asarray(host[k])) for k in EVAL_KEYS}
        confusion, preds = eval_step(tuple(variables_list), global_batch)
        total += np.asarray(jax.device_get(confusion), np.int64)
        count += 1
        if len(kept) < num_keep and host["valid"].any():
            local_preds = _local_rows(preds, axis=1)
            for i in np.flatnonzero(host["valid"])[: num_keep - len(kept)]:
                h, w = int(host["height"][i]), int(host["width"][i])
                kept.append({"image": np.asarray(host["image"][i])[:h, :w], "label": np.asarray(host["label"][i])[:h, :w],
                             "preds": local_preds[:, i, :h, :w]})
    if count == 0:
        raise InputError("evaluate: the validation set is empty")
    result: dict[str, Any] = {"kept": kept}
    for name, conf in zip(names, total):
        miou, iou = iou_from_confusion(conf)
        result[name] = {"miou": miou, "iou": iou.tolist(), "confusion": conf}
    return result


def _local_rows(x: jax.Array, axis: int) -> np.ndarray:
    """This process's slice of a global array sharded along `axis`, in order."""
    shards = sorted(x.addressable_shards, key=lambda s: s.index[axis].start or 0)
    seen, parts = set(), []
    for s in shards:
        start = s.index[axis].start or 0
        if start not in seen:  # replicas along other mesh axes hold the same rows
            seen.add(start)
            parts.append(np.asarray(s.data))
    return np.concatenate(parts, axis=axis)
