"""python launch/train.py --config configs/pascal.py:semi --workdir runs/pascal_1_8 --config.data.root /data/VOC2012

Pascal VOC 2012 (21 classes, augmented set) with the published MOFGSeg settings (DESIGN.md §5):
MiT-B5, crop 513, 80 epochs, 5 images per GPU x 4 GPUs, lr 0.001, decoder lr x 10, plain
cross-entropy, evaluation on whole images. Splits: 1_16 .. 1_2, 92 .. 1464, u2pl_1_16 ..
Variants: `:semi` (default), `:sup`, `:no_contrast`, `:no_boundary`, `:published_teacher_bn`,
`:smoke`; combine with commas (`:sup,smoke`).
"""

from configs.common import apply_variant, base_config


def get_config(arg=None):
    config = base_config()
    config.model.backbone = "b5"  # the published backbone (mit_b5)
    config.model.num_classes = 21
    config.model.pretrained = ""  # e.g. pretrained/mit_b5 (launch/convert_weights.py); fresh starts only

    config.data.name = "pascal"
    config.data.root = ""  # the raw dataset folder: JPEGImages/, SegmentationClass/
    config.data.split = "1_8"
    config.data.crop_size = 513
    config.data.batch_size_labeled = 20  # global: 5 per GPU x 4 GPUs
    config.data.batch_size_unlabeled = 20  # global: 5 per GPU x 4 GPUs
    # VOC images vary in size (at most 500 x 500), so they are padded to this canvas: unlike the
    # published per-image evaluation, the padding slightly changes the logits (README).
    config.data.eval_pad_size = 512

    config.loss.ohem = False  # published: plain cross-entropy on Pascal

    config.optim.lr = 0.001
    config.optim.lr_multi = 10.0

    config.train.num_epochs = 80
    config.eval.mode = "original"  # the published evaluation of this dataset
    return apply_variant(config, arg)
