"""`replay`: completions read back from the samples.jsonl of an earlier `mtpb run` (the original
sampler's files hold whole programs, not turns: score them with `mtpb execute`)."""
from __future__ import annotations

from pathlib import Path

from mtpb.backends.base import BackendError, Request, SamplingParams
from mtpb.rundir import RunDirError, read_jsonl


class ReplayBackend:
    """-B samples=PATH: a samples.jsonl of an earlier run; turn i of (problem, test, sample) replays
    its `raw` completion of turn i."""
    preferred_batch_size = 256

    def __init__(self, samples: str | None = None, model: str | None = None):
        path = samples or model
        if not path:
            raise BackendError("the replay backend needs -B samples=PATH (a samples.jsonl of an earlier run)")
        self.path, self.raw = path, {}
        if not Path(path).exists():  # (the run directory's reader takes a missing file for an empty one)
            raise BackendError(f"cannot read {path}: no such file")
        try:
            for number, r in read_jsonl(Path(path)):
                try:
                    key = (int(r["problem_id"]), int(r["test_index"]), int(r["sample_index"]))
                    self.raw[key] = [t["raw"] for t in r["turns"]]
                except (ValueError, KeyError, TypeError) as e:
                    raise BackendError(f"{path}:{number}: not a samples line ({e}): fix or remove it")
        except OSError as e:
            raise BackendError(f"cannot read {path}: {e}")
        except RunDirError as e:  # a malformed line: a backend's errors are BackendErrors
            raise BackendError(str(e)) from None

    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]:
        out = []
        for r in requests:
            turns = self.raw.get((r.problem_id, r.test_index, r.sample_index))
            if turns is None or r.turn_index >= len(turns):
                raise BackendError(f"{self.path} has no completion for problem {r.problem_id}, test "
                                   f"{r.test_index}, sample {r.sample_index}, turn {r.turn_index + 1}")
            out.append(turns[r.turn_index])
        return out

    def describe(self) -> dict:
        return {"model": f"replay:{self.path}", "parameters": None}
