# Sourced by bench/gpu_engine.sh and bench/tpu_engine.sh, from the checkout's root: the environment
# they run bench/engine.py in, and `step SECONDS TITLE ARGS...` (one bench/engine.py run under its own
# time limit; a failed step is reported and the script goes on).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 TOKENIZERS_PARALLELISM=false HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1
export TRANSFORMERS_VERBOSITY=error
PY=${PYTHON:-python3}
START=$(date +%s)
[ -f checkpoints/tiny-codegen/tokenizer.json ] || { echo "checkpoints/tiny-codegen missing (its tokenizer is used)"; exit 1; }

step() {   # step SECONDS TITLE ARGS...
    local limit=$1 title=$2; shift 2
    echo; echo "== $title  (limit ${limit}s, $(( $(date +%s) - START ))s elapsed)"
    timeout --signal=KILL "$limit" "$PY" bench/engine.py "$@"
    local rc=$?
    [ $rc -eq 0 ] || echo "!! $title ended with status $rc"
}
