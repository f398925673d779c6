#!/usr/bin/env bash
# GPU check of the train step (issue 8): MiT-B0 and MiT-B5, crop 513, the published per-device batch
# (2 labelled + 2 unlabelled images per GPU, uavseg), float32 and bfloat16; prints one JSON per run.
#
#   bash launch/gpu_check.sh                  # installs jax[cuda12]==0.10.2 from PyPI, then benchmarks
#   WHEELS=/path/to/wheels bash launch/gpu_check.sh   # offline: pip --no-index --find-links $WHEELS
#   SKIP_INSTALL=1 bash launch/gpu_check.sh   # the current python already has CUDA jax
#   OUT=results/ bash launch/gpu_check.sh     # also writes each JSON to $OUT/step_<backbone>_<dtype>.json
#
# Takes a few minutes on an H100: four compiles (B5's is the longest) and 10 timed steps each.
# No PyTorch reference here (a CPU-only torch would time the CPU); ratios live in the CPU table.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}

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
[[ -n "${OUT:-}" ]] && mkdir -p "$OUT"

for backbone in b0 b5; do
  for dtype in float32 bfloat16; do
    echo "# step $backbone $dtype crop $CROP batch $((PER_DEVICE_L * NDEV))+$((PER_DEVICE_U * NDEV))" >&2
    json=$("$PY" launch/benchmark.py step --backbone "$backbone" --crop "$CROP" --dtype "$dtype" \
      --batch-labeled $((PER_DEVICE_L * NDEV)) --batch-unlabeled $((PER_DEVICE_U * NDEV)) \
      --iters "$ITERS" --warmup 2 --no-reference)
    echo "$json"
    [[ -n "${OUT:-}" ]] && echo "$json" > "$OUT/step_${backbone}_${dtype}.json"
  done
done
