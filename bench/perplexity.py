"""`mtpb perplexity` speed: the engine's batched prefill with KV reuse against one transformers
forward pass per context, side by side in one run, over the suite's reference dialogues.

    python bench/perplexity.py [--model checkpoints/tiny-codegen] [--ids 1-115] [--modes multi,single]

Prints, per scorer: seconds, contexts, scored prompt tokens and context tokens (what a forward per
context processes) per second, the ratio to the transformers baseline, and the largest relative
difference of a dialogue's NLL between the two (fp32 on CPU).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))   # run from a checkout without installing


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=str(ROOT / "checkpoints" / "tiny-codegen"))
    ap.add_argument("--ids", default=None)
    ap.add_argument("--modes", default="multi,single")
    ap.add_argument("--batch-size", type=int, default=16)
    args = ap.parse_args()

    from mtpb.perplexity import open_scorer, reference_dialogues
    from mtpb.problems import load_problems, parse_ids, select

    problems = select(load_problems(), parse_ids(args.ids))
    dialogues = list(reference_dialogues(problems, tuple(args.modes.split(","))))
    contexts = sum(len(d.spans) for d in dialogues)
    print(f"{len(problems)} problems, {len(dialogues)} dialogues, {contexts} contexts ({args.modes}), {args.model}")
    results = {}
    for name in ("transformers", "codegen"):
        scorer = open_scorer(name, args.model, "cpu", "fp32", args.batch_size)
        scorer.score(dialogues[:2])   # warm up (first-call allocations, MKL packing)
        start = time.perf_counter()
        scores = []
        for lo in range(0, len(dialogues), scorer.batch_size):
            scores += scorer.score(dialogues[lo:lo + scorer.batch_size])
        results[name] = (time.perf_counter() - start, scores)
    scored = sum(n for per in results["codegen"][1] for n, _ in per)
    from transformers import AutoTokenizer
    tk = AutoTokenizer.from_pretrained(args.model)
    context_tokens = sum(len(tk(s.text)["input_ids"]) for d in dialogues for s in d.spans)
    base = results["transformers"][0]
    for name, (seconds, _) in results.items():
        print(f"{name:12s} {seconds:8.2f} s  {contexts / seconds:8.1f} contexts/s  {scored / seconds:9.0f} scored tok/s  "
              f"{context_tokens / seconds:9.0f} context tok/s  x{base / seconds:.2f} vs transformers")
    worst = max(abs(sum(x for _, x in a) - sum(x for _, x in b)) / abs(sum(x for _, x in b))
                for a, b in zip(results["codegen"][1], results["transformers"][1]))
    print(f"scored tokens {scored}, context tokens {context_tokens}; largest relative NLL difference {worst:.2e}")


if __name__ == "__main__":
    main()
