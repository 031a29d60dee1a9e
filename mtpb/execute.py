"""`mtpb execute`: score a samples file, ours or the original sampler's, in input order, resumably."""
from __future__ import annotations

import itertools
import json
from pathlib import Path

from mtpb.rundir import JsonlWriter, load_json, read_jsonl, repair_tail, write_json_atomic
from mtpb.runner import result_record


def _parse(line: str, number: int, problems: dict) -> tuple[dict, str, object, str]:
    """-> (record, program, expected, format); raises ValueError with a message for a bad line."""
    record = json.loads(line)
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    if "completions" in record and "gold_output" in record:  # the original sampler's samples
        return record, str(record["completions"]), record["gold_output"], "original"
    if "program" in record and "problem_id" in record:
        pid, test = int(record["problem_id"]), int(record["test_index"])
        if "expected" in record:
            return record, record["program"], record["expected"], "mtpb"
        if pid not in problems:
            raise ValueError(f"problem {pid} is not in the loaded problem sets: pass --problems")
        return record, record["program"], problems[pid].tests[test].output, "mtpb"
    raise ValueError("expected the original sampler's fields (id, input, gold_output, completions) "
                     "or ours (problem_id, test_index, sample_index, program)")


def execute_file(samples: Path, out: Path, sandbox, problems: dict, scoring: str | None, progress=None,
                 batch: int = 128) -> dict:
    out.mkdir(parents=True, exist_ok=True)
    results_path = out / "results.jsonl"
    repair_tail(results_path)
    done = sum(1 for _ in read_jsonl(results_path))
    manifest_path = out / "run.json"
    manifest = load_json(manifest_path) if manifest_path.exists() else {
        "harness": "mtpb", "command": "execute", "samples": str(samples), "sandbox": sandbox.name,
        "scoring": scoring}
    writer = JsonlWriter(results_path)
    bad_lines, formats = [], set()
    with open(samples, encoding="utf-8") as f:
        lines = [(i, line) for i, line in enumerate(f) if line.strip()]
    if progress:
        progress.start(len(lines), done)
    try:
        for chunk in _chunks(lines[done:], batch):
            parsed = []
            for index, line in chunk:
                try:
                    parsed.append((index, *_parse(line, index + 1, problems)))
                except (ValueError, KeyError, TypeError, IndexError) as e:
                    bad_lines.append(f"{samples}:{index + 1}: {e}")
                    parsed.append((index, None, None, None, f"line {index + 1} is malformed: {e}"))
            runnable = [p for p in parsed if p[1] is not None]
            replies = iter(sandbox.run([p[2] for p in runnable]))
            for index, record, program, expected, fmt in parsed:
                if record is None:
                    writer.write({"index": index, "id": None, "status": "failed", "passed": False, "error": fmt})
                    continue
                formats.add(fmt)
                rules = scoring or fmt
                manifest["scoring"] = manifest.get("scoring") or rules
                result = result_record(record, next(replies), expected, rules)
                writer.write({"index": index, "id": record.get("id", record.get("problem_id")), **result})
            writer.checkpoint()
            if progress:
                progress.advance(len(chunk))
    finally:
        writer.close()
    write_json_atomic(manifest_path, manifest)
    return {"bad_lines": bad_lines, "results": str(results_path)}


def _chunks(seq, size):
    it = iter(seq)
    while chunk := list(itertools.islice(it, size)):
        yield chunk
