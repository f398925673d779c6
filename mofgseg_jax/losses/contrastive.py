"""Weighted regional pixel contrastive loss (ReCo with up-weighted negatives), fixed-shape.

DESIGN.md §3 step 6. Same sampling distribution as the published loop code
(ReCo `compute_reco_loss` + MOFGSeg's negative weight), written without data-dependent shapes:

* one stable sort groups the pixels by class, hard anchors first inside each class, so "a uniform
  valid (or hard) pixel of class c" is `order[start[c] + uniform_below(count[c])]` — no boolean indexing;
* negative classes come from inverse-CDF sampling of softmax(cos(proto_c, proto_k) / temp) over the
  other present classes;
* the anchors of all classes are processed `anchor_chunk` at a time under `lax.map`: each chunk
  gathers its `[chunk, M, D]` negatives (on CPU a few MB, cache-resident; on GPUs and TPUs a class's
  anchors at once, see `default_anchor_chunk`) and uses them twice — for the logits and, in the
  same pass, for the gradient w.r.t. the anchors (a `custom_vjp`: the keys are constants, so that
  gradient only needs the softmax the forward pass has just computed). The negatives are read from
  memory once per forward+backward and never stored;
* when the representation is a linear head's output (`rep_kernel`, `rep_bias`: the train step's
  case), the loss works on the head's input features: for the keys a . (f W + b) = (a W^T) . f + a . b,
  with |f W + b| from the F x F Gram matrix W W^T, and the anchors' terms a W^T, a . b and |a| come
  from their features f_a through W W^T too (`_unit_anchor_terms`). The gathers that dominate the
  loss's time move F-wide rows instead of D-wide ones (256 vs 512 in MOFGSeg), and no [P, D] or
  anchors' [K*Q, D] representation is formed, forward or backward. That pays while F <= D (MiT-B0,
  B1: 256 -> 512); wider features (B2-B5: 768 -> 512) are mapped to the representation instead, the
  keys' without a gradient (one forward matmul) and the anchors' with one, so the gathers move the
  narrower rows.
"""

from __future__ import annotations

import functools
import math
from typing import Any, Sequence

import jax
import jax.numpy as jnp

_EPS = 1e-8  # torch.nn.functional.cosine_similarity's eps
# Gathered keys per chunk of anchors on CPU: fits the last-level cache with room, big enough that the
# per-iteration cost of the loop stays small (2-core CPU, MiT-B0 semi step: C=4 at D=512 was best or
# equal among 1-16; with 256-wide features C=8 beat 4 by ~5% CPU time).
_CPU_BLOCK_BYTES = 4 * 2**20
# On GPUs and TPUs the block is in device memory whatever its size, while every iteration of the
# loop costs kernel launches and a `cond` whose predicate XLA:GPU copies to the host, waiting for
# the stream. Blocks of 256 MB give the published sizes (Q=256, M=512, D<=512) one class's anchors
# per chunk: K iterations (14 at uavseg) instead of the CPU block's 448 (MiT-B0) or 896 (B2-B5).
_ACCELERATOR_BLOCK_BYTES = 256 * 2**20


