"""The mapped train step: device-count independence, pmap = shard_map, EMA, accumulation, compiles, NaN.

A tiny MOFGSeg (one block per stage, 32x32 crops, 3 classes) keeps every compile to seconds; each
mapped step is compiled once per module and shared by the tests that read its results.
"""

import jax
import numpy as np
import pytest

from configs.common import apply_variant, base_config
from mofgseg_jax.errors import InputError
from mofgseg_jax.models import build_model
from mofgseg_jax.train import parallel
from mofgseg_jax.train.state import create_train_state, init_variables
from mofgseg_jax.train.step import AXIS, check_finite, make_train_step, mean_over_devices, wants_inside_map
from tests.loss_references import cross_entropy_ref, dice_ref, edge_targets_ref, edge_targets_void_ref

CROP, CLASSES = 32, 3


@pytest.fixture(scope="module", autouse=True)
def fast_compiles():
    """These tests compare programs with each other, not speed: skip most XLA optimisation passes
    (compiles ~40% faster on 2 CPU cores). Part of the jit cache key, so nothing leaks out."""
    previous = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    yield
    jax.config.update("jax_disable_most_optimizations", previous)


def tiny_config(**overrides):
    c = apply_variant(base_config(), "smoke")
    c.model.num_classes = CLASSES
    c.model.dims = (8, 16, 40, 64)  # divisible by the MiT heads (1, 2, 5, 8)
    c.model.embed_dim = 16
    c.model.rep_dim = 8
    # Deterministic student: the step must not depend on how many devices share the batch.
    c.model.dropout_rate = 0.0
    c.model.drop_path_rate = 0.0
    c.data.crop_size = CROP
    c.train.num_steps = 8
    c.loss.contrastive_weight = 0.0
    c.loss.strong_threshold = 0.3  # a random teacher is never 0.97-confident: keep the unsup loss active
    # Rescale 1 and no mixing: every device shard has the same number of valid pixels, so the
    # mean of per-device losses (DDP) equals the global-batch loss. Jitter/blur/flip stay random.
    c.augment.scale_range = (1.0, 1.0)
    c.augment.mix_mode = "none"
    for key, value in overrides.items():
        section, name = key.split("__")
        c[section][name] = value
    return c


