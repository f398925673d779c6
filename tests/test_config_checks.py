"""The config's value constraints: one pass, one error naming the key, before anything runs."""

import os

import pytest

from configs.common import VARIANTS
from mofgseg_jax.config_checks import check_config_values
from mofgseg_jax.errors import InputError
from mofgseg_jax.train import inference
from tests.config_helpers import NAMES, load_config, parse_config_flags

CONFIGS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "configs")




@pytest.mark.parametrize("name", NAMES)
def test_every_shipped_config_and_variant_passes(name):
    for variant in VARIANTS:
        check_config_values(load_config(name, variant))


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")  # ml_collections' config loader
@pytest.mark.parametrize("override, message", [
    ("data.eval_batch_size=0", "data.eval_batch_size=0: expected an integer > 0"),
    ("data.batch_size_labeled=0", "data.batch_size_labeled=0: expected an integer > 0"),
    ("data.batch_size_unlabeled=-2", "data.batch_size_unlabeled=-2: expected an integer > 0"),
    ("data.crop_size=0", "data.crop_size=0: expected an integer > 0"),
    ("data.scale_range=0.5", "data.scale_range=(0.5,): expected two numbers (low, high)"),
    ("data.scale_range=(2.0,)", "data.scale_range=(2.0,): expected two numbers (low, high)"),
    ("data.scale_range=(2.0,0.5)", "data.scale_range=(2.0, 0.5): expected low <= high"),
    ("data.scale_range=(0,2.0)", "data.scale_range=(0, 2.0): expected two numbers > 0"),
    ("data.strong_view.blur_sigma=(0.5,)", "data.strong_view.blur_sigma=(0.5,): expected two numbers (low, high)"),
    ("data.strong_view.hue=0.7", "data.strong_view.hue=0.7: expected a number in [0, 0.5]"),
    ("data.flip_prob=1.5", "data.flip_prob=1.5: expected a number in [0, 1]"),
    ("augment.scale_range=(1.0,)", "augment.scale_range=(1.0,): expected two numbers (low, high)"),
    ("augment.brightness=(1.25,0.75)", "augment.brightness=(1.25, 0.75): expected low <= high"),
    ("augment.hue=(-0.7,0.2)", "augment.hue=(-0.7, 0.2): expected two numbers in [-0.5, 0.5]"),
    ("augment.blur_sigma=(0.0,1.0)", "augment.blur_sigma=(0.0, 1.0): expected two numbers > 0"),
    ("augment.blur_kernel_size=4", "augment.blur_kernel_size=4: expected an integer > 0 and odd"),
    ("augment.mix_mode=bogus", "augment.mix_mode='bogus': choose from cutout, cutmix, classmix, none"),
    ("augment.mix_area_ratio=0", "augment.mix_area_ratio=0.0: expected a number in (0, 1]"),
    ("augment.classmix_class_ratio=1.5", "augment.classmix_class_ratio=1.5: expected a number in (0, 1]"),
    ("loss.edge_connectivity=5", "loss.edge_connectivity=5: choose from 4, 8"),
    ("loss.dice_smooth=0", "loss.dice_smooth=0.0: expected a number > 0"),
    ("data.mean=(123.675,116.28,103.53)",
     "data.mean=(123.675, 116.28, 103.53): expected three numbers in [0, 1] (images are scaled to [0, 1])"),
    ("data.std=(0.2,0.0,0.2)", "data.std=(0.2, 0.0, 0.2): expected three numbers in (0, 1]"),
    ("data.std=(0.2,0.2)", "data.std=(0.2, 0.2): expected three numbers (R, G, B)"),
    ("data.num_threads=0", "data.num_threads=0: expected an integer > 0"),
    ("data.prefetch=-1", "data.prefetch=-1: expected an integer > 0"),
    ("eval.window_stride_ratio=0", "eval.window_stride_ratio=0.0: expected a fraction of the window in (0, 1]"),
    ("data.eval_pad_size=(96,0)", "data.eval_pad_size=(96, 0): expected a positive int"),
    ("model.num_heads=(1,2,5)", "model.num_heads=(1, 2, 5): expected () for the preset's values or 4 integers > 0"),
    ("model.sr_ratios=(8,4,2,0)", "model.sr_ratios=(8, 4, 2, 0): expected () for the preset's values or 4 integers"),
    ("model.dims=(16,32,80)", "model.dims=(16, 32, 80): expected () for the preset's values or 4 integers > 0"),
    ("model.num_heads=(1,2,5,7)", "model.num_heads=(1, 2, 5, 7): stage 4's width 128 (model.dims=(16, 32, 80, 128)) "
                                  "is not divisible by its 7 heads"),
    ("model.mlp_ratio=-1.0", "model.mlp_ratio=-1.0: expected a number >= 0"),
    ("model.eam_low_dim=0", "model.eam_low_dim=0: expected an integer > 0"),
    ("model.eam_high_dim=0", "model.eam_high_dim=0: expected an integer > 0"),
    ("model.eam_mid_dim=0", "model.eam_mid_dim=0: expected an integer > 0"),
    ("loss.temperature=0", "loss.temperature=0.0: expected a number > 0"),
    ("loss.temperature=inf", "loss.temperature=inf: expected a number > 0"),  # inf > 0, yet no temperature
    ("augment.blur_kernel_size=-3", "augment.blur_kernel_size=-3: expected an integer > 0 and odd"),
    ("augment.hue=(-0.2,0.7)", "augment.hue=(-0.2, 0.7): expected two numbers in [-0.5, 0.5]"),
    ("model.backbone=b9", "model.backbone='b9': unknown MiT preset; choose from b0, b1, b2, b3, b4, b5"),
    # Values that used to train without an error: a NaN teacher, a NaN or ascended loss, an lr that
    # grows to inf, a drop rate that keeps nothing; or that failed only after the workdir was written.
    ("ema.decay=nan", "ema.decay=nan: expected a number in [0, 1]"),
    ("ema.decay=-0.5", "ema.decay=-0.5: expected a number in [0, 1]"),
    ("loss.supervised_weight=nan", "loss.supervised_weight=nan: expected a number >= 0"),
    ("loss.contrastive_weight=-1", "loss.contrastive_weight=-1.0: expected a number >= 0"),
    ("loss.negative_weight=inf", "loss.negative_weight=inf: expected a number >= 0"),
    ("loss.strong_threshold=1.5", "loss.strong_threshold=1.5: expected a number in [0, 1]"),
    ("loss.weak_threshold=nan", "loss.weak_threshold=nan: expected a number in [0, 1]"),
    ("loss.ohem_thresh=-0.1", "loss.ohem_thresh=-0.1: expected a number in [0, 1]"),
    ("loss.ohem_min_kept=-1", "loss.ohem_min_kept=-1: expected an integer >= 0"),
    ("loss.semi_rampup_steps=-1", "loss.semi_rampup_steps=-1: expected an integer >= 0"),
    ("loss.contrastive_anchor_chunk=-1", "loss.contrastive_anchor_chunk=-1: expected an integer >= 0"),
    ("optim.name=adam", "optim.name='adam': choose from sgd, adamw"),
    ("optim.lr=nan", "optim.lr=nan: expected a number >= 0"),
    ("optim.lr_multi=-1", "optim.lr_multi=-1.0: expected a number >= 0"),
    ("optim.momentum=1.5", "optim.momentum=1.5: expected a number in [0, 1]"),
    ("optim.weight_decay=nan", "optim.weight_decay=nan: expected a number >= 0"),
    ("optim.power=-1", "optim.power=-1.0: expected a number >= 0"),
    ("optim.warmup_steps=-1", "optim.warmup_steps=-1: expected an integer >= 0"),
    ("optim.accumulate_steps=0", "optim.accumulate_steps=0: expected an integer > 0"),
    ("train.keep_checkpoints=0", "train.keep_checkpoints=0: expected an integer > 0"),
    ("train.num_predictions_logged=-1", "train.num_predictions_logged=-1: expected an integer >= 0"),
    ("parallel.mode=vmap", "parallel.mode='vmap': choose from shard_map, pmap"),
    ("seed=-1", "seed=-1: expected an integer in [0, 2**63)"),  # grain's SeedSequence raised a traceback
    ("data.source=s3", "data.source='s3': choose from folder, tfds"),
    ("data.source=tfds", "data.source='tfds' needs data.tfds_dir"),
    ("data.use_edge_maps=True", "data.use_edge_maps=True needs data.edge_dir"),
    ("dtype=float16", "model.dtype='float16': choose from float32, bfloat16"),
    ("model.conv3x3=fft", "model.conv3x3='fft': choose from auto, winograd, xla"),
    ("model.embed_dim=-1", "model.embed_dim=-1: expected an integer >= 0"),
    ("model.rep_dim=0", "model.rep_dim=0: expected an integer > 0"),
    ("model.dropout_rate=1.0", "model.dropout_rate=1.0: expected a number in [0, 1)"),
    ("model.drop_path_rate=nan", "model.drop_path_rate=nan: expected a number in [0, 1)"),
    ("model.bn_eps=-1", "model.bn_eps=-1.0: expected a number > 0"),
    ("model.block_ln_eps=0", "model.block_ln_eps=0.0: expected a number > 0"),
    ("model.embed_ln_eps=nan", "model.embed_ln_eps=nan: expected a number > 0"),
    ("model.bn_momentum=1.5", "model.bn_momentum=1.5: expected a number in [0, 1]"),
])
def test_a_bad_value_on_the_command_line_is_one_error_naming_the_key(override, message):
    config = parse_config_flags(f"--config={CONFIGS}/demo.py:smoke", f"--config.{override}")
    with pytest.raises(InputError) as e:
        check_config_values(config)
    assert str(e.value).startswith(message) and "\n" not in str(e.value)