def default_anchor_chunk(num_negatives: int, key_width: int, backend: str | None = None) -> int:
    """Anchors per chunk whose gathered `[C, M, D]` float32 block fills the backend's block size
    (`backend`: a JAX platform name; default the process's default backend)."""
    cpu = (backend or jax.default_backend()) == "cpu"
    block = _CPU_BLOCK_BYTES if cpu else _ACCELERATOR_BLOCK_BYTES
    return max(block // (num_negatives * key_width * 4), 1)


def _inv_norm(x: jax.Array, eps: float) -> jax.Array:
    """1 / max(||x||, eps) over the last axis, float32, with a finite gradient at x = 0."""
    sq = jnp.sum(jnp.square(x.astype(jnp.float32)), axis=-1)
    return jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _inv_norm_linear(features: jax.Array, kernel: jax.Array, bias: jax.Array, eps: float) -> jax.Array:
    """`_inv_norm(features @ kernel + bias)` without forming that product: |f W + b|^2 =
    f (W W^T) f + 2 f . (W b) + b . b, an F x F Gram matrix instead of an F x D map per row (cheaper
    while F <= D; wider features are formed, see `weighted_contrastive_loss`)."""
    hi = jax.lax.Precision.HIGHEST
    f = features.astype(jnp.float32)
    sq = (jnp.sum(jnp.dot(f, jnp.dot(kernel, kernel.T, precision=hi), precision=hi) * f, axis=-1)
          + 2.0 * jnp.dot(f, jnp.dot(kernel, bias, precision=hi), precision=hi) + jnp.dot(bias, bias))
    return jax.lax.rsqrt(jnp.maximum(sq, eps * eps))


def _uniform_below(key: jax.Array, shape: tuple[int, ...], n: jax.Array) -> jax.Array:
    """int32 uniform in [0, n) for 1 <= n < 2^31 (broadcast to `shape`): the high 32 bits of
    `bits * n` for uniform 32-bit `bits` (Lemire's multiply-shift), bias below n / 2^32.

    Why not `jax.random.randint`: it draws twice the bits and takes three integer remainders, which
    CPUs do not vectorise; for the loss's K*Q*M negatives it cost as much as the rest of the sampling.
    The 64-bit product is assembled from 16-bit halves, so it needs no `jax_enable_x64`.
    """
    bits = jax.random.bits(key, shape, jnp.uint32)
    n = jnp.broadcast_to(n, shape).astype(jnp.uint32)
    bits_hi, bits_lo, n_hi, n_lo = bits >> 16, bits & 0xFFFF, n >> 16, n & 0xFFFF
    cross_hi, cross_lo = bits_hi * n_lo, bits_lo * n_hi  # each < 2^32
    carry = ((bits_lo * n_lo) >> 16) + (cross_hi & 0xFFFF) + (cross_lo & 0xFFFF)  # < 3 * 2^16
    return (bits_hi * n_hi + (cross_hi >> 16) + (cross_lo >> 16) + (carry >> 16)).astype(jnp.int32)


def _chunked_anchor_ce(queries, offsets, pos_logits, keys, key_inv_norm, neg_idx, active, weight,
                       temperature, chunk, with_grad):
    """Per-anchor CE (and what its gradient needs), `chunk` anchors at a time.

    An anchor's negative logit against key row k is `(queries . keys[k] + offset) * key_inv_norm[k]`:
    with `queries` the anchors themselves and offset 0 when `keys` are representation rows, or the
    anchors mapped back through the representation head (`_unit_anchor_terms`) when `keys` are its
    input features. The chunk's `[chunk, M, D]` block of gathered keys is small enough to stay in
    cache, and it is used twice while it is there: for the logits and for
    `sum_m p_m key_inv_norm_m key_m`, which the gradient needs with the softmax the forward pass has
    just computed. So forward+backward reads the keys from memory once.

    Chunks whose anchors are not `active` (their class is absent or has no hard anchor: the caller
    discards their CE) skip all of it and return zeros, so the loss costs what the classes present
    in the batch need, not what all K would.
    """
    num_anchors, d = queries.shape
    m = neg_idx.shape[1]
    hi = jax.lax.Precision.HIGHEST  # keep f32 (no TF32) on GPUs

    def chunk_ce(qa, off, pos, idx):  # [C, D], [C], [C], [C, M]
        # Indices come from the class-sorted pixel order, so in bounds: the gather skips clamping
        # (the gather-and-dot loop alone 5-8% faster on a 2-core AVX2 EPYC).
        block = keys.at[idx].get(mode="promise_in_bounds").astype(jnp.float32)  # [C, M, D] raw keys
        scale = key_inv_norm.at[idx].get(mode="promise_in_bounds")  # [C, M]
        neg = (jnp.einsum("cd,cmd->cm", qa, block, precision=hi) + off[:, None]) * scale
        logits = jnp.concatenate([pos[:, None], weight * neg], axis=1) / temperature
        lse = jax.nn.logsumexp(logits, axis=1)
        ce = lse - logits[:, 0]
        if not with_grad:
            return ce
        p = jnp.exp(logits - lse[:, None])
        p_scaled = p[:, 1:] * scale
        return ce, p[:, 0], jnp.einsum("cm,cmd->cd", p_scaled, block, precision=hi), jnp.sum(p_scaled, axis=1)

    def skipped(qa, off, pos, idx):
        zero = jnp.zeros(pos.shape, jnp.float32)
        return zero if not with_grad else (zero, zero, jnp.zeros(qa.shape, jnp.float32), zero)

    def body(args):
        on, *chunk_args = args
        return jax.lax.cond(on, chunk_ce, skipped, *chunk_args)

    xs = (active.reshape(-1, chunk)[:, 0], queries.reshape(-1, chunk, d), offsets.reshape(-1, chunk),
          pos_logits.reshape(-1, chunk), neg_idx.reshape(-1, chunk, m))
    out = jax.lax.map(body, xs)
    if not with_grad:
        return out.reshape(num_anchors)
    ce, p0, key_sum, key_mass = out
    return ce.reshape(num_anchors), p0.reshape(num_anchors), key_sum.reshape(num_anchors, d), key_mass.reshape(num_anchors)


def _unit_anchor_terms(anchors, protos_n, kernel, bias, kernel_sg, bias_sg, eps):
    """What the logits need of the unit-normalised anchors a/|a|: `(queries, offsets, pos_logits)`.

    `anchors` `[K, Q, D]` are representation rows (no kernel: queries = a/|a|, offsets 0), or `[K, Q, F]`
    features f of the anchor pixels, whose representation is a = f W + b. Then every term stays in
    the F-wide space, through the F x F product W W^T instead of the `[K*Q, D]` anchors:
    queries = a W^T / |a| (dotted with raw key features), offsets = a . b / |a| (the bias of those
    dots), |a|^2 = (f W W^T + b W^T) . f + f . W b + b . b. The key side of each product (the second
    W or b) is a gradient-free constant, as the loss's keys are; |a|^2 = t with t = a . sg(a) and its
    gradient doubled (2t - sg(t)). Why: forming a and mapping it back through W^T (forward, and
    three such matmuls backward) was 4 of the loss's 5 [K*Q, F] x [F, D] matmuls; here forward and
    backward are three [K*Q, F] x [F, F] ones (D = 2F in MOFGSeg: ~3x fewer FLOPs).
    pos_logits = a . proto_c / |a| for anchors of class c (`protos_n` `[K, D]`, unit, constant).
    """
    hi = jax.lax.Precision.HIGHEST
    if kernel is None:
        unit = anchors * _inv_norm(anchors, eps)[..., None]
        pos = jnp.einsum("kqd,kd->kq", unit, protos_n, precision=hi)
        return unit, jnp.zeros(anchors.shape[:-1], jnp.float32), pos
    kernel, bias = jnp.asarray(kernel, jnp.float32), jnp.asarray(bias, jnp.float32)
    queries = (jnp.dot(anchors, jnp.dot(kernel, kernel_sg.T, precision=hi), precision=hi)
               + jnp.dot(kernel_sg, bias, precision=hi))  # a W^T
    offsets = jnp.dot(anchors, jnp.dot(kernel, bias_sg, precision=hi), precision=hi) + jnp.dot(bias, bias_sg)
    pos = (jnp.einsum("kqf,kf->kq", anchors, jnp.dot(protos_n, kernel.T, precision=hi), precision=hi)
           + jnp.dot(protos_n, bias, precision=hi)[:, None])  # a . proto_c
    half = jnp.sum(queries * jax.lax.stop_gradient(anchors), axis=-1) + offsets  # a . sg(a)
    sq = 2.0 * half - jax.lax.stop_gradient(half)
    inv = jax.lax.rsqrt(jnp.maximum(sq, eps * eps))
    return queries * inv[..., None], offsets * inv, pos * inv


@functools.partial(jax.custom_vjp, nondiff_argnums=(7, 8, 9))
def _anchor_ce(queries, offsets, pos_logits, keys, key_inv_norm, neg_idx, active, weight, temperature,
               chunk):
    """CE of each anchor against `[positive | negatives]`, from `_unit_anchor_terms`' three terms
    `[A, D]`, `[A]`, `[A]`; gradient to those terms only.

    Negative k of anchor i has the logit `weight * (queries_i . keys[neg_idx[i, k]] + offsets_i) *
    key_inv_norm[neg_idx[i, k]]`. Anchors not `active` get CE 0 (chunks of `chunk` anchors share one
    flag)."""
    return _chunked_anchor_ce(queries, offsets, pos_logits, keys, key_inv_norm, neg_idx, active, weight,
                              temperature, chunk, with_grad=False)


def _anchor_ce_fwd(queries, offsets, pos_logits, keys, key_inv_norm, neg_idx, active, weight, temperature,
                   chunk):
    ce, p0, key_sum, key_mass = _chunked_anchor_ce(queries, offsets, pos_logits, keys, key_inv_norm, neg_idx,
                                                   active, weight, temperature, chunk, with_grad=True)
    # dCE/dq = w/T sum_m p_m key_m / |key_m|, dCE/doffset = w/T sum_m p_m / |key_m|, dCE/dpos = (p0 - 1)/T.
    scale = weight / temperature
    return ce, (scale * key_sum, scale * key_mass, (p0 - 1.0) / temperature)


def _anchor_ce_bwd(weight, temperature, chunk, grads, g):
    # Keys (their features, norms and indices) are constants of the loss.
    grad_q, grad_off, grad_pos = grads
    return g[:, None] * grad_q, g * grad_off, g * grad_pos, None, None, None, None


_anchor_ce.defvjp(_anchor_ce_fwd, _anchor_ce_bwd)


@jax.custom_vjp
def _gather_rows(parts: tuple[jax.Array, ...], idx: jax.Array, table: jax.Array) -> jax.Array:
    """Rows `idx` of the row-wise concatenation of `parts` (`table`, its gradient-free copy, gives
    the values), with a backward that writes each part's gradient into a buffer of its own.

    Why parts: the train step's representation comes from two student forwards; concatenating them
    for the loss made its backward a split that copied the 2 x 16 MB gradient (~20 ms on CPU).
    Why the zero comes from the cotangent: the plain transpose scatters into a zeros buffer that
    depends on nothing, so XLA may allocate it while the part is still alive; when the caller
    donates (or drops) it, that costs a second rows x D buffer (512 MB at 4 x 256^2 x 512). Deriving
    the zero from the cotangent lets the gradient reuse the part's buffer. It is +0.0 or -0.0 (never
    NaN, whatever the cotangent holds).
    """
    del parts
    return table[idx]


def _gather_rows_fwd(parts, idx, table):
    return table[idx], (idx, tuple(p.shape[0] for p in parts))


def _gather_rows_bwd(res, g):
    idx, sizes = res
    idx, g = idx.reshape(-1), g.reshape(-1, g.shape[-1])
    first = g.reshape(-1)[0]
    zero = jnp.where(first > 0, jnp.zeros((), g.dtype), -jnp.zeros((), g.dtype))
    grads, start = [], 0
    for size in sizes:
        # Rows of other parts go to index `size`, out of bounds, and are dropped.
        local = jnp.where((idx >= start) & (idx < start + size), idx - start, size)
        grads.append(jnp.broadcast_to(zero, (size, g.shape[-1])).at[local].add(g, mode="drop"))
        start += size
    return tuple(grads), None, None  # the table is a gradient-free copy


_gather_rows.defvjp(_gather_rows_fwd, _gather_rows_bwd)


def weighted_contrastive_loss(key: jax.Array, rep: jax.Array | Sequence[jax.Array], labels: jax.Array,
                              probs: jax.Array,
                              *, num_classes: int, strong_threshold: float = 0.97,
                              num_queries: int = 256, num_negatives: int = 512,
                              temperature: float = 0.5, negative_weight: float = 2.0,
                              ignore_index: int = 255, eps: float = _EPS,
                              anchor_chunk: int | None = None, rep_kernel: jax.Array | None = None,
                              rep_bias: jax.Array | None = None
                              ) -> tuple[jax.Array, dict[str, Any]]:
    """Weighted ReCo loss over the valid pixels of a batch.

    For each class c present among the valid pixels: prototype = mean raw representation of its
    valid pixels; hard anchors = its valid pixels with `probs[..., c] < strong_threshold`;
    `num_queries` anchors drawn with replacement from them; for each anchor `num_negatives` keys,
    each from a negative class k drawn with probability softmax_k(cos(proto_c, proto_k) / T) over
    the other present classes, then a uniform valid pixel of k. Logits =
    `[cos(a, proto_c) | negative_weight * cos(a, neg)] / T`, cross-entropy with target 0, mean over
    anchors. Loss = sum over classes with hard anchors / number of present classes; 0 when fewer
    than two classes are present. Keys (prototype included) carry no gradient: the gradient reaches
    `rep` through the anchors only.

    Memory (P = N*H*W pixels, K classes, Q queries, M negatives, C = anchor_chunk): besides `rep`
    and its gradient (P*D each; one buffer when the caller donates `rep`, see `_gather_rows`),
    O(P*K) for the class one-hot of the prototype matmul, O(K*Q*M)
    sampled indices/uniforms (int32/f32), O(K*Q*D) anchors and their gradient, and one `C*M*D`
    block of gathered negatives (by default 4 MB on CPU, at most 256 MB on GPUs and TPUs). Never
    P*K*M or K*Q*M*D at once (about 70 MB of temporaries besides the block at K=14, Q=256, M=512).
    Time is dominated by reading the K*Q*M negative rows (once per forward or forward+backward).
    To use fewer pixels, pass the stride-4 representation (with labels/probs at the same
    resolution). With `rep_kernel`, read F for D in `rep` and its gradient, and min(F, D) for D in
    the gathered block (F > D: plus a P*D key table).

    Args:
      key: PRNG key.
      rep: `[N, H, W, D]` representation (any float dtype; math in float32), or a sequence of
        `[N_i, H, W, D]` parts taken as their concatenation along N (each gets its own gradient).
      labels: `[N, H, W]` int class ids; `ignore_index` (or ids outside [0, num_classes)) = not valid.
      probs: `[N, H, W, K]` student softmax probabilities at the resolution of `rep`.
      num_classes: K (static).
      strong_threshold: anchors are pixels whose own-class probability is below this.
      num_queries: anchors per class (Q). num_negatives: negatives per anchor (M).
      temperature: T. negative_weight: multiplies the negatives' cosine similarities.
      eps: cosine-similarity norm floor (torch's 1e-8).
      anchor_chunk: anchors processed together (C; rounded down to a divisor of num_queries).
        Default (`default_anchor_chunk`): as many as make the gathered block 4 MB on CPU (C=4 at
        M=D=512, C=8 for 256-wide features; the size that measured fastest on the 2-core CI CPU),
        256 MB on GPUs and TPUs (a class's anchors at the published sizes: few loop iterations).
      rep_kernel, rep_bias: `[F, D]` and `[D]`. When given, `rep` holds `[.., F]` features and the
        representation is `rep @ rep_kernel + rep_bias` (a 1x1 conv head): the same loss, computed
        without forming every pixel's representation. Keys are gathered as F-wide features (half
        the bytes at F=256, D=512) and mapped through the kernel in the dot products; the anchors'
        terms carry gradient to features, kernel and bias. Their key side is gradient-free as above.
        Where F > D the keys are formed (gradient-free) and gathered D-wide instead.
    Returns:
      `(loss, aux)`: float32 scalar and `{'num_present_classes', 'num_valid_classes'}` (int32;
      valid = present and with at least one hard anchor).
    """
    k_cls, q, m = num_classes, num_queries, num_negatives
    parts = tuple(jnp.asarray(r) for r in (rep if isinstance(rep, (list, tuple)) else (rep,)))
    labels, probs = jnp.asarray(labels), jnp.asarray(probs)
    d = parts[0].shape[-1]
    parts = tuple(r.reshape(-1, d) for r in parts)
    # Keys (prototypes included) carry no gradient: one gradient-free table of every pixel.
    rep_sg = jax.lax.stop_gradient(parts[0] if len(parts) == 1 else jnp.concatenate(parts))
    factored = rep_kernel is not None
    kernel_sg = bias_sg = None  # the head as constants of the key side
    if factored:
        if rep_bias is None or rep_kernel.shape[0] != d or rep_bias.shape != rep_kernel.shape[1:]:
            raise ValueError(f"rep_kernel {rep_kernel.shape} / rep_bias "
                             f"{None if rep_bias is None else rep_bias.shape} do not map {d} features")
        kernel_sg, bias_sg = (jax.lax.stop_gradient(jnp.asarray(t, jnp.float32)) for t in (rep_kernel, rep_bias))
    num_pixels = rep_sg.shape[0]
    labels = labels.reshape(-1).astype(jnp.int32)
    probs = probs.reshape(num_pixels, -1)
    classes = jnp.arange(k_cls, dtype=jnp.int32)

    valid = (labels != ignore_index) & (labels >= 0) & (labels < k_cls)
    lab = jnp.where(valid, labels, 0)
    own_prob = jnp.take_along_axis(probs, lab[:, None], axis=1)[:, 0].astype(jnp.float32)
    hard = valid & (own_prob < strong_threshold)

    # One stable sort: class c's valid pixels occupy order[start[c] : start[c] + count[c]], its hard
    # ones first. Invalid pixels sort last.
    sort_key = jnp.where(valid, 2 * lab + (~hard).astype(jnp.int32), 2 * k_cls)
    order = jnp.argsort(sort_key, stable=True).astype(jnp.int32)
    onehot = (lab[:, None] == classes[None, :]) & valid[:, None]  # [P, K]
    counts = jnp.sum(onehot, axis=0, dtype=jnp.int32)
    hard_counts = jnp.sum(onehot & hard[:, None], axis=0, dtype=jnp.int32)
    starts = jnp.cumsum(counts) - counts
    present = counts > 0
    num_present = jnp.sum(present, dtype=jnp.int32)
    use_class = present & (hard_counts > 0)

    # Prototypes: mean raw representation (no gradient: they are keys).
    sums = jax.lax.dot_general(onehot.astype(rep_sg.dtype), rep_sg, (((0,), (0,)), ((), ())),
                               precision=jax.lax.Precision.HIGHEST,
                               preferred_element_type=jnp.float32)  # [K, D]
    protos = sums / jnp.maximum(counts, 1)[:, None].astype(jnp.float32)
    if factored:  # the mean representation is the head applied to the mean feature
        protos = jnp.dot(protos, kernel_sg, precision=jax.lax.Precision.HIGHEST) + bias_sg
    protos_n = protos * _inv_norm(protos, eps)[:, None]

    # Negative-class distribution per anchor class: softmax of prototype similarity over the other
    # present classes (ReCo's "semantic class relation graph").
    sim = jnp.sum(protos_n[:, None, :] * protos_n[None, :, :], axis=-1) / temperature  # [K, K]
    allowed = present[None, :] & ~jnp.eye(k_cls, dtype=bool)
    sim = jnp.where(allowed, sim, -jnp.inf)
    row_max = jnp.max(jnp.where(allowed, sim, -1e30), axis=1, keepdims=True)
    weights = jnp.where(allowed, jnp.exp(sim - row_max), 0.0)
    cdf = jnp.cumsum(weights / jnp.maximum(jnp.sum(weights, axis=1, keepdims=True), 1e-30), axis=1)
    last_allowed = jnp.max(jnp.where(allowed, classes[None, :], 0), axis=1)  # [K]

    key_anchor, key_cls, key_pix = jax.random.split(key, 3)
    # Anchors: uniform with replacement among each class's hard pixels.
    anchor_off = _uniform_below(key_anchor, (k_cls, q), jnp.maximum(hard_counts, 1)[:, None])
    anchor_idx = order[jnp.clip(starts[:, None] + anchor_off, 0, num_pixels - 1)]  # [K, Q]
    # Negative classes by inverse CDF (zero-probability classes are never chosen), then a uniform
    # valid pixel of each chosen class.
    u = jax.random.uniform(key_cls, (k_cls, q, m))
    # Index of the first cdf entry above u (cdf rows are non-decreasing). XLA fuses the [K, Q, M, K]
    # comparison into the sum (the loss's temporaries stay below one such int32 array: tested); it
    # is faster on CPU than `searchsorted`'s scan of gathers.
    neg_cls = jnp.sum(cdf[:, None, None, :] <= u[..., None], axis=-1, dtype=jnp.int32)
    neg_cls = jnp.minimum(neg_cls, last_allowed[:, None, None])
    neg_off = _uniform_below(key_pix, (k_cls, q, m), jnp.maximum(counts, 1)[neg_cls])
    neg_idx = order[jnp.clip(starts[neg_cls] + neg_off, 0, num_pixels - 1)]  # [K, Q, M]

    # Anchors keep their gradient; cosine normalisation on the gathered rows only.
    anchors = _gather_rows(parts, anchor_idx, rep_sg).astype(jnp.float32)  # [K, Q, D] (or F)
    keys, kernel, bias = rep_sg, rep_kernel, rep_bias
    if factored and rep_kernel.shape[0] > rep_kernel.shape[1]:
        # Features wider than the representation (MiT-B2..B5: 768 -> 512) are cheaper formed. The
        # keys carry no gradient, so forming them is one forward matmul (F x D per key, less than
        # the Gram form's F x F for their norms), and the chunk loop gathers D-wide rows; only the
        # anchors' representation is formed with a gradient.
        hi = jax.lax.Precision.HIGHEST
        keys = (jnp.dot(rep_sg.astype(jnp.float32), kernel_sg, precision=hi) + bias_sg).astype(rep_sg.dtype)
        anchors = jnp.dot(anchors, jnp.asarray(rep_kernel, jnp.float32), precision=hi) + rep_bias
        kernel = bias = None
    queries, offsets, pos_logits = _unit_anchor_terms(anchors, protos_n, kernel, bias, kernel_sg, bias_sg, eps)
    # [P]: avoids a normalised copy of the keys (and, factored, forming them at all)
    key_inv_norm = _inv_norm(keys, eps) if kernel is None else _inv_norm_linear(keys, kernel_sg, bias_sg, eps)
    if anchor_chunk is None:
        anchor_chunk = default_anchor_chunk(m, keys.shape[-1])
    chunk = math.gcd(q, max(int(anchor_chunk), 1))
    # Only classes that enter the loss are computed (none when fewer than two are present: loss 0).
    active = jnp.repeat(use_class & (num_present >= 2), q)
    per_anchor = _anchor_ce(queries.reshape(k_cls * q, -1), offsets.reshape(-1), pos_logits.reshape(-1), keys,
                            key_inv_norm, neg_idx.reshape(k_cls * q, m), active, negative_weight, temperature,
                            chunk)
    per_class = jnp.mean(per_anchor.reshape(k_cls, q), axis=1)  # [K]
    total = jnp.sum(jnp.where(use_class, per_class, 0.0))
    loss = jnp.where(num_present >= 2, total / jnp.maximum(num_present, 1), 0.0)
    aux = {"num_present_classes": num_present,
           "num_valid_classes": jnp.sum(use_class, dtype=jnp.int32)}
    return loss, aux