def fake_batch(seed=0, bl=2, bu=2):
    rs = np.random.RandomState(seed)
    label = np.zeros((bl, CROP, CROP), np.uint8)  # blocky masks: real class boundaries, no ignore
    for i in range(bl):
        label[i, :, CROP // 2:] = 1 + i % 2
        label[i, CROP // 3:CROP // 2, : CROP // 3] = 2
    return {"labeled": {"image": rs.randint(0, 256, (bl, CROP, CROP, 3)).astype(np.uint8), "label": label},
            "unlabeled": {"image": rs.randint(0, 256, (bu, CROP, CROP, 3)).astype(np.uint8)}}


def numpy_variables(model, seed=0):
    """The model's initial variables, drawn on the host (no compile of the RNG-heavy `model.init`)."""
    return init_variables(model, jax.random.key(seed), (1, CROP, CROP, 3))


def host_state(config):
    model = build_model(config.model, bn_axis_name="data")
    state = create_train_state(config, model, None, (1, CROP, CROP, 3), variables=numpy_variables(model))
    return model, jax.device_get(state)  # numpy leaves: each placement makes fresh device buffers


def run_steps(par, state, batches, rng):
    """Runs the mapped step; returns host copies of the state after each step and the metrics."""
    states, metrics = [], []
    s = par.put_state(state)
    for b in batches:
        s, m = par.step(s, par.put_batch(b), rng)
        states.append(jax.device_get(par.get_state(s)))
        metrics.append(par.get_metrics(m))
    return states, metrics


def max_abs_diff(a, b):
    return max(float(np.max(np.abs(np.asarray(x, np.float64) - np.asarray(y, np.float64))))
               for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


@pytest.fixture(scope="module")
def semi_two_devices():
    """3 semi steps (contrastive off) on the 2-device shard_map mesh, with a trace counter."""
    config = tiny_config()
    model, state = host_state(config)
    traces = []
    body = make_train_step(config, model)

    def counted(*args):
        traces.append(1)  # runs only while tracing
        return body(*args)

    par = parallel.make_parallel(config, counted, mesh=parallel.make_mesh(jax.devices()[:2]))
    batches = [fake_batch(i) for i in range(3)]
    states, metrics = run_steps(par, state, batches, jax.random.key(7))
    return dict(config=config, model=model, init=state, states=states, metrics=metrics, par=par,
                traces=traces, batches=batches)


def test_one_step_on_two_devices_equals_one_device_over_the_global_batch(semi_two_devices):
    r = semi_two_devices
    one = parallel.make_parallel(r["config"], make_train_step(r["config"], r["model"]),
                                 mesh=parallel.make_mesh(jax.devices()[:1]))
    states, metrics = run_steps(one, r["init"], r["batches"][:1], jax.random.key(7))
    assert max_abs_diff(states[0].params, r["states"][0].params) <= 1e-5
    # BN variance = E[x^2] - E[x]^2 over per-device partial sums: the boundary module's running
    # variance (~1.09) differs by ~2e-5 between the two layouts (rounding; every other BN by ~1e-7).
    assert max_abs_diff(states[0].batch_stats, r["states"][0].batch_stats) <= 5e-5
    assert metrics[0]["unsupervised_loss"] > 0  # the perturbed-unlabelled path really took part
    assert metrics[0]["loss"] == pytest.approx(r["metrics"][0]["loss"], abs=1e-5)


def test_mean_over_devices_averages_shards_and_skips_the_all_reduce_on_one_device():
    P = jax.sharding.PartitionSpec

    def mean_and_program(devices, x):
        mesh = parallel.make_mesh(devices)
        mean = jax.jit(jax.shard_map(lambda v: mean_over_devices({"g": v}), mesh=mesh, in_specs=P(AXIS),
                                     out_specs=P(), check_vma=False))
        x = jax.device_put(x, jax.sharding.NamedSharding(mesh, P(AXIS)))
        return np.asarray(mean(x)["g"]), mean.lower(x).compile().as_text()

    x = np.arange(8.0, dtype=np.float32).reshape(2, 4)
    mean, program = mean_and_program(jax.devices()[:2], x)
    np.testing.assert_allclose(mean, [[2.0, 3.0, 4.0, 5.0]])
    assert "all-reduce" in program
    mean, program = mean_and_program(jax.devices()[:1], x)
    np.testing.assert_array_equal(mean, x)
    assert "all-reduce" not in program


def test_pmap_mode_equals_shard_map_mode(semi_two_devices):
    r = semi_two_devices
    config = tiny_config(parallel__mode="pmap")
    par = parallel.make_parallel(config, make_train_step(config, r["model"]),
                                 mesh=parallel.make_mesh(jax.devices()[:2]))
    states, metrics = run_steps(par, r["init"], r["batches"][:2], jax.random.key(7))
    for i in range(2):
        assert max_abs_diff(states[i].params, r["states"][i].params) <= 1e-6
        assert max_abs_diff(states[i].teacher, r["states"][i].teacher) <= 1e-6
        assert metrics[i]["loss"] == pytest.approx(r["metrics"][i]["loss"], abs=1e-6)


def test_teacher_is_the_hand_computed_ema_of_the_student(semi_two_devices):
    r = semi_two_devices
    cap = r["config"].ema.decay
    ref = jax.tree.map(lambda x: np.asarray(x, np.float64), r["init"].teacher)
    for t, s in enumerate(r["states"]):
        d = min(1 - 1 / (t + 1), cap)
        student = {"params": s.params, "batch_stats": s.batch_stats}
        ref = jax.tree.map(lambda old, new: d * old + (1 - d) * np.asarray(new, np.float64), ref, student)
        assert max_abs_diff(s.teacher, ref) <= 1e-6


def test_teacher_batch_stats_move(semi_two_devices):
    r = semi_two_devices
    assert max_abs_diff(r["states"][-1].teacher["batch_stats"], r["init"].teacher["batch_stats"]) > 1e-4


def test_step_compiles_once_for_a_fixed_shape(semi_two_devices):
    r = semi_two_devices
    assert len(r["traces"]) == 1
    assert r["par"].step._cache_size() == 1


def test_metrics_report_every_loss_lr_and_confidence(semi_two_devices):
    r = semi_two_devices
    m = r["metrics"][0]
    for key in ("loss", "supervised_loss", "boundary_loss", "unsupervised_loss", "contrastive_loss", "lr",
                "grad_norm", "confident_ratio", "contrastive_classes", "semi_weight"):
        assert np.isfinite(m[key]), key
    assert m["lr"] == pytest.approx(r["config"].optim.lr)
    assert r["metrics"][1]["lr"] < m["lr"]  # poly schedule, one update per step
    assert m["confident_ratio"] == pytest.approx(1.0)  # every prob ≥ 1/3 ≥ strong_threshold 0.3
    assert m["semi_weight"] == 1.0  # no ramp-up configured


def test_semi_rampup_scales_only_the_unlabelled_losses():
    config = tiny_config(loss__semi_rampup_steps=4)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:2]))
    _, metrics = run_steps(par, state, [fake_batch(i) for i in range(2)], jax.random.key(7))
    for update, m in enumerate(metrics):
        ramp = np.exp(-5.0 * (1.0 - update / 4) ** 2)  # Laine & Aila's sigmoid-shaped ramp-up
        assert m["semi_weight"] == pytest.approx(ramp, rel=1e-6)
        assert m["unsupervised_loss"] > 0
        expected = m["supervised_loss"] + m["boundary_loss"] + ramp * m["unsupervised_loss"]
        assert m["loss"] == pytest.approx(expected, rel=1e-5)