def test_evaluation_checks_the_model_keys_of_a_stored_config_too():
    stored = load_config("demo", "smoke").to_dict()
    stored["model"]["num_heads"] = (1, 2, 5, 7)  # 128 channels in 7 heads
    with pytest.raises(InputError, match=r"^model.num_heads=\(1, 2, 5, 7\): stage 4's width 128 "):
        inference.run_config(None, stored)
    del stored["model"]["num_heads"]  # a config stored before the key existed: the preset's
    assert "num_heads" not in inference.run_config(None, stored).model


def test_the_unlabelled_batch_is_checked_only_where_it_is_read():
    config = load_config("demo", "sup")
    config.data.batch_size_unlabeled = 0  # 'sup' runs read no unlabelled images
    check_config_values(config)
    config.train.mode = "semi"
    with pytest.raises(InputError, match=r"^data.batch_size_unlabeled=0: "):
        check_config_values(config)


def test_a_custom_dataset_takes_its_class_count_from_its_class_names():
    from mofgseg_jax.data.specs import spec_from_config

    config = load_config("custom")
    config.data.class_names = ("sea", "land", "sky")
    check_config_values(config)
    assert config.model.num_classes == config.data.num_classes == 3
    assert spec_from_config(config.data).class_names == ("sea", "land", "sky")


