"""The engine thread of `mtpb serve`: one queue, one thread, whatever is waiting goes into one call.

HTTP handler threads submit jobs and block on their futures. The engine thread takes the first
waiting job, then every other job already waiting, up to the engine's batch size, and runs them
as one generate call. There is no batching delay: while one call runs, new jobs queue up and form
the next batch, so batches grow with concurrency by themselves. Only this thread touches the engine.

The engine takes one stop test per call (is_finished(text)), so jobs with different stop rules
gathered together run as one call per rule, in arrival order.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import dataclass

from mtpb.prompts import is_finished, truncate


@dataclass(frozen=True)
class Job:
    """One sequence to generate (an HTTP request with n=2 or a list of prompts is several jobs)."""
    prompt: str
    max_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    seed: int = 0
    stop: tuple[str, ...] = ()        # literal stop strings: the text ends before the first one
    truncation: str | None = None     # "multi": also end where MTPB truncation would (chat on a base model)

    @property
    def rule(self) -> tuple:
        return (self.stop, self.truncation)


@dataclass(frozen=True)
class Output:
    text: str                         # cut before the stop string, as the OpenAI API returns it
    finish_reason: str                # stop | length
    stop_reason: str | None           # the stop string that ended it (vLLM's field); None for eos, length, truncation
    prompt_tokens: int
    completion_tokens: int


@dataclass
class BatchStats:
    """Written by the engine thread only; read by anyone (tests, the bench)."""
    calls: int = 0
    jobs: int = 0
    largest: int = 0


def stop_test(stop: tuple[str, ...], truncation: str | None) -> Callable[[str], bool]:
    def finished(text: str) -> bool:
        return any(s in text for s in stop) or (truncation is not None and is_finished(text, truncation))
    return finished


def finish(job: Job, text: str, engine_finish: str) -> tuple[str, str, str | None]:
    """(text, finish_reason, stop_reason) from the engine's raw text and why the engine stopped."""
    cuts = [(text.find(s), s) for s in job.stop if s and s in text]
    stop_reason = None
    if cuts:
        at, stop_reason = min(cuts)
        text = text[:at]
    reason = "stop" if cuts or engine_finish in ("eos", "stop") else "length"
    if job.truncation is not None:
        cut = truncate(text, job.truncation)
        if cut != text:
            text, reason = cut, "stop"
    return text, reason, stop_reason


_CLOSE = object()


class Batcher:
    """run_batch(jobs, is_finished) -> one engine completion each (.text, .token_ids, .prompt_tokens, .finish)."""

    def __init__(self, run_batch: Callable[[list[Job], Callable[[str], bool]], Sequence], max_batch: int):
        self.run_batch, self.max_batch = run_batch, max_batch
        self.stats = BatchStats()
        self._queue: queue.Queue = queue.Queue()
        self._thread = threading.Thread(target=self._loop, name="mtpb-engine", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> list[Future]:
        futures = []
        for job in jobs:
            future: Future = Future()
            self._queue.put((job, future))
            futures.append(future)
        return futures

    def close(self, timeout: float | None = 10) -> None:
        self._queue.put(_CLOSE)
        self._thread.join(timeout)

    def _loop(self) -> None:
        closing = False
        while not closing:
            first = self._queue.get()
            if first is _CLOSE:
                return
            batch = [first]
            while len(batch) < self.max_batch:
                try:
                    item = self._queue.get_nowait()
                except queue.Empty:
                    break
                if item is _CLOSE:
                    closing = True      # finish what was gathered, then stop
                    break
                batch.append(item)
            self._run([(job, fut) for job, fut in batch if fut.set_running_or_notify_cancel()])
        # jobs queued behind the close are answered, never left hanging
        while True:
            try:
                item = self._queue.get_nowait()
            except queue.Empty:
                return
            if item is not _CLOSE:
                item[1].set_exception(RuntimeError("the server is shutting down"))

    def _run(self, batch: list[tuple[Job, Future]]) -> None:
        groups: dict[tuple, list[tuple[Job, Future]]] = {}
        for job, fut in batch:
            groups.setdefault(job.rule, []).append((job, fut))
        for rule, group in groups.items():
            self.stats.calls += 1
            self.stats.jobs += len(group)
            self.stats.largest = max(self.stats.largest, len(group))
            try:
                done = self.run_batch([job for job, _ in group], stop_test(*rule))
                outputs = [Output(*finish(job, c.text, c.finish), c.prompt_tokens, len(c.token_ids))
                           for (job, _), c in zip(group, done)]
            except BaseException as e:   # one bad call fails its own requests, never the thread
                for _, fut in group:
                    fut.set_exception(e)
                continue
            for (_, fut), output in zip(group, outputs):
                fut.set_result(output)
