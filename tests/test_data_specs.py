"""data_specs/*.json agree with the reference class lists and palettes; custom specs from config."""

import json
from pathlib import Path

import pytest

from configs.common import base_config
from mofgseg_jax.data import specs
from mofgseg_jax.data.specs import available_specs, default_palette, load_spec, spec_from_config
from mofgseg_jax.errors import InputError

REFERENCE = Path(__file__).resolve().parents[2] / "shared" / "reference" / "datasets.json"
PUBLISHED = ("loveda", "pascal", "tas500", "uavseg")  # their settings: tests/test_configs.py


@pytest.mark.skipif(not REFERENCE.exists(), reason="../shared/reference not present")
@pytest.mark.parametrize("name", PUBLISHED)
def test_spec_classes_and_palette_equal_the_reference(name):
    ref = json.loads(REFERENCE.read_text())[name]
    spec = load_spec(name)
    assert spec.num_classes == ref["num_classes"]
    assert list(spec.class_names) == ref["classes"]
    assert [list(c) for c in spec.palette] == ref["palette"]
    assert spec.ignore_index == 255


def test_layouts_give_the_published_paths():
    assert load_spec("uavseg").image_path("train", "10000") == "gt_jpg/train/10000.jpg"
    assert load_spec("loveda").mask_path("val", "2522") == "label_png/val/2522.png"
    assert load_spec("pascal").image_path("val", "2007_000033") == "JPEGImages/2007_000033.jpg"
    assert load_spec("pascal").mask_path("train", "2007_000032") == "SegmentationClass/2007_000032.png"


def test_every_spec_loads_and_demo_has_eight_classes():
    assert {"uavseg", "tas500", "loveda", "pascal", "demo", "custom"} <= set(available_specs())
    demo = load_spec("demo")
    assert demo.num_classes == len(demo.class_names) == len(demo.palette) == 8
    assert len(set(demo.palette)) == 8


def test_custom_spec_takes_classes_from_the_config():
    config = base_config()
    config.data.name = "custom"
    config.model.num_classes = 3  # data.num_classes follows model.num_classes
    spec = spec_from_config(config.data)
    assert spec.num_classes == 3 and spec.class_names == ("class_0", "class_1", "class_2")
    assert spec.palette == default_palette(3) == ((0, 0, 0), (128, 0, 0), (0, 128, 0))
    config.data.class_names = ("sea", "land", "sky")
    assert spec_from_config(config.data).class_names == ("sea", "land", "sky")


def test_custom_classes_must_leave_the_ignore_label_free():
    # 255 marks ignored pixels: a 256th class would be ignored by the losses and by mIoU.
    with pytest.raises(InputError, match=r"custom\.json: key 'ignore_index' 255 is one of the class ids 0\.\.255"):
        load_spec("custom", num_classes=256)


def test_config_errors_name_the_problem():
    with pytest.raises(ValueError, match="needs model.num_classes"):
        load_spec("custom")
    with pytest.raises(ValueError, match="has 14 classes but the config says num_classes=8"):
        load_spec("uavseg", num_classes=8)
    with pytest.raises(ValueError, match="data.name='nope'"):
        load_spec("nope")


def test_default_palette_is_the_pascal_voc_colour_map():
    # The VOC devkit's labelcolormap for its 21 classes, written out (labels >= 8 use the second bits).
    voc = ((0, 0, 0), (128, 0, 0), (0, 128, 0), (128, 128, 0), (0, 0, 128), (128, 0, 128), (0, 128, 128),
           (128, 128, 128), (64, 0, 0), (192, 0, 0), (64, 128, 0), (192, 128, 0), (64, 0, 128), (192, 0, 128),
           (64, 128, 128), (192, 128, 128), (0, 64, 0), (128, 64, 0), (0, 192, 0), (128, 192, 0), (0, 64, 128))
    assert default_palette(21) == voc
    assert len(set(default_palette(256))) == 256  # every 8-bit label its own colour


