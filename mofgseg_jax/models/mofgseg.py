"""The whole MOFGSeg network: MiT encoder, SegFormer head (+ representation), boundary module."""

from typing import Any

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

    backbone: nn.Module  # an unbound MiT (e.g. `mit_b0(...)`); adopted under the name 'backbone'
    num_classes: int
    embed_dim: int = 256
    rep_dim: int = 512
    rep_at_stride4: bool = False
    dropout_rate: float = 0.1
    eam_low_dim: int = 64
    eam_high_dim: int = 256
    eam_mid_dim: int = 256
    conv3x3: str = "auto"  # the boundary module's 3x3 conv algorithm (`models.conv.conv3x3_same`)
    # BatchNorm settings (bn_momentum, bn_eps, bn_axis_name) and the compute dtype: keyword-only,
    # from `BatchNormSettings`, handed down to the decoder and the boundary module.

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False, edge_images: int | None = None,
                 rep_as_features: bool = False) -> dict[str, jnp.ndarray]:
        h, w = images.shape[1:3]
        c1, c2, c3, c4 = self.backbone(images, train)  # a Module field: its params live under 'backbone' 
        bn = self.bn_settings()
        # The representation, or with rep_as_features its head's input: resized alike.
        logits, rep_or_features = SegFormerHead(
            self.num_classes, self.embed_dim, self.rep_dim, self.dropout_rate, name="decode_head", **bn)(
                (c1, c2, c3, c4), train, rep_as_features)
        f32 = jnp.float32
        logits = resize_bilinear(logits.astype(f32), (h, w), align_corners=True)
        if not self.rep_at_stride4:
            rep_or_features = resize_bilinear(rep_or_features.astype(f32), (h, w), align_corners=True)
        out = {"logits": logits, "rep_features" if rep_as_features else "rep": rep_or_features.astype(f32)}
        n = images.shape[0] if edge_images is None else int(edge_images)
        if n:
            # The edge is only supervised on labelled images (DESIGN.md §3 step 5): running the EAM on
            # those alone halves its cost in the semi step, where its two 3x3 256-channel convs at
            # stride 4 are the largest layers of a B0 network. Its BatchNorm then sees those images.
            edge = EAM(self.eam_low_dim, self.eam_high_dim, self.eam_mid_dim, self.conv3x3, name="boundary",
                       **bn)(c1[:n], c4[:n], train)
            out["edge"] = resize_bilinear(jax.nn.sigmoid(edge.astype(f32)), (h, w), align_corners=False)
        return out


def representation_head(params: Any) -> tuple[jnp.ndarray, jnp.ndarray]:
    """(kernel [F, D], bias [D]) of the representation head's 1x1 conv in MOFGSeg `params`."""
    conv = params["decode_head"]["representation"]
    kernel = conv["kernel"]
    return kernel.reshape(kernel.shape[-2], kernel.shape[-1]), conv["bias"]
