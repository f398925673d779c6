"""Segments images with a trained run: python launch/predict.py --workdir runs/demo --input demo_data/gt_jpg/val --output runs/demo/predict

  --input PATH[,PATH...]       image files and/or folders (jpg, jpeg, png, bmp, tif, tiff, webp)
  --output DIR                 writes DIR/color/<name>.png (dataset palette) and DIR/ids/<name>.png
                               (class ids, uint8), <name> = the input's file name without extension;
                               two inputs with one <name> are refused, and so is a file that exists
  --overwrite                  replace prediction files that exist in --output (never an input image)
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
from mofgseg_jax.train.predict_files import (OUTPUT_KINDS, check_images, list_images, output_names,  # noqa: E402
                                             output_paths, padded_canvas, prediction_pictures)

config_flags.DEFINE_config_file("config", None, "config file (default: the run's stored config)", lock_config=True)
flags.DEFINE_string("workdir", "", "training run directory")
flags.DEFINE_string("checkpoint", "", "a checkpoint step directory (instead of --workdir)")
flags.DEFINE_string("which", "best", "with --workdir: 'best', 'latest' or a step number")
flags.DEFINE_string("input", None, "comma-separated image files and/or folders")
flags.DEFINE_string("output", None, "output folder")
flags.DEFINE_bool("overwrite", False, "replace prediction files that exist in --output (default: refuse)")
flags.DEFINE_enum("network", "teacher", ["student", "teacher"], "which network predicts")
flags.DEFINE_enum("mode", None, ["original", "center_crop", "sliding_window"], "override eval.mode")
flags.DEFINE_integer("pad_multiple", 32, "pad each image up to a multiple of this (fewer compilations; 1 = unpadded, exact)",
                     lower_bound=1)
flags.mark_flags_as_required(["input", "output"])


def main(argv):
    del argv  # parse_flags refuses left-over arguments
    cli.setup_logging()
    f = flags.FLAGS
    # Every output path is known, and every input decodes, before the model loads: two inputs with
    # one output name, files that exist, a damaged image and a folder that cannot be written end
    # the run before anything is written.
    images = list_images(f.input)
    names = output_names(images)
    outputs.refuse_existing(output_paths(f.output, images, names), "--output", overwrite=f.overwrite)
    check_images(images)

    import jax  # noqa: PLC0415
    import numpy as np  # noqa: PLC0415
    from mofgseg_jax.data.decode import read_image  # noqa: PLC0415
    from mofgseg_jax.data.specs import load_spec  # noqa: PLC0415
    from mofgseg_jax.models import build_model  # noqa: PLC0415
    from mofgseg_jax.train import evaluate as ev  # noqa: PLC0415
    from mofgseg_jax.train import inference  # noqa: PLC0415
    from mofgseg_jax.train.compile_cache import enable_for_config  # noqa: PLC0415

    step_dir = inference.find_checkpoint(workdir=f.workdir, checkpoint=f.checkpoint, which=f.which)
    variables, stored, step = inference.load_variables(step_dir)
    config = inference.run_config(f.config, stored, f.workdir)
    inference.check_model(config, variables, step_dir, cli.config_source(), stored)
    spec = load_spec(config.data.name, num_classes=int(config.model.num_classes),
                     class_names=tuple(config.data.class_names or ()))
    # The output folders are created only now: a run refused for its checkpoint or config leaves none.
    outputs.check_writable(f.output, "--output")
    for kind in OUTPUT_KINDS:
        outputs.check_writable(os.path.join(f.output, kind), "--output")
    enable_for_config(config)  # the eval step that training compiled, if it left it in the cache
    mode = f.mode or str(config.eval.mode)
    model = build_model(config.model)
    net = variables[f.network]
    settings = ev.prediction_settings(config, spec.num_classes, mode)

    @jax.jit
    def segment(image_u8, height, width):
        return ev.predict(ev.logits_fn_for(model, net), image_u8, height, width, **settings)

    from tqdm.auto import tqdm  # noqa: PLC0415

    for path, name in tqdm(list(zip(images, names)), desc="predict", dynamic_ncols=True):
        image = read_image(path, where="--input")  # the training pipeline's decoding (checked above)
        h, w = image.shape[:2]
        canvas = padded_canvas(image, f.pad_multiple)
        pred = np.asarray(segment(canvas, np.array([h], np.int32), np.array([w], np.int32)))[0, :h, :w]
        pictures = prediction_pictures(pred, ignore_index=spec.ignore_index, palette=spec.palette)
        for kind in OUTPUT_KINDS:
            with outputs.open_new(os.path.join(f.output, kind, name), "--output", overwrite=f.overwrite,
                                  binary=True) as fh:
                pictures[kind].save(fh, format="PNG")
    print(f"{len(images)} image(s) from step {step} ({f.network}, {mode}) -> {os.path.abspath(f.output)}/"
          "{color,ids}/")


if __name__ == "__main__":
    cli.run(main)
