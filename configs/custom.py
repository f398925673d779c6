"""python launch/train.py --config configs/custom.py:semi --workdir runs/mine --config.data.root /data/mine --config.model.num_classes 5

Any dataset in the published raw layout (`gt_jpg/{train,val}/ID.jpg`, `label_png/{train,val}/ID.png`,
masks of class ids with 255 = ignore) plus split lists under `<root>/splits/<split>/` (write them with
`launch/make_splits.py`). Set `data.root` and `model.num_classes`, or `data.class_names` alone
(`--config.data.class_names "('sea','land','sky')"`, shown in TensorBoard; the class count is then
its length). The training recipe is the published UAV-SEG one (MiT-B5, crop 513, plain
cross-entropy as the published train_method.py); override any key from the command line.
Variants: `:semi` (default), `:sup`, `:no_contrast`, `:no_boundary`, `:published_teacher_bn`, `:smoke`.
"""

from configs.common import apply_variant, base_config


def get_config(arg=None):
    config = base_config()
    config.model.backbone = "b5"
    config.model.num_classes = 0  # the number of classes in your masks (ids 0..K-1); 0 = len(data.class_names)
    config.model.pretrained = ""  # e.g. pretrained/mit_b5 (launch/convert_weights.py); fresh starts only

    config.data.name = "custom"
    config.data.root = ""  # required: your dataset folder
    config.data.split = "1_8"
    config.data.class_names = ()  # optional: K names; default 'class_0' ..
    config.data.crop_size = 513
    config.data.batch_size_labeled = 8  # global (2 per GPU x 4 GPUs, as published for UAV-SEG)
    config.data.batch_size_unlabeled = 8
    # An int (square) or (height, width) that holds every validation image; when they all have one
    # size, set exactly that size: they then run unpadded (padding changes MiT's logits).
    config.data.eval_pad_size = 1024

    # The published train_method.py trains with plain cross-entropy; its YAML's OHEM criterion
    # (these values) is used by the supervised baseline train_baseline_sup.py only.
    config.loss.ohem = False
    config.loss.ohem_thresh = 0.7
    config.loss.ohem_min_kept = 200000  # per device, as the published per-GPU loss

    config.optim.lr = 0.005
    config.optim.lr_multi = 1.0

    config.train.num_epochs = 240
    config.eval.mode = "original"
    return apply_variant(config, arg)
