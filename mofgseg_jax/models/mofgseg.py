"""The whole MOFGSeg network: MiT encoder, SegFormer head (+ representation), boundary module."""

from typing import Any, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from mofgseg_jax.models.boundary import EAM
from mofgseg_jax.models.mit import MiT
from mofgseg_jax.models.resize import resize_bilinear
from mofgseg_jax.models.segformer_head import BatchNormSettings, SegFormerHead


class MOFGSeg(BatchNormSettings):
    """images [B,H,W,3] (normalised float) -> dict of float32 outputs at input resolution.

    'logits' [B,H,W,K] and 'rep' [B,H,W,D] resized bilinear align_corners=True (or 'rep' kept at
    [B,ceil(H/4),ceil(W/4),D] with rep_at_stride4); 'edge' [E,H,W,1] = sigmoid(edge logit) resized
    bilinear align_corners=False, for the first E = `edge_images` images (all by default; 0 = no
    'edge' key). Parameter collections: 'backbone', 'decode_head', 'boundary'.

    With `rep_as_features=True`, 'rep_features' [.., F] replaces 'rep': the representation head's
    input at the same size, so that 'rep' = rep_features @ kernel + bias with
    `representation_head(params)` (a 1x1 conv commutes with the bilinear resize, whose weights sum to
    1). The train step hands that factored form to the contrastive loss, which then never forms the
    representation of every pixel.
    """

    backbone: nn.Module  # an unbound MiT (e.g. `MiT(**PRESETS["b0"].encoder())`); adopted as 'backbone'
    num_classes: int
    # The boundary module's widths (`models.boundary.EAM`; published 64, 256, 256: `model.eam_*_dim`).
    eam_low_dim: int
    eam_high_dim: int
    eam_mid_dim: int
    embed_dim: int = 256
    rep_dim: int = 512
    rep_at_stride4: bool = False
    dropout_rate: float = 0.1
    conv3x3: str = "auto"  # the boundary module's 3x3 conv algorithm (`models.conv.conv3x3_same`)
    # BatchNorm settings (bn_momentum, bn_eps, bn_axis_name) and the compute dtype: keyword-only,
    # from `BatchNormSettings`, handed down to the decoder and the boundary module.

    @nn.compact
    def __call__(self, images: jnp.ndarray | Sequence[jnp.ndarray], train: bool = False,
                 edge_images: int | None = None, rep_as_features: bool = False
                 ) -> dict[str, jnp.ndarray] | list[dict[str, jnp.ndarray]]:
        """`images` [B,H,W,3] -> the dict above; or a sequence of such groups (same H, W) -> a list
        of dicts, one per group, as separate calls in that order would give (`edge_images` then
        counts images of the first group; the others get no 'edge').

        Why groups: the backbone (LayerNorm only, so each image is normalised on its own) runs once
        on their concatenation, which is faster than once per group. On a 2-core CPU, MiT-B0 crop
        256: the backbone's forward+backward on 4 images takes 0.95x the time of two calls on 2, and
        the semi step, whose two student forwards are the groups, 0.97-0.98x. The decoder and the
        boundary module run per group: their BatchNorm normalises each group with its own statistics
        and updates the running ones group after group. (In training, the backbone's drop path then
        draws the masks of all groups from one key.)
        """
        grouped = isinstance(images, (list, tuple))
        groups = list(images) if grouped else [images]
        h, w = groups[0].shape[1:3]
        features = self.backbone(jnp.concatenate(groups, axis=0) if grouped else images, train)
        bn = self.bn_settings()
        head = SegFormerHead(self.num_classes, self.embed_dim, self.rep_dim, self.dropout_rate,
                             name="decode_head", **bn)
        eam = EAM(self.eam_low_dim, self.eam_high_dim, self.eam_mid_dim, self.conv3x3, name="boundary", **bn)
        outs, start = [], 0
        for i, group in enumerate(groups):
            size = group.shape[0]
            own = tuple(f[start:start + size] for f in features) if grouped else tuple(features)
            start += size
            n = (size if edge_images is None else int(edge_images)) if i == 0 else 0
            outs.append(self._outputs(head, eam, own, (h, w), train, n, rep_as_features))
        return outs if grouped else outs[0]

    def _outputs(self, head, eam, features, size, train, edge_images, rep_as_features):
        """One group's outputs from its backbone features (see `__call__`)."""
        c1, _, _, c4 = features
        # The representation, or with rep_as_features its head's input: resized alike.
        logits, rep_or_features = head(features, train, rep_as_features)
        f32 = jnp.float32
        logits = resize_bilinear(logits.astype(f32), size, align_corners=True)
        if not self.rep_at_stride4:
            rep_or_features = resize_bilinear(rep_or_features.astype(f32), size, align_corners=True)
        out = {"logits": logits, "rep_features" if rep_as_features else "rep": rep_or_features.astype(f32)}
        if edge_images:
            # The edge is only supervised on labelled images (DESIGN.md §3 step 5): running the EAM on
            # those alone halves its cost in the semi step, where its two 3x3 256-channel convs at
            # stride 4 are the largest layers of a B0 network. Its BatchNorm then sees those images.
            edge = eam(c1[:edge_images], c4[:edge_images], train)
            out["edge"] = resize_bilinear(jax.nn.sigmoid(edge.astype(f32)), size, align_corners=False)
        return out


def representation_head(params: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(kernel [F, D], bias [D]) of the representation head's 1x1 conv in MOFGSeg `params`."""
    conv = params["decode_head"]["representation"]
    kernel = conv["kernel"]
    return kernel.reshape(kernel.shape[-2], kernel.shape[-1]), conv["bias"]