def test_a_nan_loss_is_visible_in_the_metrics(semi_two_devices):
    r = semi_two_devices
    state = r["init"]
    params = {**state.params, "decode_head": jax.tree.map(lambda x: np.full_like(x, np.nan),
                                                          state.params["decode_head"])}
    _, metrics = run_steps(r["par"], state.replace(params=params), r["batches"][:1], jax.random.key(7))
    assert not np.isfinite(metrics[0]["loss"])
    with pytest.raises(FloatingPointError, match="step 3"):
        check_finite(metrics[0], step=3)
    assert len(r["traces"]) == 1  # same shapes: no recompile


@pytest.fixture(scope="module")
def semi_one_device():
    config = tiny_config(loss__contrastive_weight=1.0)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:1]))
    return par, state


_LABEL = fake_batch(0)["labeled"]["label"]


@pytest.mark.parametrize("part, key, value, message", [
    ("labeled", "image", np.zeros((2, CROP, CROP, 3), np.float32),  # /255 again: silently dark images
     r"batch\['labeled'\]\['image'\] must be uint8 \[B, H, W, 3\], got float32\[2, 32, 32, 3\]"),
    ("labeled", "label", _LABEL[:, :16, :16],
     r"batch\['labeled'\]\['label'\] must be integer \[B, H, W\] = \[2, 32, 32\], as its image, got uint8\[2, 16, 16\]"),
    ("labeled", "label", _LABEL[..., None], r"batch\['labeled'\]\['label'\] must be .* got uint8\[2, 32, 32, 1\]"),
    ("labeled", "label", _LABEL.astype(np.float32), r"batch\['labeled'\]\['label'\] must be integer"),
    ("labeled", "edge", np.zeros((2, 16, 16), np.uint8), r"batch\['labeled'\]\['edge'\] must be integer \[B, H, W\]"),
    ("unlabeled", "image", np.zeros((2, 48, 48, 3), np.uint8),
     r"batch\['unlabeled'\]\['image'\] must be uint8 \[B, 32, 32, 3\], the labelled crop, got uint8\[2, 48, 48, 3\]"),
], ids=["float_image", "label_crop", "label_4d", "float_label", "edge_crop", "unlabeled_crop"])
def test_a_batch_of_another_layout_is_refused_naming_its_key(semi_one_device, part, key, value, message):
    par, state = semi_one_device
    batch = fake_batch(0)
    batch[part] = {**batch[part], key: value}
    with pytest.raises(InputError, match=message):
        par.step(par.put_state(state), par.put_batch(batch), jax.random.key(0))


