"""The comparison figure: mIoU bars per variant (mean +- std over seeds) and a prediction grid
(image | ground truth | supervised | semi-supervised) for a few validation images, in the dataset's
palette. matplotlib with the Agg backend (no display needed).
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from mofgseg_jax.experiments.compare import NETWORKS, VARIANTS

TICKS = {"sup": "supervised\nonly", "semi": "full method\n(semi)", "no_contrast": "semi,\nno contrastive",
         "no_boundary": "semi,\nno boundary"}


def predict_val_images(workdir: str, *, num_images: int, network: str = "teacher",
                       which: str = "latest") -> dict[str, np.ndarray]:
    """Predictions of a finished run on its first `num_images` validation images.

    Returns {'image' uint8 `[N,h,w,3]`, 'label' uint8 `[N,h,w]`, 'pred' int32 `[N,h,w]`} (h, w: the
    images' own size; all demo images share one). Uses the run's stored config (data root, eval mode).
    """
    import jax  # noqa: PLC0415

    from mofgseg_jax.data.pipeline import make_val_batches  # noqa: PLC0415
    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train import evaluate as ev  # noqa: PLC0415
    from mofgseg_jax.train import inference  # noqa: PLC0415

    step_dir = inference.find_checkpoint(workdir=workdir, which=which)
    variables, stored, _ = inference.load_variables(step_dir)
    config = inference.run_config(None, stored, workdir)
    model = build_model(config.model)
    net = variables[network]
    settings = ev.prediction_settings(config, int(config.model.num_classes))

    @jax.jit
    def segment(images_u8, height, width):
        return ev.predict(ev.logits_fn_for(model, net), images_u8, height, width, **settings)

    images, labels, preds = [], [], []
    for batch in make_val_batches(config.data):
        pred = np.asarray(segment(batch["image"], batch["height"], batch["width"]))
        for i in np.flatnonzero(batch["valid"]):
            h, w = int(batch["height"][i]), int(batch["width"][i])
            images.append(batch["image"][i, :h, :w])
            labels.append(batch["label"][i, :h, :w])
            preds.append(pred[i, :h, :w])
            if len(images) == num_images:
                return {"image": np.stack(images), "label": np.stack(labels), "pred": np.stack(preds)}
    if not images:
        raise ValueError(f"{workdir}: the validation split is empty")
    return {"image": np.stack(images), "label": np.stack(labels), "pred": np.stack(preds)}


def draw(path: str, summary: Mapping[str, Any], *, grid: Mapping[str, Any] | None = None,
         palette: Sequence[Sequence[int]] = (), class_names: Sequence[str] = (), title: str = "",
         dpi: int = 100) -> str:
    """Writes the figure PNG to `path`.

    summary: `compare.summarize` output. grid (optional): {'image' `[N,h,w,3]`, 'label' `[N,h,w]`,
    'columns': [(title, pred `[N,h,w]`), ...]}; drawn with `palette`, legend from `class_names`.
    """
    import matplotlib  # noqa: PLC0415

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    from matplotlib.patches import Patch  # noqa: PLC0415

    from mofgseg_jax.train.tb import colorize  # noqa: PLC0415

    variants = [v for v in VARIANTS if v in summary]
    rows = 0 if grid is None else len(grid["image"])
    cols = 0 if grid is None else 2 + len(grid["columns"])
    fig_h = max(3.2, 1.25 * rows + 0.8)
    fig = plt.figure(figsize=(4.2 + 1.3 * cols, fig_h), dpi=dpi)
    outer = fig.add_gridspec(1, 2 if grid else 1, width_ratios=[4.2, 1.3 * cols] if grid else [1], wspace=0.12)

    ax = fig.add_subplot(outer[0])
    x = np.arange(len(variants))
    width = 0.38
    colours = {"student": "#7aa6d8", "teacher": "#1f4e8c"}
    for k, net in enumerate(NETWORKS):
        means = [summary[v][net]["mean"] for v in variants]
        stds = [summary[v][net]["std"] for v in variants]
        bars = ax.bar(x + (k - 0.5) * width, means, width, yerr=stds, capsize=3, color=colours[net], label=net)
        for b, m in zip(bars, means):
            ax.text(b.get_x() + b.get_width() / 2, m / 2, f"{m:.1f}", ha="center", va="center", fontsize=7,
                    color="white", rotation=90)
    ax.set_xticks(x, [TICKS[v] for v in variants], fontsize=7)
    ax.set_ylabel("mIoU (%)")
    seeds = max((len(summary[v]["seeds"]) for v in variants), default=0)
    ax.set_title(f"{title}\nmean ± std over {seeds} seed(s)" if title else f"mean ± std over {seeds} seed(s)",
                 fontsize=9)
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(axis="y", alpha=0.3)

    if grid:
        inner = outer[1].subgridspec(rows, cols, wspace=0.04, hspace=0.04)
        headers = ["image", "ground truth"] + [c[0] for c in grid["columns"]]
        for r in range(rows):
            tiles = [grid["image"][r], colorize(grid["label"][r], palette)]
            tiles += [colorize(pred[r], palette) for _, pred in grid["columns"]]
            for c, tile in enumerate(tiles):
                a = fig.add_subplot(inner[r, c])
                a.imshow(tile, interpolation="nearest")
                a.set_xticks([])
                a.set_yticks([])
                if r == 0:
                    a.set_title(headers[c], fontsize=8)
        if class_names:
            handles = [Patch(color=np.asarray(p) / 255.0, label=n) for p, n in zip(palette, class_names)]
            fig.legend(handles=handles, loc="lower center", ncol=min(len(handles), 8), fontsize=7,
                       frameon=False, bbox_to_anchor=(0.62, -0.01))
    fig.savefig(path, bbox_inches="tight", dpi=dpi)
    plt.close(fig)
    return path
