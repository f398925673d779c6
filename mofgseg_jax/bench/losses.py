"""`python launch/benchmark.py losses`: the losses, jitted, against the published loop code.

Contrastive loss: forward and forward+backward (gradient w.r.t. the representation) jitted time per
call after compile, compile time, XLA's memory analysis of each executable, and the same-input time
of the published ReCo/MOFGSeg loop code (PyTorch, `tests/loss_references.py`), forward and
forward+backward; wall times and process CPU times (the machine may be shared). Also the jitted
time of the supervised (CE, OHEM), unsupervised and boundary losses. Defaults: 4 images of 256x256,
14 classes (all present), 512-d rep, 256 queries, 512 negatives — the published settings scaled to
CPU. The representation is a linear head of 256-d features, as in the model; `contrastive_factored`
times the form the train step uses: the same loss on those features with the head's kernel and bias
(`rep_kernel`, `rep_bias`), gradients to all three.
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import resource
import time
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from mofgseg_jax import cli
from mofgseg_jax.bench.common import time_calls, time_host
from mofgseg_jax.losses import (cross_entropy, dice_loss, edge_targets, ohem_cross_entropy,
                                pseudo_label_loss, weighted_contrastive_loss)

_REFERENCE = Path(__file__).resolve().parents[2] / "tests" / "loss_references.py"


def _parse(argv: list[str]) -> argparse.Namespace:
    p = cli.ArgumentParser(prog="benchmark.py losses", description=__doc__,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--batch", type=int, default=4, help="images (labelled + unlabelled)")
    p.add_argument("--size", type=int, default=256, help="H = W of rep, labels and probs")
    p.add_argument("--classes", type=int, default=14)
    p.add_argument("--rep-dim", type=int, default=512)
    p.add_argument("--feature-dim", type=int, default=256,
                   help="width of the representation head's input (the factored form)")
    p.add_argument("--queries", type=int, default=256)
    p.add_argument("--negatives", type=int, default=512)
    p.add_argument("--rep-dtype", default="float32", choices=("float32", "bfloat16"),
                   help="dtype of the representation fed to the loss (bfloat16 = a mixed-precision model)")
    p.add_argument("--strong-threshold", type=float, default=0.97)
    p.add_argument("--ignore-frac", type=float, default=0.1, help="fraction of ignored pixels")
    p.add_argument("--iters", type=int, default=5, help="timed calls per jitted function")
    p.add_argument("--ref-iters", type=int, default=1, help="timed calls of the loop reference")
    p.add_argument("--ref-threads", type=int, default=0, help="torch threads (0 = torch default)")
    p.add_argument("--skip-reference", action="store_true", help="do not run the loop reference")
    p.add_argument("--skip-other-losses", action="store_true")
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args(argv)


def _inputs(args: argparse.Namespace):
    """Blocky label maps with every class present, half-confident logits, and a representation that
    is a linear head (torch-initialised kernel `[F,D]`, bias) of class-clustered `[N,S,S,F]` features,
    as in the model: `(rep, labels, logits, (features, kernel, bias))`."""
    n, s, k, f, d = args.batch, args.size, args.classes, args.feature_dim, args.rep_dim
    keys = jax.random.split(jax.random.PRNGKey(args.seed), 8)
    block = max(s // 16, 1)
    coarse = jax.random.randint(keys[0], (n, -(-s // block), -(-s // block)), 0, k)
    labels = jnp.repeat(jnp.repeat(coarse, block, 1), block, 2)[:, :s, :s]
    labels = labels.at[:, 0, :k].set(jnp.arange(k))  # every class present
    labels = jnp.where(jax.random.uniform(keys[1], (n, s, s)) < args.ignore_frac, 255, labels)
    centers = jax.random.normal(keys[2], (k, f))
    feats = 0.5 * centers[jnp.clip(labels, 0, k - 1)] + jax.random.normal(keys[3], (n, s, s, f))
    bound = 1.0 / np.sqrt(f)
    kernel = jax.random.uniform(keys[6], (f, d), minval=-bound, maxval=bound)
    bias = jax.random.uniform(keys[7], (d,), minval=-bound, maxval=bound)
    rep = jnp.dot(feats, kernel, precision=jax.lax.Precision.HIGHEST) + bias
    # Logits favour the true class with a random margin: about half of the pixels are confident.
    margin = jax.random.uniform(keys[4], (n, s, s), minval=0.0, maxval=9.0)
    logits = jax.random.normal(keys[5], (n, s, s, k)) + margin[..., None] * jax.nn.one_hot(
        jnp.clip(labels, 0, k - 1), k)
    head = (feats.astype(args.rep_dtype), kernel, bias)
    return rep.astype(args.rep_dtype), labels.astype(jnp.int32), logits.astype(jnp.float32), head


def _memory_mb(compiled) -> dict[str, float]:
    """XLA's buffer assignment: arguments, outputs, temporaries and their total (outputs that reuse a
    donated argument's buffer counted once): what one call holds at its peak."""
    mem = compiled.memory_analysis()
    if mem is None:
        return {}
    parts = {"argument_mb": mem.argument_size_in_bytes, "output_mb": mem.output_size_in_bytes,
             "temp_mb": mem.temp_size_in_bytes, "alias_mb": mem.alias_size_in_bytes}
    parts["total_mb"] = parts["argument_mb"] + parts["output_mb"] + parts["temp_mb"] - parts["alias_mb"]
    return {k: v / 2**20 for k, v in parts.items()}


