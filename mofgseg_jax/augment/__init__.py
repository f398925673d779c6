"""On-device perturbations of the unlabelled view (pure jnp, jit-able, fixed shapes).

`perturb.perturb_unlabeled` composes `geometric` (rescale/crop, flip), `mixing` (cutout, cutmix,
classmix) and `photometric` (colour jitter, blur; also `normalize` with ImageNet mean/std).
"""

from mofgseg_jax.augment.perturb import perturb_unlabeled
from mofgseg_jax.augment.photometric import IMAGENET_MEAN, IMAGENET_STD, normalize

__all__ = ["perturb_unlabeled", "normalize", "IMAGENET_MEAN", "IMAGENET_STD"]
