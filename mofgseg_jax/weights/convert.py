"""Name table and layout rules: PyTorch / Hugging Face SegFormer tensors -> MOFGSeg Flax variables.

Step 1 (`canonicalize`): every supported naming is rewritten to one canonical naming, the original
mmseg SegFormer one — `backbone.<mit name>` (`backbone.patch_embed1.proj.weight`,
`backbone.block1.0.attn.kv.weight`, `backbone.norm1.weight`) and `decode_head.<name>`
(`decode_head.linear_c1.proj.weight`, `decode_head.linear_fuse.conv.weight`,
`decode_head.linear_fuse.bn.running_mean`, `decode_head.linear_pred.weight`), plus MOFGSeg's
`decode_head.representation.*` and `boundary.*` (EAM). Sources:
  - released ImageNet `mit_b*.pth` (no prefix; the ImageNet `head.*` is dropped),
  - mmseg-style segmentation checkpoints (`backbone.` / `decode_head.` prefixes),
  - published MOFGSeg checkpoints (`backbone.`, `decoder.decoder.` head with `classifier` and
    `representation`, `decoder.eam.` boundary module),
  - Hugging Face `SegformerModel` / `SegformerForSemanticSegmentation`, current names
    (`segformer.stages.0.blocks.0.attention.q_proj`) and legacy on-disk names
    (`segformer.encoder.block.0.0.attention.self.query`); separate key/value -> `kv` = [key; value].
Step 2 (`to_variables`): the Flax modules carry the same names (`blockI.J` -> `blockI_J`), so each
tensor's path is its dotted name, and its layout follows from its rank:
  Linear (out,in) -> Dense kernel (in,out); Conv2d (O,I/groups,kh,kw) -> (kh,kw,I/groups,O);
  1-D `weight` -> LayerNorm/BatchNorm `scale`; `running_mean`/`running_var` -> batch_stats mean/var.
"""

import re
from typing import Any

import numpy as np

from mofgseg_jax.errors import InputError
from mofgseg_jax.models.mit import PRESETS
from mofgseg_jax.weights.readers import shown

# Backbone renames, applied to names with their `segformer.`/`backbone.` prefix removed: (regex, replacement).
# A stage index is one digit and a block index at most four (in `_MIT_NAME`): no MiT has more, and
# int() refuses a string of over 4,300 digits with a ValueError.
_HF_BACKBONE = [
    # Current Hugging Face names (transformers >= 5).
    (r"^stages\.(\d)\.patch_embeddings\.proj\.", lambda m: f"patch_embed{int(m[1]) + 1}.proj."),
    (r"^stages\.(\d)\.patch_embeddings\.layer_norm\.", lambda m: f"patch_embed{int(m[1]) + 1}.norm."),
    (r"^stages\.(\d)\.blocks\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}."),
    (r"^stages\.(\d)\.layer_norm\.", lambda m: f"norm{int(m[1]) + 1}."),
    # Legacy Hugging Face names (checkpoints on the Hub).
    (r"^encoder\.patch_embeddings\.(\d)\.proj\.", lambda m: f"patch_embed{int(m[1]) + 1}.proj."),
    (r"^encoder\.patch_embeddings\.(\d)\.layer_norm\.", lambda m: f"patch_embed{int(m[1]) + 1}.norm."),
    (r"^encoder\.block\.(\d)\.(\d+)\.", lambda m: f"block{int(m[1]) + 1}.{m[2]}."),
    (r"^encoder\.layer_norm\.(\d)\.", lambda m: f"norm{int(m[1]) + 1}."),
]
# Inside a block (after `blockI.J.`): Hugging Face sub-module names -> original names.
_HF_BLOCK = {
    "layernorm_before.": "norm1.", "layernorm_after.": "norm2.", "layer_norm_1.": "norm1.",
    "layer_norm_2.": "norm2.",
    "attention.q_proj.": "attn.q.", "attention.k_proj.": "attn.k.", "attention.v_proj.": "attn.v.",
    "attention.o_proj.": "attn.proj.", "attention.sequence_reduction.sequence_reduction.": "attn.sr.",
    "attention.sequence_reduction.layer_norm.": "attn.norm.",
    "attention.self.query.": "attn.q.", "attention.self.key.": "attn.k.", "attention.self.value.": "attn.v.",
    "attention.self.sr.": "attn.sr.", "attention.self.layer_norm.": "attn.norm.",
    "attention.output.dense.": "attn.proj.", "mlp.dense1.": "mlp.fc1.", "mlp.dense2.": "mlp.fc2.",
}
# Published MOFGSeg (`ModelBuilder`: backbone + `decoder.decoder` SegFormer head + `decoder.eam`).
_MOFGSEG_BOUNDARY = [
    (r"^block\.0\.block\.0\.", lambda m: "block1.conv."), (r"^block\.0\.block\.1\.", lambda m: "block1.bn."),
    (r"^block\.1\.block\.0\.", lambda m: "block2.conv."), (r"^block\.1\.block\.1\.", lambda m: "block2.bn."),
    (r"^block\.2\.", lambda m: "edge."),
]
_HF_HEAD = [
    (r"^linear_c\.(\d)\.proj\.", lambda m: f"linear_c{int(m[1]) + 1}.proj."),
    (r"^linear_projections\.(\d)\.proj\.", lambda m: f"linear_c{int(m[1]) + 1}.proj."),
    (r"^batch_norm\.", lambda m: "linear_fuse.bn."),
    (r"^linear_fuse\.weight$", lambda m: "linear_fuse.conv.weight"),
    (r"^classifier\.", lambda m: "linear_pred."),
]
# Tensors that exist in sources but not in MOFGSeg: ImageNet classifiers, mmseg's unused conv_seg,
# auxiliary heads, BatchNorm step counters.
_DROP = re.compile(r"(^head\.|^classifier\.|^decode_head\.conv_seg\.|^auxiliary_head\.|num_batches_tracked$)")
_MIT_NAME = re.compile(
    r"^(patch_embed[1-4]\.(proj|norm)|block[1-4]\.\d{1,4}\.(norm1|norm2|attn\.(q|k|v|kv|proj|sr|norm)|"
    r"mlp\.(fc1|fc2|dwconv\.dwconv))|norm[1-4])\.(weight|bias)$")
