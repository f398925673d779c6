"""python launch/train.py --config configs/uavseg.py:semi --workdir runs/uavseg_1_8 --config.data.root /data/uavseg

UAV-SEG (14 fine-grained ocean classes) with the published MOFGSeg settings (DESIGN.md §5):
MiT-B5, crop 513, 240 epochs, 2 images per GPU x 4 GPUs, lr 0.005, lr_multi 1, plain
cross-entropy supervised loss (the full method, train_method.py), evaluation on whole images.
Variants: `:semi` (default), `:sup`, `:no_contrast`, `:no_boundary`, `:published_teacher_bn`,
`:smoke`; combine with commas (`:sup,smoke`). The published supervised baseline trains with OHEM:
`:sup,no_boundary --config.loss.ohem=True`.
"""

from configs.common import apply_variant, base_config


def get_config(arg=None):
    config = base_config()
    config.model.backbone = "b5"  # the published backbone (mit_b5)
    config.model.num_classes = 14
    config.model.pretrained = ""  # e.g. pretrained/mit_b5 (launch/convert_weights.py); fresh starts only

    config.data.name = "uavseg"
    config.data.root = ""  # the raw dataset folder: gt_jpg/{train,val}, label_png/{train,val}
    config.data.split = "1_8"
    config.data.crop_size = 513
    config.data.batch_size_labeled = 8  # global: 2 per GPU x 4 GPUs
    config.data.batch_size_unlabeled = 8  # global: 2 per GPU x 4 GPUs
    # Every validation image fits in 1024 x 1024; their exact size is not recorded here (data_specs):
    # if they all share one, set it as (height, width) so that they run unpadded, as published.
    config.data.eval_pad_size = 1024

    # The published train_method.py trains with plain cross-entropy; its YAML's OHEM criterion
    # (these values) is used by the supervised baseline train_baseline_sup.py only.
    config.loss.ohem = False
    config.loss.ohem_thresh = 0.7
    config.loss.ohem_min_kept = 200000  # per device, as the published per-GPU loss

    config.optim.lr = 0.005
    config.optim.lr_multi = 1.0

    config.train.num_epochs = 240
    config.eval.mode = "original"  # the published evaluation of this dataset
    return apply_variant(config, arg)
