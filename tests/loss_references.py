"""Independent loop references for the losses (NumPy / PyTorch, following the published code).

Written straight from the published code paths, one pixel / one class at a time, so that the
vectorised JAX losses are checked against something that shares none of their tricks. Also used by
`launch/benchmark.py losses` (which loads this file by path) as the timing baseline.

* `cross_entropy_ref`, `ohem_ref` — PyTorch `F.cross_entropy(ignore_index=...)` and U2PL/PSPNet's
  `OhemCrossEntropy2dTensor`, in NumPy loops (float64).
* `edge_targets_ref`, `dice_ref` — a pixel loop over neighbours; DESIGN.md's per-image Dice.
* `edge_targets_void_ref` — the same loop with void (255) a value of its own and crop padding
  outside the image, as the published per-value Canny maps.
* `pseudo_label_ref` — ReCo's `compute_unsupervised_loss` (NaN -> 0 when no pixel has CE > 0).
* `reco_loss_ref` — ReCo's `compute_reco_loss` + `negative_index_sampler` in PyTorch, with
  MOFGSeg's negative weight, seeded by (torch, numpy) generators; gives autograd gradients.
"""

from __future__ import annotations

import numpy as np


# --------------------------------------------------------------------------- supervised
def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    m = x.max()
    return x - m - np.log(np.sum(np.exp(x - m)))


def cross_entropy_ref(logits: np.ndarray, labels: np.ndarray, ignore_index: int = 255) -> float:
    """Mean CE over labelled pixels; logits `[B,H,W,K]`, labels `[B,H,W]`. 0 if none labelled."""
    b, h, w, _ = logits.shape
    total, count = 0.0, 0
    for i in range(b):
        for y in range(h):
            for x in range(w):
                t = int(labels[i, y, x])
                if t == ignore_index:
                    continue
                total += -_log_softmax(logits[i, y, x])[t]
                count += 1
    return total / count if count else 0.0


def ohem_ref(logits: np.ndarray, labels: np.ndarray, thresh: float = 0.7, min_kept: int = 100000,
             ignore_index: int = 255) -> float:
    """U2PL / PSPNet `OhemCrossEntropy2dTensor.forward` (reduction 'mean'), in NumPy."""
    b, h, w, k = logits.shape
    target = labels.reshape(-1).astype(np.int64)
    valid = target != ignore_index
    target = target * valid
    num_valid = int(valid.sum())
    flat = logits.reshape(-1, k).astype(np.float64)
    prob = np.exp(flat - flat.max(1, keepdims=True))
    prob /= prob.sum(1, keepdims=True)
    if min_kept > num_valid:
        pass
    elif num_valid > 0:
        prob = np.where(valid[:, None], prob, 1.0)
        mask_prob = prob[np.arange(len(target)), target]
        threshold = thresh
        if min_kept > 0:
            index = np.argsort(mask_prob, kind="stable")
            threshold_index = index[min(len(index), min_kept) - 1]
            if mask_prob[threshold_index] > thresh:
                threshold = mask_prob[threshold_index]
            kept = mask_prob <= threshold
            target = target * kept
            valid = valid & kept
    labels2 = np.where(valid, target, ignore_index).reshape(b, h, w)
    return cross_entropy_ref(logits, labels2, ignore_index)


# --------------------------------------------------------------------------- boundary
def edge_targets_ref(labels: np.ndarray, ignore_index: int = 255, connectivity: int = 8,
                     width: int = 1) -> np.ndarray:
    """Pixel loop: boundary if a neighbour in the image has a different non-ignored label."""
    b, h, w = labels.shape
    if connectivity == 4:
        nbrs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    else:
        nbrs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]
    edge = np.zeros((b, h, w), np.float32)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                c = labels[i, y, x]
                if c == ignore_index:
                    continue
                for dy, dx in nbrs:
                    yy, xx = y + dy, x + dx
                    if 0 <= yy < h and 0 <= xx < w:
                        o = labels[i, yy, xx]
                        if o != ignore_index and o != c:
                            edge[i, y, x] = 1.0
                            break
    for _ in range(width - 1):  # dilation with the same neighbourhood, then clear ignore
        grown = edge.copy()
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    if labels[i, y, x] == ignore_index:
                        grown[i, y, x] = 0.0
                        continue
                    for dy, dx in nbrs:
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w and edge[i, yy, xx]:
                            grown[i, y, x] = 1.0
                            break
        edge = grown
    return edge