def test_evaluation_checks_the_keys_it_reads_and_not_the_training_ones():
    stored = load_config("demo", "smoke").to_dict()
    stored["augment"]["mix_mode"] = "bogus"  # a training key: evaluation does not read it
    assert inference.run_config(None, stored).augment.mix_mode == "bogus"
    stored["data"]["eval_batch_size"] = 0
    with pytest.raises(InputError, match=r"^data.eval_batch_size=0: expected an integer > 0"):
        inference.run_config(None, stored)
    given = load_config("demo", "smoke")
    given.eval.window_stride_ratio = -1.0
    with pytest.raises(InputError, match=r"^eval.window_stride_ratio=-1.0: "):
        inference.run_config(given, None)


@pytest.mark.filterwarnings("ignore:the load_module:DeprecationWarning")
def test_the_ends_of_each_domain_that_a_study_may_use_are_accepted():
    # Off switches (a loss weight of 0, a frozen decoder, a constant lr, a teacher that copies the
    # student) and an uncapped EMA schedule (decay 1) are research settings, not mistakes.
    config = parse_config_flags(
        f"--config={CONFIGS}/demo.py:smoke", "--config.ema.decay=0", "--config.loss.contrastive_weight=0",
        "--config.loss.supervised_weight=0", "--config.optim.lr_multi=0", "--config.optim.power=0",
        "--config.optim.momentum=0", "--config.loss.strong_threshold=1", "--config.model.dropout_rate=0")
    check_config_values(config)
    config.ema.decay = 1.0
    check_config_values(config)


def test_a_data_folder_that_is_not_there_is_refused_where_it_is_read(tmp_path):
    config = load_config("demo", "smoke")
    config.data.use_edge_maps, config.data.edge_dir = True, str(tmp_path / "edges")
    with pytest.raises(InputError, match=r"^data.edge_dir='.*edges': no such folder"):
        check_config_values(config)  # found once the input pipeline opened it, after config.json was saved
    check_config_values(config, training=False)  # evaluation reads no edge maps
    (tmp_path / "edges").mkdir()
    check_config_values(config)
    config.data.source, config.data.tfds_dir = "tfds", str(tmp_path / "build")
    with pytest.raises(InputError, match=r"^data.tfds_dir='.*build': no such folder"):
        check_config_values(config)
    # Prediction reads no dataset: a run trained from a TFDS build elsewhere still predicts.
    check_config_values(config, training=False)


def test_a_range_of_one_value_is_accepted():
    config = load_config("demo", "smoke")
    config.data.scale_range = (1.0, 1.0)  # low == high: a fixed scale, not an empty range
    config.augment.brightness = (1.0, 1.0)
    check_config_values(config)


def test_a_boolean_in_a_stored_config_is_not_taken_for_an_integer():
    stored = load_config("demo", "smoke").to_dict()  # a config read back from JSON keeps no types
    stored["data"]["crop_size"] = True  # isinstance(True, int) holds in Python
    with pytest.raises(InputError, match=r"^data.crop_size=True: expected an integer > 0"):
        inference.run_config(None, stored)


def test_a_stored_custom_config_fills_both_class_counts_from_the_class_names():
    import ml_collections

    # Read back from JSON, data.num_classes no longer follows model.num_classes by reference.
    stored = ml_collections.ConfigDict(load_config("custom").to_dict())
    stored.data.class_names = ("sea", "land", "sky")
    assert stored.model.num_classes == stored.data.num_classes == 0
    check_config_values(stored)
    assert stored.model.num_classes == 3 and stored.data.num_classes == 3
