"""The shared base of every config: one place that names every knob of DESIGN.md with its default.

Dataset configs (`uavseg.py`, `demo.py`, ...) call `base_config(...)` and then set what differs;
`apply_variant(config, arg)` turns the `:semi` / `:sup` / ablation / `:smoke` argument into settings.
Imports only ml_collections, so configs stay cheap to load.
"""

import ml_collections

VARIANTS = ("semi", "sup", "no_contrast", "no_boundary", "published_teacher_bn", "smoke")


def base_config() -> ml_collections.ConfigDict:
    config = ml_collections.ConfigDict()
    config.seed = 0
    config.dtype = "float32"  # compute dtype of the networks: 'float32' or 'bfloat16' (params stay f32)

    config.model = ml_collections.ConfigDict()
    config.model.backbone = "b0"  # MiT preset b0..b5
    config.model.num_classes = 0  # set by the dataset config
    config.model.pretrained = ""  # folder written by launch/convert_weights.py; used only on a fresh start
    config.model.reinit_classifier = False  # allow a pretrained head with another class count
    config.model.embed_dim = 0  # decoder width; 0 = preset default (256 for b0/b1, 768 otherwise)
    config.model.rep_dim = 512  # representation head width for the contrastive loss
    # Contrastive loss on the stride-4 representation (labels/probs nearest-downsampled to it) instead
    # of rep resized to the full crop (the published code): 16x fewer pixels to sort, gather and store
    # (B0 crop 256, 2+2 images: semi step 5.8 -> 3.1 s CPU time, peak RSS 4.0 -> 2.9 GB; issue 8).
    # False = published behaviour.
    config.model.rep_at_stride4 = True
    config.model.eam_low_dim = 64  # width of the boundary module's 1x1 reduction of c1 (published: 64)
    config.model.eam_high_dim = 256  # width of the boundary module's 1x1 reduction of c4 (published: 256)
    # Width of the boundary module's two 3x3 convs at stride 4 (published: 256). They are most of the
    # supervised step's FLOPs at MiT-B0 (29 + 7 of 47 GFLOP per 2-image step at crop 256); a smaller
    # width makes the module cheaper, at the price of the published architecture (issue 8).
    config.model.eam_mid_dim = 256
    # How those two 3x3 convs are computed (the same function, parameters and checkpoints either way):
    # 'auto' = Winograd F(4x4, 3x3) for float32 on CPU, where XLA's convolution is compute-bound
    # (4x fewer multiply-adds; forward+backward 2.1x faster on a 2-core AVX2 EPYC), XLA's convolution
    # elsewhere; 'winograd' or 'xla' force one (issue 8).
    config.model.conv3x3 = "auto"
    config.model.drop_path_rate = 0.1
    config.model.dropout_rate = 0.1
    config.model.depths = ()  # () = preset; a tuple overrides (tiny models for tests/demo)
    config.model.dims = ()  # () = preset
    # Per-stage MiT attention heads; () = preset (1, 2, 5, 8 in every MiT). Each must divide its dims.
    config.model.num_heads = ()
    config.model.sr_ratios = ()  # per-stage attention spatial-reduction ratios; () = preset (8, 4, 2, 1)
    config.model.mlp_ratio = 0.0  # Mix-FFN hidden width / stage width; 0 = preset (4 in every MiT)
    config.model.block_ln_eps = 1e-6  # eps of the released mit_b*.pth block/stage norms
    config.model.embed_ln_eps = 1e-5  # eps of patch-embedding and spatial-reduction norms
    config.model.bn_momentum = 0.9  # flax convention (= 1 - PyTorch momentum 0.1)
    config.model.bn_eps = 1e-5
    config.model.remat = False  # rematerialise transformer blocks (saves memory on big backbones)
    config.model.dtype = config.get_ref("dtype")

    config.data = ml_collections.ConfigDict()
    config.data.name = ""  # a data_specs/<name>.json entry, or 'custom'
    config.data.root = ""  # raw dataset folder (published layout)
    config.data.split = "1_8"  # labelled fraction: folder of labeled.txt/unlabeled.txt
    config.data.split_dir = ""  # default: <root>/splits/<split>; val.txt is read from its parent
    config.data.source = "folder"  # 'folder' (read files directly) or 'tfds' (built array_record)
    config.data.tfds_dir = ""
    config.data.crop_size = 513
    config.data.batch_size_labeled = 8  # GLOBAL batch (published: 2 per GPU x 4 GPUs)
    config.data.batch_size_unlabeled = 8  # GLOBAL batch
    config.data.eval_batch_size = 1
    # Validation images are padded to this canvas (one compile): an int (square) or (height, width);
    # images of exactly that size run unpadded, as the published evaluation. Padding changes MiT's
    # logits inside the image (global attention), so a dataset of one image size sets that size.
    # Typed `object` so that either form overrides the other, always with '=' (any literal is parsed):
    # --config.data.eval_pad_size=512 or --config.data.eval_pad_size='(620, 2026)'.
    config.data.eval_pad_size = ml_collections.FieldReference(1024, field_type=object)
    config.data.scale_range = (0.5, 2.0)  # host-side random long-side resize
    config.data.num_workers = 0  # grain worker processes (0 = in-process)
    config.data.num_threads = 4  # grain read threads per input stream (train and validation), each process
    config.data.prefetch = 4  # batches those threads read ahead, per stream
    # Per-channel (RGB) normalisation (x - mean) / std of images scaled to [0, 1] (uint8 / 255), in
    # training, evaluation and prediction: ImageNet's, which the pretrained MiT weights expect. The
    # mean is also the colour cutout fills in (0 once normalised).
    config.data.mean = (0.485, 0.456, 0.406)
    config.data.std = (0.229, 0.224, 0.225)
    config.data.use_edge_maps = False  # read precomputed edge maps instead of deriving them
    config.data.edge_dir = ""
    config.data.ignore_index = 255  # must equal the spec's (data_specs/<name>.json): the host pads masks with it
    config.data.class_names = ()  # custom datasets: optional names
    # (data engineer) mirrors model.num_classes so the input pipeline can check mask ids against it
    config.data.num_classes = config.model.get_ref("num_classes")
    config.data.skip_invalid = False  # bad/missing files: skip with a logged warning instead of raising
    config.data.flip_prob = 0.5  # host-side horizontal flip of the labelled and unlabelled views
    # Labelled strong colour view on the host (DESIGN.md §3 step 1), torchvision ColorJitter semantics.
    config.data.strong_view = ml_collections.ConfigDict()
    config.data.strong_view.jitter_prob = 0.8
    config.data.strong_view.brightness = 0.5  # factor U(1 - x, 1 + x)
    config.data.strong_view.contrast = 0.5
    config.data.strong_view.saturation = 0.5
    config.data.strong_view.hue = 0.25  # shift U(-x, x) of a full hue turn
    config.data.strong_view.grayscale_prob = 0.2
    config.data.strong_view.blur_prob = 0.5
    config.data.strong_view.blur_sigma = (0.1, 2.0)

    config.loss = ml_collections.ConfigDict()
    config.loss.supervised_weight = 1.0
    config.loss.unsupervised_weight = 1.0
    config.loss.contrastive_weight = 1.0
    config.loss.boundary_weight = 1.0
    config.loss.dice_smooth = 1.0  # the boundary Dice loss's +1 in numerator and denominator
    # Sigmoid ramp-up exp(-5 (1 - t/T)^2) of the unsupervised and contrastive weights over the first
    # T updates (Laine & Aila 2017); 0 = full weight from the first step, as published.
    config.loss.semi_rampup_steps = 0
    config.loss.ohem = False  # OHEM variant of the supervised loss (the published method: plain CE)
    config.loss.ohem_thresh = 0.7
    config.loss.ohem_min_kept = 100000  # per device: each device's loss keeps at least this many pixels
    config.loss.strong_threshold = 0.97  # confident pseudo-label / hard-anchor threshold
    config.loss.weak_threshold = 0.7  # unlabelled pixels valid for the contrastive loss
    config.loss.num_queries = 256  # anchors per class
    config.loss.num_negatives = 512  # negatives per anchor
    config.loss.temperature = 0.5
    config.loss.negative_weight = 2.0
    # Anchors per iteration of the contrastive loss's chunk loop (speed and memory only, the same
    # loss); 0 = by backend: a 4 MB block of gathered keys on CPU, 256 MB on GPUs and TPUs
    # (`losses.contrastive.default_anchor_chunk`).
    config.loss.contrastive_anchor_chunk = 0
    config.loss.edge_connectivity = 8  # 4 or 8 neighbours define a class boundary
    config.loss.edge_width = 1
    # On-the-fly edge targets count the ignore label (void) as a region of its own, as the published
    # maps do (Canny on every value of the mask file, 255 included: class/void borders are edges);
    # crop padding never makes an edge (the published maps are padded with 0). False: the old rule,
    # ignore is outside every region. Needs the labelled batch's 'inside' map (data pipeline).
    config.loss.edge_ignore_as_region = True

    config.augment = ml_collections.ConfigDict()  # on-device perturbation of the unlabelled view
    config.augment.mix_mode = "cutout"  # 'cutout' | 'cutmix' | 'classmix' | 'none'
    config.augment.mix_area_ratio = 0.5  # cutout/cutmix rectangle's fraction of the crop area, in (0, 1]
    config.augment.classmix_class_ratio = 0.5  # classmix's fraction of the classes present (rounded down), in (0, 1]
    config.augment.scale_range = (0.5, 2.0)
    config.augment.jitter_prob = 0.8
    config.augment.brightness = (0.75, 1.25)
    config.augment.contrast = (0.75, 1.25)
    config.augment.saturation = (0.75, 1.25)
    config.augment.hue = (-0.25, 0.25)
    config.augment.blur_prob = 0.5
    config.augment.blur_sigma = (0.15, 1.15)
    config.augment.blur_kernel_size = 9  # odd; covers +-3.5 sigma at the largest sigma 1.15
    config.augment.flip_prob = 0.5

    config.optim = ml_collections.ConfigDict()
    config.optim.name = "sgd"  # 'sgd' (published) or 'adamw' (decoupled weight decay; the demo's from-scratch choice)
    config.optim.lr = 0.005  # backbone lr
    config.optim.lr_multi = 1.0  # decoder lr = lr * lr_multi
    config.optim.momentum = 0.9
    config.optim.weight_decay = 1e-4  # sgd: coupled (added to the gradient), as torch.optim.SGD; adamw: decoupled
    config.optim.power = 0.9  # poly schedule exponent
    config.optim.warmup_steps = 0  # linear lr warm-up over this many updates (mmseg style); 0 = published
    config.optim.accumulate_steps = 1  # micro-steps per optimiser update (optax.MultiSteps)

    config.ema = ml_collections.ConfigDict()
    config.ema.decay = 0.99  # cap of min(1 - 1/(t+1), decay)
    config.ema.batch_stats = True  # False = published behaviour (teacher BN stats never updated)

    config.train = ml_collections.ConfigDict()
    config.train.mode = "semi"  # 'semi' or 'sup'
    config.train.num_epochs = 240  # one epoch = one pass over the unlabelled split (labelled in 'sup' mode)
    config.train.num_steps = 0  # > 0 overrides num_epochs
    config.train.log_every = 20
    config.train.eval_every = 0  # steps; 0 = once per epoch
    config.train.checkpoint_every = 0  # steps; 0 = at every evaluation
    config.train.keep_checkpoints = 2  # latest N kept, plus the best by mIoU
    config.train.num_predictions_logged = 4  # colourised predictions written to TensorBoard
    # Persistent XLA compilation cache: restarts and resumes load the compiled step instead of
    # compiling it again. 'auto' = $JAX_COMPILATION_CACHE_DIR, else ~/.cache/mofgseg_jax/xla;
    # 'none' = off; or a directory.
    config.train.compilation_cache = "auto"

    config.eval = ml_collections.ConfigDict()
    config.eval.mode = "sliding_window"  # 'original' | 'center_crop' | 'sliding_window'
    config.eval.window_stride_ratio = 2 / 3  # sliding-window stride as a fraction of crop_size

    config.parallel = ml_collections.ConfigDict()
    config.parallel.mode = "shard_map"  # 'shard_map' (default) or 'pmap'
    return config