def test_a_non_finite_window_mean_names_its_steps_and_the_absence_of_a_checkpoint():
    with pytest.raises(FloatingPointError, match=r"at step 20: \{'grad_norm': inf\} \(means over steps 11-20\); "
                                                 r"stopping \(no checkpoint was saved\)"):
        check_finite({"loss": 1.0, "grad_norm": np.inf}, 20, first_step=11, last_checkpoint=None)
    check_finite({"loss": 1.0}, 20, first_step=11)  # finite: no error


def test_a_diverged_run_ends_a_launcher_in_one_line_not_a_traceback(monkeypatch):
    from mofgseg_jax.errors import one_line_errors

    monkeypatch.delenv("MOFGSEG_TRACEBACK", raising=False)
    with pytest.raises(SystemExit, match=r"^error: non-finite training metrics at step 3: \{'loss': nan\}; stopping "
                                         r"\(the last checkpoint, step 2, is kept\); a learning rate too high"):
        with one_line_errors():
            check_finite({"loss": np.nan}, 3, first_step=3, last_checkpoint=2)


@pytest.fixture(scope="module")
def sup_accumulated():
    """'sup' mode, accumulate_steps=2, published teacher BN: 4 micro-steps on 2 devices."""
    config = tiny_config(train__mode="sup", optim__accumulate_steps=2, ema__batch_stats=False)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:2]))
    batches = [{"labeled": fake_batch(i)["labeled"]} for i in range(4)]  # no unlabelled data at all
    states, metrics = run_steps(par, state, batches, jax.random.key(3))
    return dict(config=config, init=state, states=states, metrics=metrics)


def test_accumulation_updates_params_and_teacher_every_second_micro_step(sup_accumulated):
    r = sup_accumulated
    s1, s2, s3, s4 = r["states"]
    assert max_abs_diff(s1.params, r["init"].params) == 0.0
    assert max_abs_diff(s1.teacher["params"], r["init"].teacher["params"]) == 0.0
    assert max_abs_diff(s2.params, r["init"].params) > 0.0
    # First EMA update (t = 0, decay 0) copies the student; the next one waits for micro-step 4.
    assert max_abs_diff(s2.teacher["params"], s2.params) == 0.0
    assert max_abs_diff(s3.teacher["params"], s2.teacher["params"]) == 0.0
    assert max_abs_diff(s4.teacher["params"], s3.teacher["params"]) > 0.0


