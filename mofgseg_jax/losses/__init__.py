"""Losses of the semi-supervised step: supervised CE/OHEM, boundary Dice, pseudo-label CE, weighted
contrastive. Pure jnp, fixed shapes, float32 inside."""

from mofgseg_jax.losses.boundary import dice_loss, edge_targets
from mofgseg_jax.losses.contrastive import weighted_contrastive_loss
from mofgseg_jax.losses.supervised import cross_entropy, ohem_cross_entropy
from mofgseg_jax.losses.unsupervised import pseudo_label_loss

__all__ = ["cross_entropy", "ohem_cross_entropy", "edge_targets", "dice_loss", "pseudo_label_loss",
           "weighted_contrastive_loss"]
