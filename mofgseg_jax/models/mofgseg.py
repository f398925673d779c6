"""The whole MOFGSeg network: MiT encoder, SegFormer head (+ representation), boundary module."""

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from mofgseg_jax.models.boundary import EAM
from mofgseg_jax.models.mit import MiT
from mofgseg_jax.models.resize import resize_bilinear
from mofgseg_jax.models.segformer_head import SegFormerHead


class MOFGSeg(nn.Module):
    """images [B,H,W,3] (normalised float) -> dict of float32 outputs at input resolution.

    'logits' [B,H,W,K] and 'rep' [B,H,W,D] resized bilinear align_corners=True (or 'rep' kept at
    [B,ceil(H/4),ceil(W/4),D] with rep_at_stride4); 'edge' [E,H,W,1] = sigmoid(edge logit) resized
    bilinear align_corners=False, for the first E = `edge_images` images (all by default; 0 = no
    'edge' key). Parameter collections: 'backbone', 'decode_head', 'boundary'.
    """

    backbone: nn.Module  # an unbound MiT (e.g. `mit_b0(...)`); adopted under the name 'backbone'
    num_classes: int
    embed_dim: int = 256
    rep_dim: int = 512
    rep_at_stride4: bool = False
    dropout_rate: float = 0.1
    bn_momentum: float = 0.9
    bn_eps: float = 1e-5
    bn_axis_name: str | None = None
    eam_low_dim: int = 64
    eam_high_dim: int = 256
    eam_mid_dim: int = 256
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, images: jnp.ndarray, train: bool = False,
                 edge_images: int | None = None) -> dict[str, jnp.ndarray]:
        h, w = images.shape[1:3]
        c1, c2, c3, c4 = self.backbone(images, train)  # a Module field: its params live under 'backbone' 
        bn = dict(bn_momentum=self.bn_momentum, bn_eps=self.bn_eps, bn_axis_name=self.bn_axis_name,
                  dtype=self.dtype)
        logits, rep = SegFormerHead(self.num_classes, self.embed_dim, self.rep_dim, self.dropout_rate,
                                    name="decode_head", **bn)((c1, c2, c3, c4), train)
        f32 = jnp.float32
        logits = resize_bilinear(logits.astype(f32), (h, w), align_corners=True)
        if not self.rep_at_stride4:
            rep = resize_bilinear(rep.astype(f32), (h, w), align_corners=True)
        out = {"logits": logits, "rep": rep.astype(f32)}
        n = images.shape[0] if edge_images is None else int(edge_images)
        if n:
            # The edge is only supervised on labelled images (DESIGN.md §3 step 5): running the EAM on
            # those alone halves its cost in the semi step, where its two 3x3 256-channel convs at
            # stride 4 are the largest layers of a B0 network. Its BatchNorm then sees those images.
            edge = EAM(self.eam_low_dim, self.eam_high_dim, self.eam_mid_dim, name="boundary", **bn)(
                c1[:n], c4[:n], train)
            out["edge"] = resize_bilinear(jax.nn.sigmoid(edge.astype(f32)), (h, w), align_corners=False)
        return out