def test_accumulation_schedule_counts_optimiser_updates(sup_accumulated):
    r = sup_accumulated
    lrs = [m["lr"] for m in r["metrics"]]
    c = r["config"]
    total_updates = c.train.num_steps // c.optim.accumulate_steps
    expected = [c.optim.lr * (1 - (i // 2) / total_updates) ** c.optim.power for i in range(4)]
    np.testing.assert_allclose(lrs, expected, rtol=1e-6)


def test_published_flag_keeps_teacher_batch_stats_at_init(sup_accumulated):
    r = sup_accumulated
    assert max_abs_diff(r["states"][-1].batch_stats, r["init"].batch_stats) > 1e-4  # the student's moved
    assert max_abs_diff(r["states"][-1].teacher["batch_stats"], r["init"].teacher["batch_stats"]) == 0.0


def test_sup_mode_reports_no_unlabelled_losses(sup_accumulated):
    m = sup_accumulated["metrics"][0]
    assert m["unsupervised_loss"] == 0.0 and m["contrastive_loss"] == 0.0
    assert m["supervised_loss"] > 0 and m["boundary_loss"] > 0


@pytest.mark.slow
def test_full_semi_step_with_contrastive_and_stride4_rep_is_finite():
    config = tiny_config(loss__contrastive_weight=1.0, model__rep_at_stride4=True, augment__mix_mode="cutmix",
                         augment__scale_range=(0.5, 2.0), loss__strong_threshold=0.97,
                         loss__weak_threshold=0.0)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:2]))
    _, metrics = run_steps(par, state, [fake_batch(5)], jax.random.key(1))
    m = metrics[0]
    assert all(np.isfinite(v) for v in m.values()), m
    assert m["contrastive_loss"] > 0 and m["contrastive_classes"] >= 2


def test_contrastive_anchor_chunk_reaches_the_loss_and_a_negative_one_is_refused(monkeypatch):
    from mofgseg_jax.train import step as step_module

    chunks = []
    original = step_module.weighted_contrastive_loss

    def recording(*args, **kwargs):
        chunks.append(kwargs.get("anchor_chunk", "absent"))  # runs while the step is traced
        return original(*args, **kwargs)

    monkeypatch.setattr(step_module, "weighted_contrastive_loss", recording)
    for chunk in (0, 4):
        config = tiny_config(loss__contrastive_weight=1.0, loss__contrastive_anchor_chunk=chunk)
        model, state = host_state(config)
        par = parallel.make_parallel(config, make_train_step(config, model),
                                     mesh=parallel.make_mesh(jax.devices()[:1]))
        par.step.lower(par.put_state(state), par.put_batch(fake_batch()), jax.random.key(0))
    assert chunks == [None, 4]  # 0 = the loss's default for the backend
    with pytest.raises(InputError, match="config.loss.contrastive_anchor_chunk must be >= 0"):
        make_train_step(tiny_config(loss__contrastive_anchor_chunk=-1), model)


def void_band_batch():
    """Labelled batch as the pipeline makes it: an object outlined by void (255), crop padding (255,
    'inside' 0) at the bottom/right of sample 0 and, flipped, at the bottom/left of sample 1."""
    label = np.zeros((CROP, CROP), np.uint8)
    label[4:20, 6:22] = 255
    label[6:18, 8:20] = 1
    label[24:, :] = 255
    label[:, 28:] = 255
    inside = np.zeros((CROP, CROP), np.uint8)
    inside[:24, :28] = 1
    labels, insides = np.stack([label, label[:, ::-1]]), np.stack([inside, inside[:, ::-1]])
    image = np.random.RandomState(0).randint(0, 256, (2, CROP, CROP, 3)).astype(np.uint8)
    return {"labeled": {"image": image, "label": labels, "inside": insides}}


def test_edge_targets_in_the_step_count_void_but_not_padding(monkeypatch):
    """The boundary term sees void-as-region targets when the batch carries 'inside', and the old
    targets when it does not (batches built by hand). The Dice loss is replaced by a position-
    weighted sum of its target, so the metric identifies the target map exactly."""
    from mofgseg_jax.losses import boundary

    weights = np.arange(1, 2 * CROP * CROP + 1, dtype=np.float32).reshape(2, CROP, CROP)
    monkeypatch.setattr(boundary, "dice_loss", lambda prob, target, smooth: jax.numpy.sum(target * weights))
    config = tiny_config(train__mode="sup")
    assert config.loss.edge_ignore_as_region and wants_inside_map(config)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:1]))
    batch = void_band_batch()
    old_batch = {"labeled": {k: v for k, v in batch["labeled"].items() if k != "inside"}}
    _, metrics = run_steps(par, state, [batch, old_batch], jax.random.key(0))
    lab, inside = batch["labeled"]["label"], batch["labeled"]["inside"]
    c, w = config.loss.edge_connectivity, config.loss.edge_width
    void = edge_targets_void_ref(lab, inside, c, w)
    old = edge_targets_ref(lab, connectivity=c, width=w)
    assert void.sum() > 0 and old.sum() == 0  # the object touches only void: the old rule sees nothing
    assert metrics[0]["boundary_loss"] == float(np.sum(void * weights))
    assert metrics[1]["boundary_loss"] == float(np.sum(old * weights))