def test_class_names_that_disagree_with_the_spec_are_an_error():
    demo = load_spec("demo")
    assert load_spec("demo", class_names=demo.class_names).class_names == demo.class_names
    with pytest.raises(InputError, match=r"demo\.json: data.class_names differs from the spec's class names"):
        load_spec("demo", class_names=demo.class_names[::-1])
    with pytest.raises(InputError, match=r"^data.class_names has 2 names but num_classes is 3$"):
        load_spec("custom", num_classes=3, class_names=("sea", "land"))


def test_config_ignore_index_must_match_the_spec():
    # The host pads masks with the spec's ignore label and the step ignores the config's: were they
    # to differ, padding would be a class for the losses and edge targets.
    config = base_config()
    config.data.name = "uavseg"
    config.model.num_classes = 14
    assert spec_from_config(config.data).ignore_index == 255
    config.data.ignore_index = 0
    with pytest.raises(ValueError, match=r"data.ignore_index=0 differs from .*uavseg.json's ignore_index=255"):
        spec_from_config(config.data)


def _broken_demo_spec(tmp_path, monkeypatch, edit):
    """Loads a copy of demo.json changed by `edit(raw)` (or, for a string, with that text)."""
    if isinstance(edit, str):
        text = edit
    else:
        raw = json.loads((Path(specs.SPEC_DIR) / "demo.json").read_text())
        edit(raw)
        text = json.dumps(raw)
    (tmp_path / "demo.json").write_text(text)
    monkeypatch.setattr(specs, "SPEC_DIR", str(tmp_path))
    return load_spec("demo")


@pytest.mark.parametrize("edit, message", [
    ('{"name": "demo",', r"demo\.json: not a readable JSON spec \(Expecting"),
    ("[1, 2]", r"demo\.json: must be a JSON object of spec keys, got list"),
    (lambda raw: raw.pop("class_names"), r"demo\.json: key 'class_names' missing"),
    (lambda raw: raw["layout"].pop("mask_ext"), r"demo\.json: key 'layout\.mask_ext' missing"),
    (lambda raw: raw["layout"]["val"].pop("images"), r"demo\.json: key 'layout\.val\.images' missing"),
    (lambda raw: raw.update(num_classes="8"), r"demo\.json: key 'num_classes' must be an int, got '8'"),
    (lambda raw: raw.update(layout=[]), r"demo\.json: key 'layout' must be an object, got \[\]"),
    (lambda raw: raw.update(ignore_index=None), r"demo\.json: key 'ignore_index' must be an int, got None"),
    (lambda raw: raw["palette"].__setitem__(2, [1, 2]), r"demo\.json: key 'palette' item 2 must be \[r, g, b\]"),
    (lambda raw: raw["palette"].__setitem__(3, [0, 256, 0]), r"demo\.json: key 'palette' item 3 must be \[r, g, b\] of ints 0\.\.255"),
    (lambda raw: raw["palette"].__setitem__(0, [-1, 0, 0]), r"demo\.json: key 'palette' item 0 must be \[r, g, b\] of ints 0\.\.255"),
    (lambda raw: raw["palette"].pop(), r"demo\.json: class_names/palette length differs from num_classes=8"),
    ('{"name": ' + "[" * 100000 + "]" * 100000 + "}",
     r"demo\.json: not a readable JSON spec \(values nested too deeply\)"),
    (lambda raw: raw.update(num_classes=0, class_names=[], palette=[]),
     r"demo\.json: key 'num_classes' must be at least 1, got 0"),
    (lambda raw: raw.update(ignore_index=300), r"demo\.json: key 'ignore_index' must be an int 0\.\.255 .*got 300"),
    (lambda raw: raw.update(ignore_index=-1), r"demo\.json: key 'ignore_index' must be an int 0\.\.255 .*got -1"),
    (lambda raw: raw.update(ignore_index=7),
     r"demo\.json: key 'ignore_index' 7 is one of the class ids 0\.\.7; it must be num_classes\.\.255"),
])
def test_a_malformed_spec_file_is_one_line_naming_file_and_key(tmp_path, monkeypatch, edit, message):
    with pytest.raises(InputError, match=message):
        _broken_demo_spec(tmp_path, monkeypatch, edit)
