"""`mtpb problems import`: the original MTPB release (mtpb.jsonl) -> one YAML file per problem set.

Prompts are kept verbatim: our placeholder syntax is str.format's for `{name}`, `{{` and `}}`, so
every rendered prompt equals the original sampler's `prompt.format(**inputs)`. The release has no
reference solutions; the YAML format allows turns without one. Test inputs that no prompt uses (str.format
ignored them) are kept under the test's `unused_inputs`. Where the release omits
max_gen_length, the original sampler used 256, and so does the imported file. Each file starts with
IMPORTED_HEADER, a comment: `problems validate --execute` tells such files from ours by it.
"""
from __future__ import annotations

import json
from pathlib import Path

from mtpb.problems import ProblemError, dump_problem, parse_problem, placeholders, slugify

ORIGINAL_DEFAULT_MAX_GEN_LENGTH = 256
REQUIRED = ("id", "name", "prompts", "inputs", "outputs")
IMPORTED_HEADER = ("# Imported from the original MTPB release by `mtpb problems import`. The release has no reference\n"
                   "# solutions: `mtpb problems validate` checks this file; `--execute` has nothing to run.\n")


def is_imported(path: str | Path) -> bool:
    """Whether a problem file was written by `mtpb problems import` (it starts with IMPORTED_HEADER)."""
    try:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.readline() == IMPORTED_HEADER.splitlines(keepends=True)[0]
    except OSError:
        return False


def convert(original: dict) -> dict:
    used = set().union(*(placeholders(p) for p in original["prompts"]))
    tests = []
    for inputs, output in zip(original["inputs"], original["outputs"]):
        test = {"inputs": {k: v for k, v in inputs.items() if k in used}, "output": output}
        extra = {k: v for k, v in inputs.items() if k not in used}
        if extra:  # str.format ignored them; keep them, marked, so nothing of the release is lost
            test["unused_inputs"] = extra
        tests.append(test)
    return {
        "id": int(original["id"]),
        "name": original["name"],
        "category": original.get("category", ""),
        "description": original.get("description", ""),
        "max_gen_length": int(original.get("max_gen_length", ORIGINAL_DEFAULT_MAX_GEN_LENGTH)),
        "turns": [{"prompt": p} for p in original["prompts"]],
        "tests": tests,
    }


def import_original(jsonl: Path, out_dir: Path) -> list[Path]:
    """Write every problem; raise ProblemError naming each bad line (the good ones are still written)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written, errors = [], []
    with open(jsonl, "rb") as f:   # bytes: a non-UTF-8 line fails in json.loads, named
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                original = json.loads(line)
                missing = [k for k in REQUIRED if k not in original]
                if missing:
                    raise ValueError(f"missing {', '.join(missing)}")
                problem = convert(original)
            except (ValueError, TypeError) as e:
                errors.append(f"{jsonl}:{number}: not an MTPB problem line ({e}): fix or remove it")
                continue
            path = out_dir / f"{problem['id']:03d}-{slugify(problem['name'])}.yaml"
            text = IMPORTED_HEADER + dump_problem(problem)
            try:
                parse_problem(text, str(path))
            except ProblemError as e:
                errors += [f"{jsonl}:{number}: converts to an invalid problem: {m}" for m in e.errors]
                continue
            path.write_text(text, encoding="utf-8")
            written.append(path)
    if errors:
        raise ProblemError(errors)
    return written
