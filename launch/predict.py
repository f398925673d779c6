"""Segments images with a trained run: python launch/predict.py --workdir runs/demo --input demo_data/gt_jpg/val --output runs/demo/predict

  --input PATH[,PATH...]       image files and/or folders (jpg, jpeg, png, bmp, tif, tiff, webp)
  --output DIR                 writes DIR/color/<name>.png (dataset palette) and DIR/ids/<name>.png
                               (class ids, uint8), <name> = the input's file name without extension;
                               two inputs with one <name> are refused, and so is a file that exists
  --overwrite                  replace prediction files that exist in --output
  --workdir DIR [--which best|latest|STEP] or --checkpoint DIR   the trained weights
  --network student|teacher    which of the two networks predicts (default: teacher, the EMA)
  --config configs/<name>.py   optional (default: the run's stored config); eval.mode decides
                               whole image / centre crop / sliding window
Images are padded to a multiple of --pad_multiple so similar sizes share one compilation. In
'original' mode the padding moves the logits a little (MiT's attention is global; README,
Evaluation): --pad_multiple=1 predicts each image unpadded, one compilation per image size.
"""

import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from absl import flags  # noqa: E402
from ml_collections import config_flags  # noqa: E402

from mofgseg_jax import cli, outputs  # noqa: E402
from mofgseg_jax.errors import InputError, InputNotFoundError  # noqa: E402

IMAGE_EXTS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")

config_flags.DEFINE_config_file("config", None, "config file (default: the run's stored config)", lock_config=True)
flags.DEFINE_string("workdir", "", "training run directory")
flags.DEFINE_string("checkpoint", "", "a checkpoint step directory (instead of --workdir)")
flags.DEFINE_string("which", "best", "with --workdir: 'best', 'latest' or a step number")
flags.DEFINE_string("input", None, "comma-separated image files and/or folders")
flags.DEFINE_string("output", None, "output folder")
flags.DEFINE_bool("overwrite", False, "replace prediction files that exist in --output (default: refuse)")
flags.DEFINE_enum("network", "teacher", ["student", "teacher"], "which network predicts")
flags.DEFINE_enum("mode", None, ["original", "center_crop", "sliding_window"], "override eval.mode")
flags.DEFINE_integer("pad_multiple", 32, "pad each image up to a multiple of this (fewer compilations; 1 = unpadded, exact)")
flags.mark_flags_as_required(["input", "output"])


def list_images(spec: str) -> list[str]:
    """Image paths named by a comma-separated list of files and folders (folders: sorted, not
    recursive); a file named twice (also through its folder) is listed once."""
    paths = []
    for item in filter(None, (s.strip() for s in spec.split(","))):
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


def check_images(images: list[str]) -> None:
    """Decodes every image once (the pixels are dropped), so that a truncated, non-image or 16-bit
    file ends the run before the model loads and anything is written: found in the write loop, it
    left the earlier images' outputs behind, which the rerun then refused as existing."""
    from mofgseg_jax.data.decode import read_image  # noqa: PLC0415

    for path in images:
        read_image(path, where="--input")


def main(argv):
    del argv  # parse_flags refuses left-over arguments
    cli.setup_logging()
    f = flags.FLAGS
    # Every output path is known, and every input decodes, before the model loads: two inputs with
    # one output name, files that exist, a damaged image and a folder that cannot be written end
    # the run before anything is written.
    images = list_images(f.input)
    names = output_names(images)
    kinds = ("ids", "color")
    outputs.refuse_existing([os.path.join(f.output, k, n) for n in names for k in kinds], "--output",
                            overwrite=f.overwrite)
    check_images(images)

    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from PIL import Image  # noqa: PLC0415

    from mofgseg_jax.augment.photometric import mean_std  # noqa: PLC0415
    from mofgseg_jax.data.decode import read_image  # noqa: PLC0415
    from mofgseg_jax.data.specs import load_spec  # noqa: PLC0415
    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train import evaluate as ev  # noqa: PLC0415
    from mofgseg_jax.train import inference, tb  # noqa: PLC0415
    from mofgseg_jax.train.compile_cache import enable_for_config  # noqa: PLC0415

    step_dir = inference.find_checkpoint(workdir=f.workdir, checkpoint=f.checkpoint, which=f.which)
    variables, stored, step = inference.load_variables(step_dir)
    config = inference.run_config(f.config, stored, f.workdir)
    inference.check_model(config, variables, step_dir, cli.config_source(), stored)
    # The output folders are created only now: a run refused for its checkpoint or config leaves none.
    outputs.check_writable(f.output, "--output")
    for kind in kinds:
        outputs.check_writable(os.path.join(f.output, kind), "--output")
    enable_for_config(config)  # the eval step that training compiled, if it left it in the cache
    mode = f.mode or str(config.eval.mode)
    spec = load_spec(config.data.name, num_classes=int(config.model.num_classes),
                     class_names=tuple(config.data.class_names or ()))
    model = build_model(config.model)
    net = variables[f.network]
    mean, std = mean_std(config.data)  # ImageNet's for a run stored before these keys

    @jax.jit
    def segment(image_u8, height, width):
        return ev.predict(ev.logits_fn_for(model, net), image_u8, height, width, mode=mode,
                          crop_size=int(config.data.crop_size), num_classes=spec.num_classes,
                          stride_ratio=float(config.eval.window_stride_ratio), mean=mean, std=std)

    from tqdm.auto import tqdm  # noqa: PLC0415

    for path, name in tqdm(list(zip(images, names)), desc="predict", dynamic_ncols=True):
        image = read_image(path, where="--input")  # the training pipeline's decoding (checked above)
        h, w = image.shape[:2]
        m = max(1, int(f.pad_multiple))
        hp, wp = -(-h // m) * m, -(-w // m) * m
        canvas = np.zeros((1, hp, wp, 3), np.uint8)
        canvas[0, :h, :w] = image
        pred = np.asarray(segment(canvas, np.array([h], np.int32), np.array([w], np.int32)))[0, :h, :w]
        ids = np.where(pred < 0, spec.ignore_index, pred).astype(np.uint8)
        pictures = {"ids": Image.fromarray(ids, "L"), "color": Image.fromarray(tb.colorize(pred, spec.palette))}
        for kind in kinds:
            with outputs.open_new(os.path.join(f.output, kind, name), "--output", overwrite=f.overwrite,
                                  binary=True) as fh:
                pictures[kind].save(fh, format="PNG")
    print(f"{len(images)} image(s) from step {step} ({f.network}, {mode}) -> {os.path.abspath(f.output)}/"
          "{color,ids}/")


if __name__ == "__main__":
    cli.run(main)