def _compiled(fn, *args):
    start = time.perf_counter()
    compiled = jax.jit(fn).lower(*args).compile()
    compile_s = time.perf_counter() - start
    return compiled, {"compile_s": compile_s, **_memory_mb(compiled)}


def _cpu_s_per_call(fn, iters: int) -> float:
    """Process CPU time (all threads) per call: on a shared machine, less inflated than wall time
    by other people's load; on an idle one, wall time is at most this."""
    start = time.process_time()
    for _ in range(iters):
        jax.block_until_ready(fn())
    return (time.process_time() - start) / iters


def _timed(fn, args, iters: int) -> dict[str, Any]:
    compiled, info = _compiled(fn, *args)
    timing = time_calls(lambda: compiled(*args), warmup=1, iters=iters)
    timing.pop("compile_s")  # first call of an already compiled executable; reported above
    timing["cpu_s_per_call"] = _cpu_s_per_call(lambda: compiled(*args), iters)
    return {**info, **timing}


def _load_reference():
    if not _REFERENCE.is_file():
        raise FileNotFoundError(f"{_REFERENCE}: loop reference not found (run from a checkout)")
    spec = importlib.util.spec_from_file_location("loss_references", _REFERENCE)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def run(argv: list[str]) -> dict[str, Any]:
    args = _parse(argv)
    rep, labels, logits, (feats, kernel, bias) = _inputs(args)
    probs = jax.nn.softmax(logits, axis=-1)
    key = jax.random.PRNGKey(args.seed + 1)
    kw = dict(num_classes=args.classes, strong_threshold=args.strong_threshold,
              num_queries=args.queries, num_negatives=args.negatives)

    def contrastive(key, rep, labels, probs):
        return weighted_contrastive_loss(key, rep, labels, probs, **kw)

    def contrastive_grad(rep, key, labels, probs):
        return jax.value_and_grad(lambda r: contrastive(key, r, labels, probs)[0])(rep)

    # Compile first (timed), then read the loss from the compiled executable: calling jax.jit
    # before lowering would hit the compile cache and hide the compile time.
    forward = _timed(contrastive, (key, rep, labels, probs), args.iters)
    forward_backward = _timed(contrastive_grad, (rep, key, labels, probs), args.iters)
    # Inside a train step `rep` is an activation that is dead once the loss has run, so its gradient
    # can take its buffer: compile (not run) that variant for the memory the loss really adds.
    donated = jax.jit(contrastive_grad, donate_argnums=0).lower(rep, key, labels, probs).compile()
    forward_backward["memory_rep_donated"] = _memory_mb(donated)
    loss, aux = jax.jit(contrastive)(key, rep, labels, probs)


    def factored(key, feats, kernel, bias, labels, probs):
        return weighted_contrastive_loss(key, feats, labels, probs, rep_kernel=kernel, rep_bias=bias, **kw)[0]

    def factored_grad(feats, kernel, bias, key, labels, probs):
        return jax.value_and_grad(lambda *a: factored(key, *a, labels, probs), argnums=(0, 1, 2))(
            feats, kernel, bias)

    factored_args = (feats, kernel, bias, key, labels, probs)
    factored_result = {"forward": _timed(factored, (key, feats, kernel, bias, labels, probs), args.iters),
                       "forward_backward": _timed(factored_grad, factored_args, args.iters),
                       "loss": float(jax.jit(factored)(key, feats, kernel, bias, labels, probs))}
    result: dict[str, Any] = {
        "sizes": {"batch": args.batch, "size": args.size, "classes": args.classes,
                  "rep_dim": args.rep_dim, "feature_dim": args.feature_dim, "queries": args.queries, "negatives": args.negatives,
                  "rep_dtype": args.rep_dtype},
        "load_average_1m": os.getloadavg()[0],
        "contrastive": {
            "loss": float(loss), "num_present_classes": int(aux["num_present_classes"]),
            "num_valid_classes": int(aux["num_valid_classes"]),
            "forward": forward, "forward_backward": forward_backward,
        },
        "contrastive_factored": factored_result,
    }
    c = result["contrastive"]
    c["peak_host_rss_mb_before_reference"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    if not args.skip_other_losses:
        edges = edge_targets(labels)
        conf = jnp.max(probs, axis=-1)
        pseudo = jnp.where(conf >= 0.7, jnp.argmax(probs, -1), 255).astype(jnp.int32)
        edge_prob = jax.nn.sigmoid(logits[..., :1])
        others = {
            "cross_entropy": (lambda lg, lb: cross_entropy(lg, lb), (logits, labels)),
            "ohem_cross_entropy": (lambda lg, lb: ohem_cross_entropy(lg, lb), (logits, labels)),
            "pseudo_label_loss": (lambda lg, pl, cf: pseudo_label_loss(lg, pl, cf),
                                  (logits, pseudo, conf)),
            "dice_loss": (lambda p, t: dice_loss(p, t), (edge_prob, edges)),
        }
        out = {"edge_targets": _timed(lambda lb: edge_targets(lb), (labels,), args.iters)}
        for name, (fn, fargs) in others.items():
            out[name] = {
                "forward": _timed(fn, fargs, args.iters),
                "forward_backward": _timed(jax.value_and_grad(fn), fargs, args.iters),
            }
        result["other_losses"] = out

    if not args.skip_reference:
        ref = _load_reference()
        import torch

        if args.ref_threads:
            torch.set_num_threads(args.ref_threads)
        np_rep, np_labels, np_probs = np.asarray(rep, np.float32), np.asarray(labels), np.asarray(probs)
        ref_kw = dict(kw, seed=args.seed)
        value = {}
        cpu = time.process_time()
        fwd = time_host(lambda: value.setdefault(
            "loss", ref.reco_loss_ref(np_rep, np_labels, np_probs, **ref_kw)[0]), iters=args.ref_iters)
        fwd["cpu_s_per_call"] = (time.process_time() - cpu) / args.ref_iters
        cpu = time.process_time()
        fwd_bwd = time_host(lambda: ref.reco_loss_ref(np_rep, np_labels, np_probs, with_grad=True,
                                                      **ref_kw), iters=args.ref_iters)
        fwd_bwd["cpu_s_per_call"] = (time.process_time() - cpu) / args.ref_iters
        c["reference"] = {"implementation": "ReCo compute_reco_loss loop (PyTorch CPU)",
                          "torch_threads": torch.get_num_threads(), "loss": value["loss"],
                          "forward": fwd, "forward_backward": fwd_bwd}
        c["speedup_forward"] = fwd["median_s"] / c["forward"]["median_s"]
        c["speedup_forward_backward"] = fwd_bwd["median_s"] / c["forward_backward"]["median_s"]
        c["speedup_forward_cpu_time"] = fwd["cpu_s_per_call"] / c["forward"]["cpu_s_per_call"]
        c["speedup_forward_backward_cpu_time"] = (fwd_bwd["cpu_s_per_call"]
                                                  / c["forward_backward"]["cpu_s_per_call"])
    return result