def apply_variant(config: ml_collections.ConfigDict, arg: str | None) -> ml_collections.ConfigDict:
    """Applies `arg` = comma-separated variant names (e.g. 'sup' or 'semi,smoke')."""
    for name in (arg or "semi").split(","):
        if name not in VARIANTS:
            raise ValueError(f"unknown config variant {name!r}; choose from {', '.join(VARIANTS)}")
        if name == "sup":
            config.train.mode = "sup"
        elif name == "no_contrast":
            config.loss.contrastive_weight = 0.0
        elif name == "no_boundary":
            config.loss.boundary_weight = 0.0
        elif name == "published_teacher_bn":
            config.ema.batch_stats = False
        elif name == "smoke":
            # Seconds on a CPU: a tiny backbone, tiny crops, a handful of steps.
            config.model.depths = (1, 1, 1, 1)
            config.model.dims = (16, 32, 80, 128)  # divisible by the preset's heads (1, 2, 5, 8)
            config.model.embed_dim = 64
            config.model.rep_dim = 32
            config.data.crop_size = 64
            config.data.batch_size_labeled = 2
            config.data.batch_size_unlabeled = 2
            # data.eval_pad_size stays the dataset's: it must hold every validation image.
            config.loss.num_queries = 16
            config.loss.num_negatives = 32
            config.train.num_steps = 4
            config.train.log_every = 2
            config.train.eval_every = 4
            config.eval.mode = "original"
    return config
