"""The per-device train step of DESIGN.md §3 steps 3–8: (state, batch, rng) -> (state, metrics).

Written like a `pmap` body with axis_name='data' (DESIGN.md §7): each device computes its losses on
its own shard (as PyTorch DDP does), gradients are `pmean`-ed, BatchNorm statistics are synced by the
model's `bn_axis_name='data'`, metrics are `pmean`-ed. `mofgseg_jax.train.parallel` maps it over the
devices (shard_map under jit, or pmap).

Randomness: the step key is fold_in(rng, state.step). Perturbations of the unlabelled view use one
key per sample derived from the sample's *global* index, so the perturbed batch does not depend on
how many devices share it (mix modes that pair a sample with the next one in the batch — cutmix,
classmix — mix within each device's shard, as the published per-GPU batches do, and take a
per-device key). Dropout and the contrastive sampling take per-device keys, as in DDP.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping

import jax
import jax.numpy as jnp
import numpy as np
import optax

from mofgseg_jax.augment.perturb import perturb_unlabeled
from mofgseg_jax.augment.photometric import mean_std, normalize
from mofgseg_jax.errors import InputError, TrainingDivergedError
from mofgseg_jax.losses import boundary as boundary_loss
from mofgseg_jax.losses import supervised
from mofgseg_jax.losses.contrastive import weighted_contrastive_loss
from mofgseg_jax.losses.unsupervised import pseudo_label_loss
from mofgseg_jax.models.mofgseg import representation_head
from mofgseg_jax.train.ema import update_teacher
from mofgseg_jax.train.state import TrainState

AXIS = "data"
# The loss terms (also their metric names) that learn from the unlabelled batch: DESIGN.md §3 step 6's
# sum scales them by the ramp-up weight (`loss.semi_rampup_steps`), after the labelled terms.
UNLABELLED_TERMS = ("unsupervised_loss", "contrastive_loss")
# Mix modes that only look at one sample at a time: perturbed per sample with global-index keys.
PER_SAMPLE_MIX_MODES = ("cutout", "none")

StepFn = Callable[[TrainState, Mapping[str, Any], jax.Array], tuple[TrainState, dict[str, jax.Array]]]


def mean_over_devices(tree: Any) -> Any:
    """`pmean` over the data axis; the identity on one device, where XLA:CPU still copies every
    leaf through a one-participant all-reduce (MiT-B5: ~56 ms per step for the gradients)."""
    if jax.lax.axis_size(AXIS) == 1:
        return tree
    return jax.lax.pmean(tree, AXIS)


def _to_unit(images_u8: jax.Array) -> jax.Array:
    """uint8 [B,H,W,3] -> float32 in [0, 1] (the device side of the uint8 transfer convention)."""
    return images_u8.astype(jnp.float32) / 255.0


def resize_nearest(x: jax.Array, size: tuple[int, int]) -> jax.Array:
    """Nearest resize of [B,H,W,...] to `size`, PyTorch `mode='nearest'` indexing (floor(i·in/out))."""
    h, w = x.shape[1], x.shape[2]
    if (h, w) == tuple(size):
        return x
    rows = np.floor(np.arange(size[0]) * (h / size[0])).astype(np.int32)
    cols = np.floor(np.arange(size[1]) * (w / size[1])).astype(np.int32)
    return x[:, rows][:, :, cols]


def sample_keys(key: jax.Array, first_index: jax.Array, count: int) -> jax.Array:
    """Keys fold_in(key, first_index + i) for i < count: one per sample, by global index."""
    return jax.vmap(lambda i: jax.random.fold_in(key, i))(first_index + jnp.arange(count))


def _perturb(config: Any, key: jax.Array, device_key: jax.Array, images01: jax.Array,
             labels: jax.Array, confidence: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
    """On-device perturbation of the unlabelled batch (DESIGN.md §3 step 4)."""
    aug = config.augment
    kwargs = dict(
        mix_mode=aug.mix_mode, num_classes=config.model.num_classes, ignore_index=config.data.ignore_index,
        mix_area_ratio=float(aug.mix_area_ratio), classmix_class_ratio=float(aug.classmix_class_ratio),
        mean=mean_std(config.data)[0],
        scale_range=tuple(aug.scale_range), jitter_prob=aug.jitter_prob, brightness=tuple(aug.brightness),
        contrast=tuple(aug.contrast), saturation=tuple(aug.saturation), hue=tuple(aug.hue),
        blur_prob=aug.blur_prob, blur_sigma=tuple(aug.blur_sigma), blur_kernel_size=int(aug.blur_kernel_size),
        flip_prob=aug.flip_prob)
    if aug.mix_mode not in PER_SAMPLE_MIX_MODES:
        return perturb_unlabeled(device_key, images01, labels, confidence, **kwargs)
    b = images01.shape[0]
    keys = sample_keys(key, jax.lax.axis_index(AXIS) * b, b)

    def one(args):
        k, img, lab, conf = args
        out = perturb_unlabeled(k, img[None], lab[None], conf[None], **kwargs)
        return jax.tree.map(lambda a: a[0], out)

    # lax.map, not vmap: under vmap the per-image random branches (jitter order, apply
    # probabilities) become selects that compute every branch (see augment/photometric.py); this
    # was ~30 ms of the MiT-B0 semi step on CPU (0.742 -> 0.709 s).
    return jax.lax.map(one, (keys, images01, labels, confidence))


def rampup_weight(update: jax.Array, rampup_steps: int) -> jax.Array:
    """exp(-5 (1 - t/T)^2) for t < T, then 1: the unlabelled losses' weight at update t."""
    t = jnp.clip(update.astype(jnp.float32) / max(rampup_steps, 1), 0.0, 1.0)
    return jnp.exp(-5.0 * jnp.square(1.0 - t))