def edge_targets_void_ref(labels: np.ndarray, inside: np.ndarray | None = None, connectivity: int = 8,
                          width: int = 1) -> np.ndarray:
    """Pixel loop, as the published per-value Canny maps: every value is a label (255 too); a pixel
    inside the image is boundary if a neighbour inside the image has a different value. Pixels
    outside it (`inside` 0: crop padding) never are and never make one. Width: dilation inside."""
    b, h, w = labels.shape
    if inside is None:
        inside = np.ones((b, h, w), bool)
    if connectivity == 4:
        nbrs = [(-1, 0), (1, 0), (0, -1), (0, 1)]
    else:
        nbrs = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1) if (dy, dx) != (0, 0)]

    def in_image(i, y, x):
        return 0 <= y < h and 0 <= x < w and bool(inside[i, y, x])

    edge = np.zeros((b, h, w), np.float32)
    for i in range(b):
        for y in range(h):
            for x in range(w):
                if not in_image(i, y, x):
                    continue
                for dy, dx in nbrs:
                    if in_image(i, y + dy, x + dx) and labels[i, y + dy, x + dx] != labels[i, y, x]:
                        edge[i, y, x] = 1.0
                        break
    for _ in range(width - 1):
        grown = edge.copy()
        for i in range(b):
            for y in range(h):
                for x in range(w):
                    if in_image(i, y, x) and any(in_image(i, y + dy, x + dx) and edge[i, y + dy, x + dx]
                                                 for dy, dx in nbrs):
                        grown[i, y, x] = 1.0
        edge = grown
    return edge


def dice_ref(prob: np.ndarray, target: np.ndarray, smooth: float = 1.0) -> float:
    """Per image `1 - (2 sum pt + s) / (sum p^2 + sum t^2 + s)`, mean over the batch."""
    losses = []
    for p, t in zip(prob.astype(np.float64), target.astype(np.float64)):
        losses.append(1.0 - (2.0 * np.sum(p * t) + smooth) / (np.sum(p * p) + np.sum(t * t) + smooth))
    return float(np.mean(losses))


# --------------------------------------------------------------------------- unsupervised
def pseudo_label_ref(logits: np.ndarray, target: np.ndarray, confidence: np.ndarray,
                     strong_threshold: float = 0.97, ignore_index: int = 255) -> float:
    """ReCo `compute_unsupervised_loss` (ignore = -1 there) with NaN -> 0, in NumPy loops."""
    b, h, w, _ = logits.shape
    weighted = []
    for i in range(b):
        n_conf = int(np.sum(confidence[i] >= strong_threshold))
        n_valid = int(np.sum(target[i] != ignore_index))
        for y in range(h):
            for x in range(w):
                t = int(target[i, y, x])
                if t == ignore_index:
                    continue
                ce = -_log_softmax(logits[i, y, x])[t]
                if ce > 0:
                    weighted.append(n_conf / n_valid * ce)
    return float(np.mean(weighted)) if weighted else 0.0


# --------------------------------------------------------------------------- contrastive
def _negative_index_sampler(samp_num, seg_num_list, rng: np.random.RandomState):
    # ReCo's sampler, verbatim apart from the explicit generator.
    negative_index = []
    for i in range(samp_num.shape[0]):
        for j in range(samp_num.shape[1]):
            negative_index += rng.randint(low=sum(seg_num_list[:j]), high=sum(seg_num_list[:j + 1]),
                                          size=int(samp_num[i, j])).tolist()
    return negative_index


