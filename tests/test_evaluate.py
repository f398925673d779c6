"""Evaluation: confusion/mIoU against NumPy, window modes against per-image loop references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.sharding import Mesh

from mofgseg_jax.augment.photometric import IMAGENET_MEAN, IMAGENET_STD
from mofgseg_jax.errors import InputError
from mofgseg_jax.train import evaluate as ev

K = 5


class ContextModel:
    """A stand-in network whose logits depend on the pixel, its position and the whole input
    (so where a window is placed changes its output, as with a real network)."""

    def apply(self, variables, images, train=False):
        w, v, p = variables["params"]["w"], variables["params"]["v"], variables["params"]["p"]
        b, h, width, _ = images.shape
        pos = (jnp.arange(h)[:, None] / h + jnp.arange(width)[None, :] / width)[None, :, :, None]
        logits = images @ w + images.mean(axis=(1, 2), keepdims=True) @ v + pos * p
        return {"logits": logits}


def _numpy_model(variables, window):
    w, v, p = (np.asarray(variables["params"][k], np.float64) for k in ("w", "v", "p"))
    h, width, _ = window.shape
    pos = (np.arange(h)[:, None] / h + np.arange(width)[None, :] / width)[:, :, None]
    return window @ w + window.mean(axis=(0, 1), keepdims=True) @ v + pos * p


def _variables(seed):
    r = np.random.default_rng(seed)
    return {"params": {"w": jnp.asarray(r.normal(size=(3, K)), jnp.float32),
                       "v": jnp.asarray(r.normal(size=(3, K)) * 3, jnp.float32),
                       "p": jnp.asarray(r.normal(size=(K,)) * 2, jnp.float32)}}


def _batch(seed, b=3, hp=24, sizes=((24, 17), (9, 24), (13, 6)), valid=(True, True, False)):
    r = np.random.default_rng(seed)
    images = np.zeros((b, hp, hp, 3), np.uint8)
    labels = np.full((b, hp, hp), 255, np.uint8)
    for i, (h, w) in enumerate(sizes):
        images[i, :h, :w] = r.integers(0, 256, (h, w, 3))
        lab = r.integers(0, K, (h, w))
        lab[r.random((h, w)) < 0.1] = 255
        labels[i, :h, :w] = lab
    return {"image": images, "label": labels, "height": np.array([s[0] for s in sizes], np.int32),
            "width": np.array([s[1] for s in sizes], np.int32), "valid": np.array(valid)}


def _normalised(image_u8, h, w):
    x = (image_u8[:h, :w].astype(np.float64) / 255 - np.array(IMAGENET_MEAN)) / np.array(IMAGENET_STD)
    return x


def _softmax(x):
    e = np.exp(x - x.max(-1, keepdims=True))
    return e / e.sum(-1, keepdims=True)


def _reference_sliding(variables, image_u8, h, w, crop, stride):
    """The published per-image loop: windows 0, s, 2s, ... < h (and < w), truncated at the border;
    here a truncated window is zero-padded to crop x crop (our fixed-shape convention)."""
    img = _normalised(image_u8, h, w)
    acc = np.zeros((h, w, K))
    row = 0
    while row < h:
        col = 0
        while col < w:
            win = np.zeros((crop, crop, 3))
            part = img[row:row + crop, col:col + crop]
            win[:part.shape[0], :part.shape[1]] = part
            probs = _softmax(_numpy_model(variables, win))
            acc[row:row + crop, col:col + crop] += probs[:part.shape[0], :part.shape[1]]
            col += stride
        row += stride
    return acc.argmax(-1)


def _reference_center(variables, image_u8, h, w, crop):
    img = _normalised(image_u8, h, w)
    top, left = max((h - crop) // 2, 0), max((w - crop) // 2, 0)
    part = img[top:top + crop, left:left + crop]
    win = np.zeros((crop, crop, 3))
    win[:part.shape[0], :part.shape[1]] = part
    pred = np.full((h, w), ev.NO_PREDICTION)
    pred[top:top + part.shape[0], left:left + part.shape[1]] = \
        _numpy_model(variables, win).argmax(-1)[:part.shape[0], :part.shape[1]]
    return pred


def _run_predict(mode, variables, batch, crop):
    model = ContextModel()
    fn = jax.jit(lambda b: ev.predict(ev.logits_fn_for(model, variables), b["image"], b["height"], b["width"],
                                      mode=mode, crop_size=crop, num_classes=K))
    return np.asarray(fn({k: jnp.asarray(v) for k, v in batch.items()}))


def test_sliding_window_equals_per_image_loop_reference():
    variables, batch, crop = _variables(0), _batch(1), 10
    pred = _run_predict("sliding_window", variables, batch, crop)
    stride = int(crop * 2 / 3)
    for i in range(3):
        h, w = batch["height"][i], batch["width"][i]
        ref = _reference_sliding(variables, batch["image"][i], h, w, crop, stride)
        np.testing.assert_array_equal(pred[i, :h, :w], ref)
        assert (pred[i, h:] == ev.NO_PREDICTION).all() and (pred[i, :, w:] == ev.NO_PREDICTION).all()


def test_center_crop_equals_per_image_reference():
    variables, batch, crop = _variables(2), _batch(3), 10
    pred = _run_predict("center_crop", variables, batch, crop)
    for i in range(3):
        h, w = batch["height"][i], batch["width"][i]
        np.testing.assert_array_equal(pred[i, :h, :w], _reference_center(variables, batch["image"][i], h, w, crop))


def test_original_mode_scores_each_image_only_inside_its_size():
    variables, batch = _variables(4), _batch(5)
    pred = _run_predict("original", variables, batch, 10)
    for i in range(3):
        h, w = batch["height"][i], batch["width"][i]
        assert (pred[i, :h, :w] >= 0).all() and (pred[i, h:] < 0).all() and (pred[i, :, w:] < 0).all()


def _unpadded_input(image_u8):
    """The network input of an image on its own: `[1, h, w, 3]` float32, ImageNet-normalised."""
    x = image_u8.astype(np.float32) / np.float32(255)
    x = (x - np.asarray(IMAGENET_MEAN, np.float32)) / np.asarray(IMAGENET_STD, np.float32)
    return jnp.asarray(x[None])


def _canvas_batch(image_u8, canvas):
    from mofgseg_jax.data.transforms import pad_to

    label = np.zeros(image_u8.shape[:2], np.uint8)
    ex = pad_to({"image": image_u8, "label": label}, canvas)
    return {k: jnp.asarray(np.asarray(ex[k])[None]) for k in ("image", "height", "width")}


def _original_on(model, variables, batch):
    fn = jax.jit(lambda b: ev.predict(ev.logits_fn_for(model, variables), b["image"], b["height"], b["width"],
                                      mode="original", crop_size=8, num_classes=K))
    return np.asarray(fn(batch))[0]


def test_original_mode_on_a_canvas_of_the_image_size_is_the_model_on_the_unpadded_image():
    """A (height, width) canvas equal to the image: exactly the published `model(img)`; the square
    canvas that holds it pads it and changes predictions inside the image (the logits see the
    whole input, as MiT's global attention does)."""
    model, variables = ContextModel(), _variables(11)
    image = np.random.default_rng(12).integers(0, 256, (9, 24, 3), dtype=np.uint8)
    direct = np.asarray(jnp.argmax(model.apply(variables, _unpadded_input(image))["logits"], -1))[0]
    np.testing.assert_array_equal(_original_on(model, variables, _canvas_batch(image, (9, 24))), direct)
    square = _original_on(model, variables, _canvas_batch(image, 24))[:9, :24]
    assert (square != direct).any()


def test_original_mode_of_a_mit_network_on_a_canvas_of_the_image_size_is_the_network_on_the_image():
    from mofgseg_jax.models import build_model
    from mofgseg_jax.train.state import init_variables

    model = build_model(dict(backbone="b0", num_classes=K, depths=(1, 1, 1, 1), dims=(16, 32, 80, 128),
                             embed_dim=32, rep_dim=24))
    variables = init_variables(model, jax.random.key(0), (1, 32, 48, 3))
    image = np.random.default_rng(13).integers(0, 256, (32, 48, 3), dtype=np.uint8)
    logits = jax.jit(lambda x: model.apply(variables, x, train=False)["logits"])(_unpadded_input(image))
    direct = np.asarray(jnp.argmax(logits, -1))[0]
    np.testing.assert_array_equal(_original_on(model, variables, _canvas_batch(image, (32, 48))), direct)
    square = _original_on(model, variables, _canvas_batch(image, 48))[:32, :48]
    assert (square != direct).any()  # zero padding in the square changes MiT's logits inside the image


def _numpy_confusion(preds, labels, valid):
    conf = np.zeros((K, K), np.int64)
    for p, l, v in zip(preds, labels, valid):
        if not v:
            continue
        for y in range(l.shape[0]):
            for x in range(l.shape[1]):
                if l[y, x] != 255 and p[y, x] >= 0:
                    conf[l[y, x], p[y, x]] += 1
    return conf


def _numpy_miou(conf):
    ious = []
    for k in range(K):
        inter = conf[k, k]
        union = conf[k, :].sum() + conf[:, k].sum() - inter
        ious.append(inter / (union + 1e-10) * 100)
    return np.mean(ious), np.array(ious)


def test_confusion_and_miou_equal_numpy_reference():
    r = np.random.default_rng(6)
    preds = r.integers(-1, K, (4, 7, 9))
    labels = r.integers(0, K, (4, 7, 9)).astype(np.uint8)
    labels[r.random(labels.shape) < 0.2] = 255
    valid = np.array([True, False, True, True])
    conf = np.asarray(ev.confusion_matrix(jnp.asarray(preds), jnp.asarray(labels), jnp.asarray(valid), num_classes=K))
    ref = _numpy_confusion(preds, labels, valid)
    np.testing.assert_array_equal(conf, ref)
    miou, iou = ev.iou_from_confusion(conf)
    ref_miou, ref_iou = _numpy_miou(ref)
    np.testing.assert_allclose(iou, ref_iou, rtol=1e-12)
    assert miou == pytest.approx(ref_miou, rel=1e-12)


def test_evaluate_over_two_devices_equals_numpy_for_student_and_teacher():
    """Uneven batches, padding samples and two devices: the psum-ed confusion equals NumPy's over
    the per-image loop reference's predictions."""
    mesh = Mesh(np.array(jax.devices()[:2]), ("data",))
    student, teacher = _variables(7), _variables(8)
    batches = [_batch(9), _batch(10, b=1, sizes=((20, 21),), valid=(True,))]
    batches[1] = {k: v for k, v in batches[1].items()}
    step = ev.make_eval_step(ContextModel(), mesh, mode="sliding_window", crop_size=10, num_classes=K)
    out = ev.evaluate(step, (student, teacher), batches, mesh=mesh, num_classes=K, num_keep=2)
    for name, variables in (("student", student), ("teacher", teacher)):
        preds, labels, valid = [], [], []
        for b in batches:
            for i in range(len(b["image"])):
                h, w = b["height"][i], b["width"][i]
                pred = np.full(b["label"][i].shape, ev.NO_PREDICTION)
                pred[:h, :w] = _reference_sliding(variables, b["image"][i], h, w, 10, int(10 * 2 / 3))
                preds.append(pred)
            labels += list(b["label"])
            valid += list(b["valid"])
        ref = _numpy_confusion(preds, labels, valid)
        np.testing.assert_array_equal(out[name]["confusion"], ref)
        assert out[name]["miou"] == pytest.approx(_numpy_miou(ref)[0], rel=1e-12)
    assert len(out["kept"]) == 2 and out["kept"][0]["preds"].shape == (2, 24, 17)  # cropped to h x w


def test_unknown_mode_is_a_clear_error():
    with pytest.raises(ValueError, match="eval.mode='whole'"):
        ev.make_eval_step(ContextModel(), Mesh(np.array(jax.devices()[:1]), ("data",)), mode="whole",
                          crop_size=8, num_classes=K)


@pytest.mark.parametrize("ratio", [0.0, -0.5, 1.5, 0.001])
def test_a_window_stride_ratio_outside_0_1_or_under_a_pixel_is_an_error_naming_the_key(ratio):
    # Clamped to stride 1, a ratio near 0 meant a window at every pixel: 10^6 at 1024 x 1024.
    with pytest.raises(InputError, match=rf"^eval.window_stride_ratio={ratio}: "):
        ev.window_origins(1024, 1024, 513, ratio)


def test_window_stride_is_the_ratio_of_the_crop_down_to_one_pixel():
    assert ev.window_stride(513, 2 / 3) == 342 and ev.window_stride(513, 1.0) == 513
    assert ev.window_stride(513, 1 / 513) == 1


def test_miou_is_the_mean_over_all_classes_with_absent_classes_scoring_zero():
    # DESIGN.md §4: mean over num_classes. Classes 3 and 4 never occur (label or prediction).
    conf = np.zeros((K, K), np.int64)
    conf[0, 0], conf[0, 1], conf[1, 1], conf[2, 0], conf[2, 2] = 3, 1, 2, 1, 2
    miou, iou = ev.iou_from_confusion(conf)
    # IoU = I / (row + column - I): 3/5, 2/3, 2/3, then 0 for the absent classes.
    np.testing.assert_allclose(iou, [60.0, 200 / 3, 200 / 3, 0.0, 0.0], rtol=1e-9)
    assert miou == pytest.approx((60.0 + 400 / 3) / 5, rel=1e-9)


def test_prepare_images_normalises_with_the_given_mean_and_std_and_zeroes_padding():
    batch = _batch(13)
    mean, std = (0.3, 0.6, 0.1), (0.2, 0.4, 0.5)
    got = np.asarray(jax.jit(lambda b: ev.prepare_images(b["image"], b["height"], b["width"], mean=mean, std=std))(
        {k: jnp.asarray(v) for k, v in batch.items()}))
    for i in range(3):
        h, w = batch["height"][i], batch["width"][i]
        expected = (batch["image"][i, :h, :w] / 255.0 - np.array(mean)) / np.array(std)
        np.testing.assert_allclose(got[i, :h, :w], expected, rtol=1e-6, atol=1e-5)
        assert (got[i, h:] == 0).all() and (got[i, :, w:] == 0).all()


def test_a_stored_config_older_than_data_mean_and_std_evaluates_with_imagenets():
    from mofgseg_jax.augment.photometric import mean_std
    from mofgseg_jax.train import inference
    from tests.config_helpers import load_config

    stored = load_config("demo", "smoke").to_dict()
    del stored["data"]["mean"], stored["data"]["std"]
    assert mean_std(inference.run_config(None, stored).data) == (IMAGENET_MEAN, IMAGENET_STD)
    stored["data"]["std"] = (0.2, 0.0, 0.2)  # evaluation reads it, so it is checked there
    with pytest.raises(InputError, match=r"^data.std=\(0.2, 0.0, 0.2\): expected three numbers in \(0, 1\]"):
        inference.run_config(None, stored)


def test_a_config_with_other_attention_heads_than_the_run_is_refused_though_every_shape_matches():
    from mofgseg_jax.models import build_model
    from mofgseg_jax.train import inference
    from mofgseg_jax.train.stored_config import config_to_dict
    from mofgseg_jax.train.state import init_variables
    from tests.config_helpers import load_config

    trained = load_config("demo", "smoke")
    variables = {"student": init_variables(build_model(trained.model), jax.random.key(0), (1, 64, 64, 3))}
    stored = config_to_dict(trained)
    inference.check_model(trained, variables, "ckpt/4", "--config c.py", stored)  # the run's own: accepted
    spelled_out = load_config("demo", "smoke")
    spelled_out.model.num_heads = (1, 2, 5, 8)  # the b0 preset's heads, which the run's () stands for
    inference.check_model(spelled_out, variables, "ckpt/4", "--config c.py", stored)
    given = load_config("demo", "smoke")
    given.model.num_heads = (1, 1, 1, 1)  # divides every width: the same parameter shapes
    with pytest.raises(InputError, match=r"^--config c.py: builds another model than the checkpoint ckpt/4 holds "
                                         r"\(model.num_heads \(\) in the run, \(1, 1, 1, 1\) given; the parameters"):
        inference.check_model(given, variables, "ckpt/4", "--config c.py", stored)
