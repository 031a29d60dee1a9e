#!/usr/bin/env bash
# The engine against transformers on one GPU (H100/H200), CodeGen 350M and 2B shapes, random init,
# fp16. Run once from a checkout, offline:   bash bench/gpu_engine.sh 2>&1 | tee gpu_engine.log
#
# Needs python3 with torch (CUDA), transformers, tokenizers, safetensors and pyyaml installed; it
# installs nothing and runs the sources in place (PYTHONPATH), so no `pip install -e .` is needed.
# Prints, per shape:
#   workload  the multi-turn workload (first problems of the suite x 5 tests, greedy), wall time of
#             the engine (codegen backend) and of the transformers baseline, and the ratio (floor 5x);
#             random weights never stop early, so the ratio is per-step efficiency and prefix reuse,
#             and fp16 near-ties make greedy programs differ: reported, not failed.
#   decode    batch-1 and batch-16 decode tokens/s, engine vs transformers, and batch 1 against the
#             memory-bandwidth bound (weight bytes per token / measured copy bandwidth).
# Every step has its own time limit; the whole script stays under 6 minutes.
set -u
cd "$(dirname "$0")/.."
. bench/engine_steps.sh   # the environment, PY, START and step()

echo "== environment"
"$PY" - <<'EOF' || { echo "missing packages: need torch, transformers, tokenizers, safetensors"; exit 1; }
import sys, torch, transformers, tokenizers, safetensors
print(f"python {sys.version.split()[0]}, torch {torch.__version__}, transformers {transformers.__version__}, "
      f"tokenizers {tokenizers.__version__}, safetensors {safetensors.__version__}")
assert torch.cuda.is_available(), "no CUDA device visible"
p = torch.cuda.get_device_properties(0)
print(f"gpu: {p.name}, {p.total_memory / 2**30:.0f} GiB, {p.multi_processor_count} SMs")
EOF

step 75 "350M workload" workload --random-shape 350M --problems 8 --device cuda --dtype fp16 --allow-mismatch
step 55 "350M decode" decode --shape 350M --tokens 128 --batches 1,16 --device cuda --dtype fp16
step 120 "2B workload" workload --random-shape 2B --problems 4 --device cuda --dtype fp16 --allow-mismatch
step 75 "2B decode" decode --shape 2B --tokens 128 --batches 1,16 --device cuda --dtype fp16

echo; echo "== done in $(( $(date +%s) - START ))s"
