"""The turn where a failed program broke: `mtpb diagnose RUN`.

For every failed program (status failed, error, timeout or killed; never passed, never
sandbox_error, which is the harness's fault), the program is cut after each turn, replaying the
sample's replies through prompts.Conversation, the runner's own turn loop, and the cuts run in the
sandbox in batches. The first cut that raises gives broke_at_turn (1-based) and broke_how, the
exception's type ("NameError"), "timeout" or "killed". The cut after the last turn is the program
itself, whose result is already known: when no earlier cut raises, the program broke at its last
turn, by its own exception, timeout or kill, or, having run to the end, with "wrong value" (or
"no value" when it printed nothing).

results.jsonl stays append-only: diagnoses go to RUN/diagnosis.jsonl, one line per diagnosed
result (problem_id, test_index, sample_index, status of the result diagnosed, broke_at_turn,
broke_how), appended and resumable; readers merge it into the results with `diagnosed_results`
(or `standing`, one key at a time). A result that a resumed run later re-executed with another status is
diagnosed again.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterator

from mtpb.prompts import Conversation
from mtpb.rundir import JsonlWriter, RunDir, RunDirError, chunks, read_jsonl

DIAGNOSIS_FILE = "diagnosis.jsonl"
DIAGNOSED = ("failed", "error", "timeout", "killed")


def _key(record: dict) -> tuple[int, int, int]:
    return int(record["problem_id"]), int(record["test_index"]), int(record["sample_index"])


def latest_results(run_dir: Path) -> dict[tuple, dict]:
    """The result that stands for each key (a resumed run's later line wins)."""
    out = {}
    for number, r in read_jsonl(RunDir(run_dir).results):
        try:
            out[_key(r)] = r
        except (KeyError, TypeError, ValueError):
            raise RunDirError(f"{RunDir(run_dir).results}:{number}: problem_id, test_index or sample_index is "
                              "missing or not an integer: fix or delete that line") from None
    return out


def read_diagnoses(run_dir: Path) -> dict[tuple, dict]:
    out = {}
    for _, d in read_jsonl(Path(run_dir) / DIAGNOSIS_FILE, []):
        try:
            out[_key(d)] = d
        except (KeyError, TypeError, ValueError):
            continue
    return out


def standing(diagnosis: dict | None, status) -> dict | None:
    """The diagnosis if it is of the result that stands now (same status), else None: a result a resumed
    run re-executed with another status is not the one diagnosed."""
    return diagnosis if diagnosis is not None and diagnosis.get("status") == status else None


def diagnosed_results(run_dir: Path) -> Iterator[dict]:
    """Each standing result, with broke_at_turn and broke_how where a diagnosis of that same result exists."""
    diagnoses = read_diagnoses(run_dir)
    for key, r in latest_results(run_dir).items():
        d = standing(diagnoses.get(key), r.get("status"))
        if d is not None:
            r = {**r, "broke_at_turn": d.get("broke_at_turn"), "broke_how": d.get("broke_how")}
        yield r


def cut_programs(sample: dict, mode: str) -> list[str]:
    """The program after each turn (the last is the whole program), rebuilt from the sample's replies."""
    turns = sample["turns"]
    talk = Conversation(mode, [str(t["prompt"]) for t in turns])
    cuts = []
    for t in turns:
        talk.add(str(t["raw"]))
        cuts.append(talk.program)
    return cuts


def how_it_broke(reply: dict) -> str | None:
    """What stopped a cut program: an exception's type, timeout or killed; None when it ran through."""
    if reply.get("timed_out"):
        return "timeout"
    if reply.get("signal") is not None:
        return "killed"
    result = reply.get("result") or {}
    exception = result.get("exception") if isinstance(result, dict) else None
    if exception:
        return "killed" if result.get("memory_error") else str(exception).split(":", 1)[0][:80]
    return None


def final_break(result: dict) -> str:
    """How the whole program broke, from its own result (the cut after the last turn)."""
    status = result.get("status")
    if status == "error":
        return str(result.get("error") or "error").split(":", 1)[0][:80]
    if status in ("timeout", "killed"):
        return status
    return "wrong value" if result.get("printed") is not None else "no value"


def diagnose(run_dir: Path, sandbox, progress=None, batch: int = 64) -> dict:
    """Diagnose every failed result not diagnosed yet; returns counts and the sandbox seconds spent."""
    run = RunDir(run_dir)
    manifest = run.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run_dir}: no run.json: give a run directory that `mtpb run` wrote")
    mode = str(manifest.get("mode") or "multi")
    results, done = latest_results(run_dir), read_diagnoses(run_dir)
    todo = {k for k, r in results.items() if r.get("status") in DIAGNOSED
            and standing(done.get(k), r.get("status")) is None}
    if progress:
        progress.start(len(todo), 0)
    spent, programs, counts = 0.0, 0, {"diagnosed": 0}
    writer = JsonlWriter(Path(run_dir) / DIAGNOSIS_FILE)
    try:
        samples = (s for _, s in read_jsonl(run.samples) if _key(s) in todo)
        for group in chunks(samples, batch):
            cuts = [cut_programs(s, mode) for s in group]
            # the last cut is the program itself, already executed: only the earlier ones run
            flat = [c for per in cuts for c in per[:-1]]
            start = time.monotonic()
            replies = iter(sandbox.run(flat) if flat else [])
            spent += time.monotonic() - start
            programs += len(flat)
            for s, per in zip(group, cuts):
                key, broke = _key(s), None
                for turn, reply in enumerate([next(replies) for _ in per[:-1]], start=1):
                    how = how_it_broke(reply)
                    if how and broke is None:
                        broke = (turn, how)
                result = results[key]
                turn, how = broke or (len(per), final_break(result))
                writer.write({"problem_id": key[0], "test_index": key[1], "sample_index": key[2],
                              "status": result.get("status"), "broke_at_turn": turn, "broke_how": how})
                counts["diagnosed"] += 1
            writer.checkpoint()
            if progress:
                progress.advance(len(group))
    finally:
        writer.close()
    return {**counts, "programs_run": programs, "sandbox_seconds": round(spent, 3),
            "failed": len([r for r in results.values() if r.get("status") in DIAGNOSED]),
            "run_seconds": round(sum(float(r.get("seconds") or 0) for r in results.values()), 3)}
