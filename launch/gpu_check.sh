#!/usr/bin/env bash
# GPU check of the train step (issue 8): MiT-B0 and MiT-B5, crop 513, the published per-device batch
# (2 labelled + 2 unlabelled images per GPU, uavseg), float32 and bfloat16; prints one JSON per run.
#
#   bash launch/gpu_check.sh                  # installs jax[cuda12]==0.10.2 from PyPI, then benchmarks
#   WHEELS=/path/to/wheels bash launch/gpu_check.sh   # offline: pip --no-index --find-links $WHEELS
#   SKIP_INSTALL=1 bash launch/gpu_check.sh   # the current python already has CUDA jax
#   OUT=results/ bash launch/gpu_check.sh     # also writes each JSON to $OUT/step_<backbone>_<dtype>_<mode>.json
#   RUNS="b5:bfloat16:semi b5:float32:sup" bash launch/gpu_check.sh   # just these, in this order
#   BACKBONES="b0 b5" DTYPES="float32 bfloat16" MODES="sup semi" bash launch/gpu_check.sh   # the defaults
#   XLA_FLAGS=--xla_gpu_autotune_level=0 bash launch/gpu_check.sh   # no GPU autotuning (each JSON
#                                             # records its `xla_flags`)
#   COMPARE="loss.contrastive_anchor_chunk=8" bash launch/gpu_check.sh   # each run also builds and
#                                             # times the step with these overrides, in the same process
#                                             # (`step --compare`; space-separated sets, one compile each)
#   DRY_RUN=1 bash launch/gpu_check.sh        # list the runs, run nothing
#
# Each (backbone, dtype, mode) is its own process whose JSON is printed and written as soon as it
# finishes, in RUNS order (by default B0 before B5 and `sup` before `semi`), so a check cut short by
# a time limit keeps every run it completed.
# When the python has a CUDA build of torch and transformers, each run also times the Hugging Face
# SegFormer reference on the same GPU (`--hf-device cuda`: TF32 for f32, bf16 autocast for bf16), so
# the JSON carries the same ratios as the CPU table; without them the reference is skipped.
# Compiling dominates (measured on an H200): B0 `sup` 33-46 s, B0 `semi` 140-170 s, B5 `sup` 177-179 s,
# B5 `semi` 317 s; turning XLA's autotuning off did not shorten the B5 ones. The timed steps take
# seconds. All eight runs take about 25 minutes; RUNS picks a part of them.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

if [[ -z "${RUNS:-}" ]]; then
  RUNS=""
  for backbone in ${BACKBONES:-b0 b5}; do
    for dtype in ${DTYPES:-float32 bfloat16}; do
      modes=${MODES:-sup semi}
      for mode in ${modes//,/ }; do RUNS+=" $backbone:$dtype:$mode"; done
    done
  done
fi
for run in $RUNS; do
  if [[ ! "$run" =~ ^b[0-5]:(float32|bfloat16):(sup|semi|segformer)$ ]]; then
    echo "gpu_check.sh: RUNS entry '$run' is not backbone:dtype:mode (e.g. b5:bfloat16:semi)" >&2
    exit 2
  fi
done
if [[ -n "${DRY_RUN:-}" ]]; then
  for run in $RUNS; do echo "$run"; done
  exit 0
fi

if [[ -z "${SKIP_INSTALL:-}" ]]; then
  if [[ -n "${WHEELS:-}" ]]; then PIP_SRC=(--no-index --find-links "$WHEELS"); else PIP_SRC=(); fi
  "$PY" -m pip install -q "${PIP_SRC[@]}" "jax[cuda12]==0.10.2" -r requirements.txt
fi

"$PY" - <<'PYEOF'
import jax
d = jax.devices()
print(f"# jax {jax.__version__}: {len(d)} x {d[0].device_kind} ({d[0].platform})", flush=True)
assert d[0].platform == "gpu", "no GPU visible to jax: check the CUDA wheel install (jax[cuda12])"
PYEOF
NDEV=$("$PY" -c "import jax; print(jax.device_count())")
PER_DEVICE_L=${PER_DEVICE_L:-2}
PER_DEVICE_U=${PER_DEVICE_U:-2}
CROP=${CROP:-513}
ITERS=${ITERS:-10}
if [[ -n "${OUT:-}" ]]; then mkdir -p "$OUT"; fi
COMPARE_ARGS=()
for overrides in ${COMPARE:-}; do COMPARE_ARGS+=(--compare "$overrides"); done
failed=0

if "$PY" -c "import torch, transformers; assert torch.cuda.is_available()" 2>/dev/null; then
  REFERENCE=(--hf-device cuda)
else
  echo "# no CUDA torch + transformers: the Hugging Face reference is skipped" >&2
  REFERENCE=(--no-reference)
fi

for run in $RUNS; do
  IFS=: read -r backbone dtype mode <<< "$run"
  echo "# step $backbone $dtype $mode crop $CROP batch $((PER_DEVICE_L * NDEV))+$((PER_DEVICE_U * NDEV))" >&2
  if json=$("$PY" launch/benchmark.py step --backbone "$backbone" --crop "$CROP" --dtype "$dtype" \
      --batch-labeled $((PER_DEVICE_L * NDEV)) --batch-unlabeled $((PER_DEVICE_U * NDEV)) \
      --modes "$mode" --iters "$ITERS" --warmup 2 "${REFERENCE[@]}" \
      ${COMPARE_ARGS[@]+"${COMPARE_ARGS[@]}"}); then
    echo "$json"
    if [[ -n "${OUT:-}" ]]; then echo "$json" > "$OUT/step_${backbone}_${dtype}_${mode}.json"; fi
  else
    echo "# step $backbone $dtype $mode FAILED (see above); going on with the next" >&2
    failed=1
  fi
done
exit "$failed"
