"""`reference`: plays each turn's reference solution, so the suite can validate itself end to end."""
from __future__ import annotations

from mtpb.backends.base import BackendError, Request, SamplingParams


class ReferenceBackend:
    preferred_batch_size = 256

    def __init__(self, model: str | None = None):
        self.model = model

    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]:
        missing = [r.problem_id for r in requests if r.solution is None]
        if missing:
            raise BackendError(f"problem {missing[0]} has no reference solution for turn "
                               f"{requests[0].turn_index + 1}: the reference backend needs one per turn")
        return [r.solution for r in requests]

    def describe(self) -> dict:
        return {"model": "reference", "parameters": None}
