"""The backend protocol: a list of requests in, one completion string per request out."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable


@dataclass(frozen=True)
class SamplingParams:
    """Settings shared by every request of a run."""
    temperature: float = 0.0          # 0 means greedy
    top_p: float = 0.95
    mode: str = "multi"               # multi | single | chat; decides the stop rule (prompts.is_finished)
    stop: tuple[str, ...] = ()        # literal stop strings for servers that take only literals


@dataclass(frozen=True)
class Request:
    """One model call: the context so far plus where it belongs in the run."""
    context: str                      # the full text context (multi/single); the program so far (chat)
    max_tokens: int
    seed: int                         # per (run seed, problem, test, sample): reproducible whatever the batching
    problem_id: int = 0
    test_index: int = 0
    sample_index: int = 0
    turn_index: int = 0
    solution: str | None = None       # the rendered reference solution of this turn, when the problem has one
    messages: tuple[dict, ...] = field(default=())  # chat mode: the conversation so far, ending with the user turn


@runtime_checkable
class Backend(Protocol):
    """Backends take their own options as constructor keywords (`-B key=value`), strings included.

    generate() returns one raw completion per request, in order; the runner truncates them.
    preferred_batch_size tells the runner how many sequences to keep in flight.
    """
    preferred_batch_size: int

    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]: ...

    def describe(self) -> dict:
        """Facts for run.json: at least `model`; `parameters` (count) where known."""
        ...


class BackendError(Exception):
    """A backend cannot go on (bad option, missing model, server refused): shown without a traceback."""


def engine_error(backend: str, e: Exception) -> BackendError:
    """An error of mtpb.engine (load.EngineError: plain words, plus the option at fault) in -B terms."""
    option, value = getattr(e, "option", None), getattr(e, "value", None)
    return BackendError(f"-B {option}={value}: {e}" if option else f"{backend}: {e}")


def parse_number(value, name: str, kind=int, low: float = 0):
    """A -B option as an int or float of at least `low`, or a BackendError saying what is wrong."""
    try:
        number = kind(value)
    except (TypeError, ValueError):
        raise BackendError(f"-B {name}={value}: expected {'an integer' if kind is int else 'a number'}") from None
    if number < low:
        raise BackendError(f"-B {name}={value}: must be at least {low}")
    return number