def wants_inside_map(config: Any) -> bool:
    """Whether the step reads the labelled batch's 'inside' map (1 = image pixel, 0 = crop padding):
    edge targets derived on the fly (no precomputed maps) with `loss.edge_ignore_as_region`."""
    return (bool(config.loss.boundary_weight) and not bool(config.data.get("use_edge_maps", False))
            and bool(config.loss.edge_ignore_as_region))


def check_batch(batch: Mapping[str, Any], semi: bool) -> None:
    """Trace time: a batch of another layout than `make_train_step`'s is one error naming the key,
    not a KeyError or a broadcasting error deep in the model or losses (or, for float images, a
    silently wrong step: it divides by 255). Shapes are per device."""
    def refuse(path: str, x: Any, want: str):
        raise InputError(f"batch{path} must be {want}, got {x.dtype}{list(x.shape)} (per device)")

    labeled = batch["labeled"]
    image = labeled["image"]
    if image.dtype != jnp.uint8 or image.ndim != 4 or image.shape[-1] != 3:
        refuse("['labeled']['image']", image, "uint8 [B, H, W, 3]")
    b, h, w = image.shape[:3]
    for name in ("label", "edge", "inside"):
        x = labeled.get(name)
        if x is not None and (tuple(x.shape) != (b, h, w) or not (jnp.issubdtype(x.dtype, jnp.integer)
                                                                  or x.dtype == jnp.bool_)):
            refuse(f"['labeled'][{name!r}]", x, f"integer [B, H, W] = {[b, h, w]}, as its image")
    if semi:
        if "unlabeled" not in batch:
            raise ValueError("train.mode='semi' needs batch['unlabeled']['image']; use train.mode='sup' "
                             "(config variant ':sup') to train on labelled data only")
        # The two batches share one backbone call and the contrastive loss: one crop size.
        image_u = batch["unlabeled"]["image"]
        if image_u.dtype != jnp.uint8 or image_u.ndim != 4 or tuple(image_u.shape[1:]) != (h, w, 3):
            refuse("['unlabeled']['image']", image_u, f"uint8 [B, {h}, {w}, 3], the labelled crop")


