#!/usr/bin/env bash
# The engine's JAX runtime on a TPU VM (v4-8, v5e-8 ...), CodeGen 350M and 2B shapes, random init, bf16.
# Run once from a checkout:   bash bench/tpu_engine.sh 2>&1 | tee tpu_engine.log
#
# Needs python3 with jax[tpu], tokenizers and pyyaml (pip install -e '.[jax]' 'jax[tpu]'), and for the
# workload ratio torch (CPU) + transformers, the baseline, which on a TPU VM runs on the host CPU: the
# ratio is what moving an evaluation from `--backend transformers` on that machine to
# `-B runtime=jax` on its TPU gains. It installs nothing and runs the sources in place (PYTHONPATH).
# Prints, per shape:
#   jax-decode  decode tokens/s at batch 1 and 32, each next to its memory-bandwidth bound: the bytes a
#               step reads (weights + the live sequences' keys and values) over the measured on-device
#               copy bandwidth summed over the mesh's chips.
#   workload    the multi-turn workload (first problems x 5 tests, greedy), JAX engine on the TPU vs
#               the transformers backend, and the ratio; random weights never stop early and bf16
#               near-ties make greedy programs differ: reported, not failed.
# Every step has its own time limit.
set -u
cd "$(dirname "$0")/.."
. bench/engine_steps.sh   # the environment, PY, START and step()

echo "== environment"
"$PY" - <<'PYEOF' || { echo "missing packages: need jax[tpu], tokenizers, ml_dtypes"; exit 1; }
import sys, jax, tokenizers
devices = jax.devices()
print(f"python {sys.version.split()[0]}, jax {jax.__version__}, tokenizers {tokenizers.__version__}")
print(f"devices: {len(devices)} x {devices[0].device_kind} ({devices[0].platform})")
assert devices[0].platform == "tpu", "no TPU visible to JAX"
PYEOF

# 350M: data-parallel over every chip (the default mesh when the weights fit one chip's memory)
step 300 "350M jax-decode" jax-decode --shape 350M --tokens 128 --batches 1,32 --device tpu --dtype bf16
# 2B: still one chip's weights; MESH=1x8 (or 2x4) to see tensor parallelism instead
step 400 "2B jax-decode" jax-decode --shape 2B --tokens 128 --batches 1,32 --device tpu --dtype bf16 ${MESH:+--mesh $MESH}
if "$PY" -c "import torch, transformers" 2>/dev/null; then
    step 900 "350M workload" workload --random-shape 350M --problems 4 --batch-size 32 --runtimes jax \
        --device cpu --dtype fp32 --jax-device tpu --jax-dtype bf16 --allow-mismatch
    step 1500 "2B workload" workload --random-shape 2B --problems 2 --batch-size 32 --runtimes jax \
        --device cpu --dtype fp32 --jax-device tpu --jax-dtype bf16 --allow-mismatch
else
    echo; echo "== workload skipped: torch and transformers (the baseline) are not installed"
fi

echo; echo "== done in $(( $(date +%s) - START ))s"