def test_the_step_normalises_with_data_mean_and_std_and_smooths_the_dice_loss_with_loss_dice_smooth():
    """A sup step's losses equal the NumPy losses (Dice with +0.5, cross-entropy) of the same
    network's outputs on images normalised in NumPy with the config's mean and std."""
    mean, std = (0.2, 0.5, 0.8), (0.5, 0.3, 0.1)
    config = tiny_config(train__mode="sup", loss__dice_smooth=0.5, data__mean=mean, data__std=std)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:1]))
    batch = fake_batch(0)
    _, metrics = run_steps(par, state, [batch], jax.random.key(0))
    images, label = batch["labeled"]["image"], batch["labeled"]["label"]
    plain = build_model(config.model)  # no BatchNorm axis: applied outside the mapped step

    def outputs(m, s):  # the student's forward in training mode (no dropout in tiny_config)
        x = jax.numpy.asarray((images / 255.0 - np.array(m)) / np.array(s), jax.numpy.float32)
        out, _ = plain.apply({"params": state.params, "batch_stats": state.batch_stats}, x, train=True,
                             rngs={"dropout": jax.random.key(0)}, mutable=["batch_stats"],
                             edge_images=len(images), rep_as_features=True)
        return np.asarray(out["edge"])[..., 0], np.asarray(out["logits"])

    edge, logits = outputs(mean, std)
    target = edge_targets_ref(label, connectivity=config.loss.edge_connectivity, width=config.loss.edge_width)
    assert metrics[0]["boundary_loss"] == pytest.approx(dice_ref(edge, target, smooth=0.5), abs=1e-5)
    assert metrics[0]["supervised_loss"] == pytest.approx(cross_entropy_ref(logits, label), abs=1e-5)
    # ImageNet's normalisation and the default +1 would give other values.
    _, logits_in = outputs((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    assert abs(metrics[0]["supervised_loss"] - cross_entropy_ref(logits_in, label)) > 1e-3
    assert abs(metrics[0]["boundary_loss"] - dice_ref(edge, target)) > 1e-3


def test_the_inside_map_is_wanted_only_for_void_aware_on_the_fly_edges():
    assert wants_inside_map(tiny_config())
    assert not wants_inside_map(tiny_config(loss__edge_ignore_as_region=False))
    assert not wants_inside_map(tiny_config(data__use_edge_maps=True))
    assert not wants_inside_map(tiny_config(loss__boundary_weight=0.0))


def test_create_train_state_loads_pretrained_into_student_and_teacher():
    config = tiny_config(model__pretrained="/weights/mit_b0", model__reinit_classifier=True)
    model = build_model(config.model, bn_axis_name="data")
    calls = []

    def fake_loader(path, variables, *, reinit_classifier=False):
        calls.append((path, reinit_classifier))
        return {**variables, "params": jax.tree.map(lambda x: x + 1.0, variables["params"])}

    base = numpy_variables(model)
    state = create_train_state(config, model, None, (1, CROP, CROP, 3), variables=base, load_pretrained=fake_loader)
    assert calls == [("/weights/mit_b0", True)]
    expected = jax.tree.map(lambda x: x + 1.0, base["params"])
    assert max_abs_diff(state.params, expected) == 0.0
    assert max_abs_diff(state.teacher["params"], expected) == 0.0
    assert int(state.step) == 0 and state.step.dtype == np.int32


def test_create_train_state_without_run_length_says_what_to_set():
    config = tiny_config(train__num_steps=0)
    model = build_model(config.model, bn_axis_name="data")
    with pytest.raises(ValueError, match="num_steps"):
        create_train_state(config, model, None, (1, CROP, CROP, 3), variables=numpy_variables(model))


def test_labelled_forward_is_not_normalised_with_the_unlabelled_batch():
    """Two student forwards (DESIGN.md §3 step 5, the published loop): with the unlabelled losses
    off, a semi step moves the parameters exactly as a sup step does. One forward on the
    concatenation would normalise the labelled images with the unlabelled batch's statistics."""
    params = {}
    for mode in ("semi", "sup"):
        config = tiny_config(train__mode=mode, loss__unsupervised_weight=0.0)
        model, state = host_state(config)
        par = parallel.make_parallel(config, make_train_step(config, model),
                                     mesh=parallel.make_mesh(jax.devices()[:1]))
        states, _ = run_steps(par, state, [fake_batch(0)], jax.random.key(7))
        params[mode] = states[0].params
    assert max_abs_diff(params["semi"], params["sup"]) <= 1e-6


def test_total_loss_weighs_each_term_and_ramps_up_both_unlabelled_ones(monkeypatch):
    """Every loss is replaced by a constant, so the total identifies how they are combined:
    w_sup S + w_bnd B + ramp (w_uns U + w_con C), ramp = exp(-5 (1 - t/T)^2) of the optimiser
    update t (accumulate_steps=2: micro-steps 0 and 1 are both update 0). The contrastive stand-in
    reports which labels it was given: 1000 x the valid fraction of the first (labelled) half plus
    10^4 x that of the unlabelled half, whose pixels join only at confidence >= weak_threshold
    (1.0 here: none, while every one is above strong_threshold 0.3)."""
    import jax.numpy as jnp

    from mofgseg_jax.losses import boundary, supervised
    from mofgseg_jax.train import step as step_module

    def const(value, x):  # the value, still a function of the model's output
        return value + 0.0 * jnp.sum(x)

    def contrastive(key, reps, labels, probs, **kw):
        valid = (labels != 255).astype(jnp.float32)
        half = labels.shape[0] // 2
        return const(1000.0 * jnp.mean(valid[:half]) + 1e4 * jnp.mean(valid[half:]), reps[0]), {
            "num_present_classes": jnp.int32(2)}

    monkeypatch.setattr(supervised, "cross_entropy", lambda logits, labels, **kw: const(1.0, logits))
    monkeypatch.setattr(boundary, "dice_loss", lambda prob, target, smooth: const(10.0, prob))
    monkeypatch.setattr(step_module, "pseudo_label_loss", lambda logits, *a, **kw: const(100.0, logits))
    monkeypatch.setattr(step_module, "weighted_contrastive_loss", contrastive)
    config = tiny_config(loss__supervised_weight=0.5, loss__boundary_weight=2.0, loss__unsupervised_weight=3.0,
                         loss__contrastive_weight=5.0, loss__semi_rampup_steps=4, loss__weak_threshold=1.0,
                         optim__accumulate_steps=2)
    model, state = host_state(config)
    par = parallel.make_parallel(config, make_train_step(config, model), mesh=parallel.make_mesh(jax.devices()[:1]))
    _, metrics = run_steps(par, state, [fake_batch(i) for i in range(2)], jax.random.key(7))
    ramp = np.exp(-5.0)  # update 0 of 4
    for m in metrics:
        assert m["semi_weight"] == pytest.approx(ramp, rel=1e-6)
        assert m["contrastive_loss"] == 1000.0  # labelled half all valid, unlabelled half none
        assert m["loss"] == pytest.approx(0.5 * 1.0 + 2.0 * 10.0 + ramp * (3.0 * 100.0 + 5.0 * 1000.0), rel=1e-6)
