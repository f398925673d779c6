"""Configs: published settings (DESIGN.md §5), variants, and runnable docstrings."""

import importlib
import os

import pytest

from configs.common import VARIANTS
from mofgseg_jax.data.specs import load_spec
from tests.config_helpers import NAMES, load_config, parse_config_flags

# DESIGN.md §5: num classes / crop / epochs / per-GPU batch (x 4 GPUs) / lr / lr_multi.
PUBLISHED = {
    "uavseg": (14, 513, 240, 2, 0.005, 1.0),
    "tas500": (24, 513, 240, 3, 0.005, 1.0),
    "loveda": (8, 513, 240, 4, 0.005, 1.0),
    "pascal": (21, 513, 80, 5, 0.001, 10.0),
}



@pytest.mark.parametrize("name", NAMES)
def test_docstring_starts_with_the_command_that_runs_it(name):
    doc = importlib.import_module(f"configs.{name}").__doc__
    assert doc.startswith(f"python launch/train.py --config configs/{name}.py")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_settings(name):
    classes, crop, epochs, per_gpu, lr, lr_multi = PUBLISHED[name]
    c = load_config(name)
    assert c.model.num_classes == classes == load_spec(name).num_classes
    assert c.data.num_classes == classes  # the data section follows the model's class count
    assert c.data.crop_size == crop and c.train.num_epochs == epochs and c.train.num_steps == 0
    assert c.data.batch_size_labeled == c.data.batch_size_unlabeled == per_gpu * 4  # global batch
    spec = load_spec(name).published  # data_specs/<name>.json records the same settings
    assert (spec["crop_size"], spec["epochs"], spec["batch_size_per_gpu"], spec["num_gpus"], spec["lr"],
            spec["lr_multi"]) == (crop, epochs, per_gpu, 4, lr, lr_multi)
    assert c.optim.lr == lr and c.optim.lr_multi == lr_multi
    assert (c.optim.momentum, c.optim.weight_decay, c.optim.power) == (0.9, 1e-4, 0.9)
    assert (c.loss.strong_threshold, c.loss.weak_threshold, c.loss.temperature) == (0.97, 0.7, 0.5)
    assert (c.loss.num_queries, c.loss.num_negatives, c.ema.decay) == (256, 512, 0.99)
    assert c.model.backbone == "b5" and c.train.mode == "semi" and c.parallel.mode == "shard_map"


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_augmentation_settings_are_the_published_ones(name):
    c = load_config(name)
    d, s, a = c.data, c.data.strong_view, c.augment
    # DESIGN.md §3 steps 1-2 (host): long-side resize U(0.5, 2), flip 1/2, ignore 255; strong view
    # jitter p 0.8 (brightness/contrast/saturation 0.5, hue 0.25), grayscale 0.2, blur 0.5, sigma U(0.1, 2).
    assert (tuple(d.scale_range), d.flip_prob, d.ignore_index) == ((0.5, 2.0), 0.5, 255)
    assert (s.jitter_prob, s.brightness, s.contrast, s.saturation, s.hue) == (0.8, 0.5, 0.5, 0.5, 0.25)
    assert (s.grayscale_prob, s.blur_prob, tuple(s.blur_sigma)) == (0.2, 0.5, (0.1, 2.0))
    # Step 4 (device): cutout by default, rescale U(0.5, 2), jitter p 0.8 with factors U(0.75, 1.25)
    # and hue U(-0.25, 0.25), blur p 0.5 with sigma U(0.15, 1.15), flip 1/2.
    assert (a.mix_mode, tuple(a.scale_range), a.jitter_prob, a.flip_prob) == ("cutout", (0.5, 2.0), 0.8, 0.5)
    assert tuple(map(tuple, (a.brightness, a.contrast, a.saturation, a.hue))) == (
        (0.75, 1.25), (0.75, 1.25), (0.75, 1.25), (-0.25, 0.25))
    assert (a.blur_prob, tuple(a.blur_sigma)) == (0.5, (0.15, 1.15))


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_applies(name):
    for variant in VARIANTS:
        load_config(name, variant)
    c = load_config(name, "sup,no_contrast,no_boundary,published_teacher_bn")
    assert c.train.mode == "sup" and c.loss.contrastive_weight == 0 and c.loss.boundary_weight == 0
    assert c.ema.batch_stats is False


@pytest.mark.parametrize("name", NAMES)
def test_smoke_variant_is_tiny(name):
    c = load_config(name, "smoke")
    assert c.train.num_steps <= 10 and c.data.crop_size <= 64 and max(c.model.dims) <= 128


@pytest.mark.parametrize("name", NAMES)
def test_smoke_variant_keeps_the_datasets_eval_canvas(name):
    # The canvas must hold every validation image: a smaller one fails at the first evaluation.
    assert load_config(name, "smoke").data.eval_pad_size == load_config(name).data.eval_pad_size


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown config variant 'semii'"):
        load_config("demo", "semii")


def test_demo_matches_its_dataset_spec():
    c = load_config("demo")
    spec = load_spec("demo")
    assert c.model.num_classes == spec.num_classes and c.data.name == "demo"
    assert c.train.num_steps > 0 and c.data.eval_pad_size >= c.data.crop_size


def test_validation_canvases_fit_the_datasets_image_sizes():
    from mofgseg_jax.data.transforms import canvas_hw

    assert load_config("tas500").data.eval_pad_size == (620, 2026)  # TAS500 images: 2026 x 620, unpadded
    assert load_config("loveda").data.eval_pad_size == 1024  # LoveDA tiles: 1024 x 1024, unpadded
    assert load_config("demo").data.eval_pad_size == 96  # demo images: 96 x 96
    for name in NAMES:
        for variant in (None, "smoke"):
            canvas_hw(load_config(name, variant).data.eval_pad_size)  # a valid int or (height, width)



@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections' config loader
@pytest.mark.parametrize("config, override, expected", [
    ("demo.py", "(620, 2026)", (620, 2026)),
    ("demo.py", "[620,2026]", [620, 2026]),
    ("demo.py", "512", 512),
    ("tas500.py", "512", 512),
    ("tas500.py", "(96, 128)", (96, 128)),
    ("tas500.py:smoke", "(64, 80)", (64, 80)),
])
def test_eval_pad_size_overrides_take_either_form_on_the_command_line(config, override, expected):
    from mofgseg_jax.data.transforms import canvas_hw

    path = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs", config)
    value = parse_config_flags(f"--config={path}", f"--config.data.eval_pad_size={override}").data.eval_pad_size
    assert value == expected and canvas_hw(value) == tuple(canvas_hw(expected))


def test_the_base_config_names_every_model_key_at_the_models_default():
    from configs.common import base_config
    from mofgseg_jax.models import MODEL_DEFAULTS

    model = base_config().model
    missing = sorted(set(MODEL_DEFAULTS) - set(model.keys()))
    assert not missing, f"configs/common.py lacks model keys {missing}"
    differing = {k: (model[k], v) for k, v in MODEL_DEFAULTS.items() if model[k] != v}
    # Only rep_at_stride4: training turns it on for speed and memory (models/__init__.py).
    assert differing == {"rep_at_stride4": (True, False)}