def compute_reco_loss(rep, label, mask, prob, strong_threshold=1.0, temp=0.5, num_queries=256,
                      num_negatives=256, negative_weight=1.0, generator=None, rng=None):
    """ReCo's `compute_reco_loss` (rep `[B,D,H,W]`, one-hot label `[B,K,H,W]`, mask `[B,1,H,W]`,
    prob `[B,K,H,W]`), with MOFGSeg's weight on the negative logits. Only change besides: explicit
    generators, so `Categorical(proto_prob).sample(...)` becomes `torch.multinomial(proto_prob,
    ..., replacement=True, generator=...)` (the same distribution)."""
    import torch

    batch_size, num_feat, im_w_, im_h = rep.shape
    num_segments = label.shape[1]
    valid_pixel = label * mask
    rep = rep.permute(0, 2, 3, 1)

    seg_feat_all_list, seg_feat_hard_list, seg_num_list, seg_proto_list = [], [], [], []
    for i in range(num_segments):
        valid_pixel_seg = valid_pixel[:, i]
        if valid_pixel_seg.sum() == 0:
            continue
        prob_seg = prob[:, i, :, :]
        rep_mask_hard = (prob_seg < strong_threshold) * valid_pixel_seg.bool()
        seg_proto_list.append(torch.mean(rep[valid_pixel_seg.bool()], dim=0, keepdim=True))
        seg_feat_all_list.append(rep[valid_pixel_seg.bool()])
        seg_feat_hard_list.append(rep[rep_mask_hard])
        seg_num_list.append(int(valid_pixel_seg.sum().item()))

    if len(seg_num_list) <= 1:
        return torch.tensor(0.0)
    reco_loss = torch.tensor(0.0)
    seg_proto = torch.cat(seg_proto_list)
    valid_seg = len(seg_num_list)
    seg_len = torch.arange(valid_seg)
    for i in range(valid_seg):
        if len(seg_feat_hard_list[i]) > 0:
            seg_hard_idx = torch.randint(len(seg_feat_hard_list[i]), size=(num_queries,),
                                         generator=generator)
            anchor_feat = seg_feat_hard_list[i][seg_hard_idx]
        else:
            continue
        with torch.no_grad():
            seg_mask = torch.cat(([seg_len[i:], seg_len[:i]]))
            proto_sim = torch.cosine_similarity(seg_proto[seg_mask[0]].unsqueeze(0),
                                                seg_proto[seg_mask[1:]], dim=1)
            proto_prob = torch.softmax(proto_sim / temp, dim=0)
            samp_class = torch.multinomial(proto_prob, num_queries * num_negatives, replacement=True,
                                           generator=generator).reshape(num_queries, num_negatives)
            samp_num = torch.stack([(samp_class == c).sum(1) for c in range(len(proto_prob))], dim=1)
            negative_num_list = seg_num_list[i + 1:] + seg_num_list[:i]
            negative_index = _negative_index_sampler(samp_num, negative_num_list, rng)
            negative_feat_all = torch.cat(seg_feat_all_list[i + 1:] + seg_feat_all_list[:i])
            negative_feat = negative_feat_all[negative_index].reshape(num_queries, num_negatives,
                                                                     num_feat)
            positive_feat = seg_proto[i].unsqueeze(0).unsqueeze(0).repeat(num_queries, 1, 1)
            all_feat = torch.cat((positive_feat, negative_feat), dim=1)
        seg_logits = torch.cosine_similarity(anchor_feat.unsqueeze(1), all_feat, dim=2)
        # MOFGSeg: up-weight the negatives' similarities.
        seg_logits = torch.cat([seg_logits[:, :1], negative_weight * seg_logits[:, 1:]], dim=1)
        reco_loss = reco_loss + torch.nn.functional.cross_entropy(
            seg_logits / temp, torch.zeros(num_queries).long())
    return reco_loss / valid_seg


def reco_loss_ref(rep: np.ndarray, labels: np.ndarray, probs: np.ndarray, *, num_classes: int,
                  strong_threshold: float = 0.97, num_queries: int = 256, num_negatives: int = 512,
                  temperature: float = 0.5, negative_weight: float = 2.0, ignore_index: int = 255,
                  seed: int = 0, with_grad: bool = False):
    """Our layout (rep `[N,H,W,D]`, int labels with ignore, probs `[N,H,W,K]`) -> published call.

    Returns `(loss, grad)`: float and (if `with_grad`) d loss / d rep as `[N,H,W,D]` float32.
    """
    import torch

    rep_t = torch.tensor(np.asarray(rep, np.float32)).permute(0, 3, 1, 2).contiguous()
    rep_t.requires_grad_(with_grad)
    lab = np.asarray(labels).astype(np.int64)
    mask = (lab != ignore_index) & (lab >= 0) & (lab < num_classes)
    onehot = np.zeros(lab.shape + (num_classes,), np.float32)
    onehot[mask, lab[mask]] = 1.0
    label_t = torch.tensor(onehot).permute(0, 3, 1, 2)
    mask_t = torch.tensor(mask.astype(np.float32)).unsqueeze(1)  # [B,1,H,W] as in ReCo
    prob_t = torch.tensor(np.asarray(probs, np.float32)).permute(0, 3, 1, 2)
    gen = torch.Generator().manual_seed(seed)
    rng = np.random.RandomState(seed)
    loss = compute_reco_loss(rep_t, label_t, mask_t, prob_t, strong_threshold, temperature,
                             num_queries, num_negatives, negative_weight, gen, rng)
    grad = None
    if with_grad:
        if loss.requires_grad:
            (g,) = torch.autograd.grad(loss, rep_t)
            grad = g.permute(0, 2, 3, 1).numpy()
        else:
            grad = np.zeros(np.shape(rep), np.float32)
    return float(loss.detach()), grad
