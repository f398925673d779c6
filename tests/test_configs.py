"""Configs: published settings (DESIGN.md §5), variants, and runnable docstrings."""

import importlib

import pytest

from configs.common import VARIANTS
from mofgseg_jax.data.specs import load_spec

NAMES = ("uavseg", "tas500", "loveda", "pascal", "demo", "custom")
# DESIGN.md §5: num classes / crop / epochs / per-GPU batch (x 4 GPUs) / lr / lr_multi.
PUBLISHED = {
    "uavseg": (14, 513, 240, 2, 0.005, 1.0),
    "tas500": (24, 513, 240, 3, 0.005, 1.0),
    "loveda": (8, 513, 240, 4, 0.005, 1.0),
    "pascal": (21, 513, 80, 5, 0.001, 10.0),
}


def _config(name, arg=None):
    return importlib.import_module(f"configs.{name}").get_config(arg)


@pytest.mark.parametrize("name", NAMES)
def test_docstring_starts_with_the_command_that_runs_it(name):
    doc = importlib.import_module(f"configs.{name}").__doc__
    assert doc.startswith(f"python launch/train.py --config configs/{name}.py")


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_settings(name):
    classes, crop, epochs, per_gpu, lr, lr_multi = PUBLISHED[name]
    c = _config(name)
    assert c.model.num_classes == classes == load_spec(name).num_classes
    assert c.data.num_classes == classes  # the data section follows the model's class count
    assert c.data.crop_size == crop and c.train.num_epochs == epochs and c.train.num_steps == 0
    assert c.data.batch_size_labeled == c.data.batch_size_unlabeled == per_gpu * 4  # global batch
    assert c.optim.lr == lr and c.optim.lr_multi == lr_multi
    assert (c.optim.momentum, c.optim.weight_decay, c.optim.power) == (0.9, 1e-4, 0.9)
    assert (c.loss.strong_threshold, c.loss.weak_threshold, c.loss.temperature) == (0.97, 0.7, 0.5)
    assert (c.loss.num_queries, c.loss.num_negatives, c.ema.decay) == (256, 512, 0.99)
    assert c.model.backbone == "b5" and c.train.mode == "semi" and c.parallel.mode == "shard_map"


@pytest.mark.parametrize("name", NAMES)
def test_every_variant_applies(name):
    for variant in VARIANTS:
        _config(name, variant)
    c = _config(name, "sup,no_contrast,no_boundary,published_teacher_bn")
    assert c.train.mode == "sup" and c.loss.contrastive_weight == 0 and c.loss.boundary_weight == 0
    assert c.ema.batch_stats is False


@pytest.mark.parametrize("name", NAMES)
def test_smoke_variant_is_tiny(name):
    c = _config(name, "smoke")
    assert c.train.num_steps <= 10 and c.data.crop_size <= 64 and max(c.model.dims) <= 128


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown config variant 'semii'"):
        _config("demo", "semii")


def test_demo_matches_its_dataset_spec():
    c = _config("demo")
    spec = load_spec("demo")
    assert c.model.num_classes == spec.num_classes and c.data.name == "demo"
    assert c.train.num_steps > 0 and c.data.eval_pad_size >= c.data.crop_size