def make_train_step(config: Any, model: Any) -> StepFn:
    """Returns the per-device body (state, batch, rng) -> (state, metrics).

    config: the full config (`train.mode` 'semi' | 'sup', `loss`, `augment`, `optim`, `ema`, `data`).
    model: built with `bn_axis_name='data'` so BatchNorm syncs across devices.
    batch (this device's shard): {'labeled': {'image': uint8[BL,H,W,3], 'label': uint8[BL,H,W],
      optional 'edge': uint8[BL,H,W], optional 'inside': uint8[BL,H,W] (1 = image pixel, 0 = crop
      padding)}, 'unlabeled': {'image': uint8[BU,H,W,3]}} ('unlabeled' unused in 'sup' mode).
      Without 'edge', edge targets come from the label map: with `loss.edge_ignore_as_region` and
      'inside', void (the ignore label inside the image) is a region of its own and padding makes
      no edge; without 'inside' (batches built by hand) the ignore label is outside every region.
    rng: one key, the same on every device.
    metrics: scalars, identical on every device: loss, supervised_loss, boundary_loss,
      unsupervised_loss, contrastive_loss, lr, grad_norm, confident_ratio, contrastive_classes.
    """
    mode = str(config.train.mode)
    if mode not in ("semi", "sup"):
        raise InputError(f"config.train.mode must be 'semi' or 'sup', got {mode!r}")
    semi = mode == "semi"
    lc = config.loss
    ignore = int(config.data.ignore_index)
    num_classes = int(config.model.num_classes)
    k_acc = int(config.optim.accumulate_steps)
    ema_cap = float(config.ema.decay)
    ema_stats = bool(config.ema.batch_stats)
    w_sup, w_bnd = float(lc.supervised_weight), float(lc.boundary_weight)
    w_uns = float(lc.unsupervised_weight) if semi else 0.0
    w_con = float(lc.contrastive_weight) if semi else 0.0
    # Every loss term and its weight: the total is their weighted sum (`total_loss`), so a term is
    # computed in `loss_fn` and weighted here, nowhere else.
    weights = {"supervised_loss": w_sup, "boundary_loss": w_bnd, "unsupervised_loss": w_uns,
               "contrastive_loss": w_con}
    dice_smooth = float(lc.dice_smooth)
    mean, std = mean_std(config.data)
    rampup_steps = int(lc.semi_rampup_steps)
    anchor_chunk = int(lc.get("contrastive_anchor_chunk", 0))
    edge_void = bool(lc.edge_ignore_as_region)
    if anchor_chunk < 0:
        raise InputError(f"config.loss.contrastive_anchor_chunk must be >= 0 (0 = by backend), "
                         f"got {anchor_chunk}")

    def supervised_loss(logits, labels):
        if lc.ohem:
            return supervised.ohem_cross_entropy(logits, labels, thresh=lc.ohem_thresh,
                                                 min_kept=lc.ohem_min_kept, ignore_index=ignore)
        return supervised.cross_entropy(logits, labels, ignore_index=ignore)

    def total_loss(terms: Mapping[str, jax.Array], ramp: Any) -> jax.Array:
        """(sum of the labelled terms) + ramp x (sum of the unlabelled ones), each times its weight."""
        if set(terms) != set(weights):  # trace time: a term without a weight would never be optimised
            raise ValueError(f"loss terms {sorted(terms)} and weighted terms {sorted(weights)} differ")

        def weighted(names):
            return sum(weights[name] * terms[name] for name in names)

        labelled = [name for name in weights if name not in UNLABELLED_TERMS]
        return weighted(labelled) + ramp * weighted(UNLABELLED_TERMS)

    def body(state: TrainState, batch: Mapping[str, Any], rng: jax.Array):
        check_batch(batch, semi)  # trace time
        step_key = jax.random.fold_in(rng, state.step)
        # Two streams: one shared by all devices (per-sample perturbation keys fold in the global
        # sample index), one folded with the device index (dropout, contrastive sampling, cross-sample
        # mixing), as each DDP worker draws its own.
        perturb_key, device_stream = jax.random.split(step_key)
        device_key = jax.random.fold_in(device_stream, jax.lax.axis_index(AXIS))
        dropout_key, contrast_key, mix_key = jax.random.split(device_key, 3)

        labeled = batch["labeled"]
        x_l = _to_unit(labeled["image"])
        y_l = labeled["label"].astype(jnp.int32)
        bl = x_l.shape[0]
        edge_t = None
        if w_bnd:
            if "edge" in labeled:
                edge_t = (labeled["edge"] > 0).astype(jnp.float32)
            else:
                void_region = edge_void and "inside" in labeled  # padding told apart from void
                edge_t = boundary_loss.edge_targets(y_l, ignore_index=ignore, connectivity=lc.edge_connectivity,
                                                    width=lc.edge_width, ignore_is_region=void_region,
                                                    inside=labeled["inside"] if void_region else None)

        aux: dict[str, jax.Array] = {}
        if semi:
            x_u = _to_unit(batch["unlabeled"]["image"])
            teacher_vars = {"params": state.teacher["params"], "batch_stats": state.teacher["batch_stats"]}
            t_logits = model.apply(teacher_vars, normalize(x_u, mean, std), train=False, edge_images=0)["logits"]
            t_prob = jax.nn.softmax(jax.lax.stop_gradient(t_logits).astype(jnp.float32), axis=-1)
            confidence = jnp.max(t_prob, axis=-1)
            pseudo = jnp.argmax(t_prob, axis=-1).astype(jnp.int32)
            aux["confident_ratio"] = jnp.mean((confidence >= lc.strong_threshold).astype(jnp.float32))
            x_s, y_s, c_s = _perturb(config, perturb_key, mix_key, x_u, pseudo, confidence)

        # Scales the unlabelled losses (not the labelled ones) early in training.
        ramp = rampup_weight(state.step // k_acc, rampup_steps) if semi and rampup_steps else 1.0
        if semi:
            aux["semi_weight"] = jnp.asarray(ramp, jnp.float32)

        def student(params, batch_stats, images, key, edge_images):
            out, mutated = model.apply({"params": params, "batch_stats": batch_stats}, images,
                                       train=True, rngs={"dropout": key}, mutable=["batch_stats"],
                                       edge_images=edge_images, rep_as_features=True)
            return out, mutated["batch_stats"]

        def loss_fn(params):
            # Two student forwards, labelled then perturbed unlabelled (DESIGN.md §3 step 5 and the
            # published ReCo loop), not one on their concatenation: BatchNorm normalises each batch
            # with its own statistics, so the strongly perturbed mixed images never shift the
            # labelled batch's normalisation; running statistics are updated by both, in that order.
            # One model call with the two as groups does exactly that, with the backbone (no
            # BatchNorm) run once on all the images, which is faster.
            images = ((normalize(x_l, mean, std), normalize(x_s, mean, std)) if semi
                      else normalize(x_l, mean, std))
            outs, new_stats = student(params, state.batch_stats, images, dropout_key, bl if w_bnd else 0)
            out, out_u = outs if semi else (outs, None)
            # The two forwards' outputs are kept apart (edge: labelled images only): the losses
            # take them separately, so no backward has to split a concatenated gradient.
            zero = jnp.zeros((), jnp.float32)
            terms = {name: zero for name in weights}
            extra = {}
            if w_sup:
                terms["supervised_loss"] = supervised_loss(out["logits"], y_l)
            if w_bnd:
                terms["boundary_loss"] = boundary_loss.dice_loss(out["edge"], edge_t, smooth=dice_smooth)
            if semi and w_uns:
                terms["unsupervised_loss"] = pseudo_label_loss(out_u["logits"], y_s, c_s,
                                                               strong_threshold=lc.strong_threshold,
                                                               ignore_index=ignore)
            if semi and w_con:
                # The loss takes them as one batch, labelled first, in factored form: the head's
                # input features and its kernel (gathered keys half as wide; no [P, 512] forward).
                reps = (out["rep_features"], out_u["rep_features"])
                rep_kernel, rep_bias = representation_head(params)
                size = reps[0].shape[1:3]
                # Unlabelled pixels join only where the teacher is at least weakly confident.
                y_u = jnp.where(c_s >= lc.weak_threshold, y_s, ignore)
                labels_all = resize_nearest(jnp.concatenate([y_l, y_u], axis=0), size)
                # Nearest resize picks pixels, so softmax after it is the same, on 16x fewer pixels.
                logits_all = jnp.concatenate([resize_nearest(jax.lax.stop_gradient(o["logits"]), size)
                                              for o in (out, out_u)], axis=0)
                probs = jax.nn.softmax(logits_all, axis=-1)
                loss_c, aux_c = weighted_contrastive_loss(
                    contrast_key, reps, labels_all, probs, num_classes=num_classes,
                    strong_threshold=lc.strong_threshold, num_queries=lc.num_queries,
                    num_negatives=lc.num_negatives, temperature=lc.temperature,
                    negative_weight=lc.negative_weight, ignore_index=ignore, rep_kernel=rep_kernel,
                    rep_bias=rep_bias, anchor_chunk=anchor_chunk or None)
                terms["contrastive_loss"] = loss_c
                extra["contrastive_classes"] = jnp.asarray(aux_c["num_present_classes"], jnp.float32)
            return total_loss(terms, ramp), ({**terms, **extra}, new_stats)

        (total, (terms, new_stats)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params)
        grads = mean_over_devices(grads)
        updates_before = state.step // k_acc
        new_state = state.apply_gradients(grads=grads, batch_stats=new_stats)

        # EMA after the optimiser update; with accumulation only on the micro-step that updated.
        teacher = update_teacher(state.teacher, new_state.params, new_state.batch_stats, updates_before,
                                 cap=ema_cap, average_batch_stats=ema_stats)
        if k_acc > 1:
            updated = (state.step + 1) % k_acc == 0
            teacher = jax.tree.map(lambda new, old: jnp.where(updated, new, old), teacher, state.teacher)
        new_state = new_state.replace(teacher=teacher)

        metrics = {"loss": total, **terms, **aux,
                   "lr": state.lr_fn(updates_before) if state.lr_fn is not None else jnp.zeros(()),
                   "grad_norm": optax.tree.norm(grads)}
        metrics.setdefault("confident_ratio", jnp.zeros(()))
        metrics.setdefault("contrastive_classes", jnp.zeros(()))
        metrics.setdefault("semi_weight", jnp.zeros(()))
        metrics = mean_over_devices(jax.tree.map(lambda m: jnp.asarray(m, jnp.float32), metrics))
        return new_state, metrics

    return body


def check_finite(metrics: Mapping[str, Any], step: int, *, first_step: int | None = None,
                 last_checkpoint: int | None = None) -> None:
    """Raises `TrainingDivergedError` (a FloatingPointError; one line from the launchers) naming the
    step and the non-finite metrics (host-side, fetched values).

    `metrics` may be means over the steps `first_step..step` (the loop's log window): the message
    names that range, since the first non-finite step can be any of them. `last_checkpoint`: the
    step training can resume from (None: no checkpoint yet)."""
    bad = {k: np.asarray(v).tolist() for k, v in metrics.items() if not np.all(np.isfinite(np.asarray(v)))}
    if not bad:
        return
    window = f" (means over steps {first_step}-{step})" if first_step is not None and first_step < step else ""
    kept = ("no checkpoint was saved" if last_checkpoint is None
            else f"the last checkpoint, step {last_checkpoint}, is kept")
    raise TrainingDivergedError(f"non-finite training metrics at step {step}: {bad}{window}; stopping ({kept}); "
                                "a learning rate too high (optim.lr) is the usual cause")