_BOUNDARY_NAME = re.compile(
    r"^((reduce1|reduce4|block1|block2)\.(conv|bn)|edge)\.(weight|bias|running_mean|running_var)$")
# Dimensions of each kind of tensor, the layouts `_leaf` knows: a weight is a norm's scale (1-D), a
# Linear's (2-D) or a Conv2d's (4-D) kernel; biases and BatchNorm statistics are vectors.
_RANKS = {"weight": (1, 2, 4), "bias": (1,), "running_mean": (1,), "running_var": (1,)}
_HEAD_NAME = re.compile(
    r"^(linear_c[1-4]\.proj|linear_fuse\.conv|linear_fuse\.bn|linear_pred|representation)\."
    r"(weight|bias|running_mean|running_var)$")


def _rename(name: str, rules) -> str:
    for pattern, repl in rules:
        new, n = re.subn(pattern, repl, name)
        if n:
            return new
    return name


def canonical_name(name: str) -> str | None:
    """Canonical (mmseg SegFormer) name of a source tensor, None to drop it, or '' if unknown."""
    for prefix in ("module.", "model."):
        if name.startswith(prefix):
            name = name[len(prefix):]
    if _DROP.search(name):
        return None
    if name.startswith("decoder.eam."):
        rest = _rename(name[len("decoder.eam."):], _MOFGSEG_BOUNDARY)
        return f"boundary.{rest}" if _BOUNDARY_NAME.match(rest) else ""
    if name.startswith("decoder.decoder."):
        name = "decode_head." + name[len("decoder.decoder."):]
    if name.startswith("decode_head."):
        rest = _rename(name[len("decode_head."):], _HF_HEAD)
        return f"decode_head.{rest}" if _HEAD_NAME.match(rest) else ""
    for prefix in ("segformer.", "backbone."):
        if name.startswith(prefix):
            name = name[len(prefix):]
            break
    name = _rename(name, _HF_BACKBONE)
    m = re.match(r"^(block\d+\.\d+\.)(.*)$", name)
    if m:
        for old, new in _HF_BLOCK.items():
            if m[2].startswith(old):
                name = m[1] + new + m[2][len(old):]
                break
    return f"backbone.{name}" if _MIT_NAME.match(name) else ""


