"""What a caller asks of an engine and gets back, whatever runs the model (torch or JAX): requests,
completions, counters, and the per-request uniform stream that seeds sampling."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

import numpy as np


@dataclass(frozen=True)
class GenerationRequest:
    prompt: str
    max_new_tokens: int
    seed: int = 0
    temperature: float = 0.0          # 0 = greedy
    top_p: float = 1.0
    key: Hashable | None = None       # the sequence's identity across calls, for reusing its cache row
    ignore_eos: bool = False          # run to max_new_tokens whatever comes (benchmarks)
    prompt_ids: tuple[int, ...] | None = None   # the prompt already tokenised (by a caller's own thread)
    # called after each new token with the tokens so far and the finish reason ("" while it goes on);
    # True ends the sequence at once (finish "cancelled"). A server streams through it, answers a
    # finished sequence before the rest of its batch, and drops work for clients that went away.
    on_token: Callable[[list[int], str], bool] | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Completion:
    text: str
    token_ids: tuple[int, ...]
    prompt_tokens: int
    reused_tokens: int                # prompt tokens whose keys/values came from the cache
    finish: str                       # eos | length | stop | cancelled (on_token said so)


@dataclass
class EngineStats:
    prompt_tokens: int = 0
    reused_tokens: int = 0
    generated_tokens: int = 0
    decode_steps: int = 0
    calls: int = 0


class UniformStream:
    """Per-request uniforms in [0, 1): the n-th token of a request always uses the n-th draw."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed & 0xFFFFFFFFFFFFFFFF)

    def next(self) -> float:
        return float(self.rng.random())