def canonicalize(state: dict[str, np.ndarray], source: str = "checkpoint") -> dict[str, np.ndarray]:
    """{source name: array} -> {canonical name: float32 array}; key/value merged into `kv`.

    Raises InputError naming `source` (and the tensor) for tensors it does not recognise, whose
    shape does not fit their name, or that another tensor's name maps to as well (one would be lost).
    """
    out: dict[str, np.ndarray] = {}
    names: dict[str, str] = {}  # canonical -> source name, for messages
    unknown = []
    for name, value in state.items():
        new = canonical_name(name)
        if new is None:
            continue
        if not new:
            unknown.append(name)
            continue
        if new in names:
            raise InputError(f"{source}: tensors {shown(names[new])} and {shown(name)} are both {new}; keep one")
        kind = new.rsplit(".", 1)[1]
        if np.ndim(value) not in _RANKS[kind]:
            raise InputError(f"{source}: tensor {shown(name)} has shape {np.shape(value)}; a {kind} is "
                             f"{' or '.join(f'{n}-D' for n in _RANKS[kind])}")
        with np.errstate(over="ignore"):  # a float64 beyond float32's range: refused just below
            out[new], names[new] = np.asarray(value, dtype=np.float32), name
        if not np.isfinite(out[new]).all():  # training from it would be NaN from the first step
            raise InputError(f"{source}: tensor {shown(name)} holds values that are inf or NaN in float32")
    if unknown:
        more = f" (+{len(unknown) - 5} more)" if len(unknown) > 5 else ""
        raise InputError(f"{source}: not MiT/SegFormer tensors: {', '.join(map(shown, unknown[:5]))}{more}")
    for key in [k for k in out if ".attn.k." in k]:
        v_key = key.replace(".attn.k.", ".attn.v.")
        if v_key not in out:
            raise InputError(f"{source}: {shown(names[key])} has no matching value tensor ({v_key})")
        if out[key].shape != out[v_key].shape:
            raise InputError(f"{source}: key {shown(names[key])} has shape {out[key].shape} but value "
                             f"{shown(names[v_key])} has {out[v_key].shape}; they must match")
        kv_key = key.replace(".attn.k.", ".attn.kv.")
        if kv_key in out:
            raise InputError(f"{source}: tensors {shown(names[kv_key])} and {shown(names[key])} (with its value) "
                             f"are both {kv_key}; keep one")
        out[kv_key] = np.concatenate([out.pop(key), out.pop(v_key)], axis=0)
    if not any(k.startswith("backbone.") for k in out):
        raise InputError(f"{source}: no MiT backbone tensors found")
    return out


def _leaf(name: str, value: np.ndarray) -> tuple[str, str, np.ndarray]:
    """(collection, leaf name, Flax-layout array) for one canonical tensor."""
    kind = name.rsplit(".", 1)[1]
    if kind == "running_mean":
        return "batch_stats", "mean", value
    if kind == "running_var":
        return "batch_stats", "var", value
    if kind == "bias":
        return "params", "bias", value
    if value.ndim == 4:  # Conv2d (O, I/groups, kh, kw) -> (kh, kw, I/groups, O)
        return "params", "kernel", value.transpose(2, 3, 1, 0)
    if value.ndim == 2:  # Linear (out, in) -> (in, out)
        return "params", "kernel", value.T
    return "params", "scale", value  # LayerNorm / BatchNorm weight


def to_variables(canonical: dict[str, np.ndarray]) -> dict[str, Any]:
    """Canonical tensors -> nested {'params': ..., 'batch_stats': ...} in the MOFGSeg module tree."""
    variables: dict[str, Any] = {"params": {}, "batch_stats": {}}
    for name, value in canonical.items():
        collection, leaf, array = _leaf(name, value)
        # `block1.0.attn.q` -> block1_0 / attn / q ; module path = all parts but the tensor kind.
        parts = re.sub(r"\b(block\d+)\.(\d+)\b", r"\1_\2", name).split(".")[:-1]
        node = variables[collection]
        for part in parts:
            node = node.setdefault(part, {})
        node[leaf] = np.ascontiguousarray(array)
    return variables


def describe(canonical: dict[str, np.ndarray]) -> dict[str, Any]:
    """What the tensors are: dims, depths, matching preset (or 'custom'), head widths if present.
    Attention head counts leave no trace in the tensors' shapes: the model's config gives them."""
    dims = [int(canonical[f"backbone.patch_embed{i}.proj.weight"].shape[0])
            for i in range(1, 5) if f"backbone.patch_embed{i}.proj.weight" in canonical]
    depths = []
    for i in range(1, 5):
        idx = {int(m[1]) for k in canonical for m in [re.match(rf"backbone\.block{i}\.(\d+)\.", k)] if m}
        depths.append(max(idx) + 1 if idx else 0)
    preset = next((n for n, p in PRESETS.items() if list(p.dims) == dims and list(p.depths) == depths), "custom")
    info: dict[str, Any] = {"preset": preset, "dims": dims, "depths": depths, "has_head": False}
    if "decode_head.linear_c1.proj.weight" in canonical:
        info["has_head"] = True
        info["embed_dim"] = int(canonical["decode_head.linear_c1.proj.weight"].shape[0])
    if "decode_head.linear_pred.weight" in canonical:
        info["num_classes"] = int(canonical["decode_head.linear_pred.weight"].shape[0])
    if "decode_head.representation.weight" in canonical:
        info["rep_dim"] = int(canonical["decode_head.representation.weight"].shape[0])
    info["has_boundary"] = any(k.startswith("boundary.") for k in canonical)
    for key, tensor in (("eam_low_dim", "reduce1"), ("eam_high_dim", "reduce4"), ("eam_mid_dim", "block2")):
        if f"boundary.{tensor}.conv.weight" in canonical:
            info[key] = int(canonical[f"boundary.{tensor}.conv.weight"].shape[0])
    return info
