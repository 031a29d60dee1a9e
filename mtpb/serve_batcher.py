"""The engine thread of `mtpb serve`: fair batches of whatever is waiting, one thread, one engine.

HTTP handler threads submit a request's jobs (one per sequence) and wait on their futures. The
engine thread fills each batch round-robin over the waiting requests, one job of each in turn, up
to the engine's batch size, so a request of 64 sequences shares every batch with the small requests
that arrive meanwhile instead of holding the engine for 64 sequences' worth of calls. There is no
batching delay: while one call runs, new jobs queue up and form the next batch. Only this thread
touches the engine.

Each request has a Ticket: the engine reports every new token through it (streaming) and reads its
cancel flag after every token, so the work of a client that went away stops within one decode step,
and its jobs still waiting are dropped.

The engine takes one stop test per call (is_finished(text)), so jobs with different stop rules
gathered together run as one call per rule, in arrival order.
"""
from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import CancelledError, Future
from dataclasses import dataclass, field

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
    prompt_ids: tuple[int, ...] | None = None   # tokenised by the handler thread, not the engine's
    ticket: Ticket | None = field(default=None, compare=False)
    slot: int = 0                     # this job's place in its request (the ticket's progress key)

    def on_token(self, tokens: list[int], engine_finish: str = "") -> bool:
        """Called by the engine after each new token: record it, answer a finished sequence at once;
        True (stop) once the client left."""
        ticket = self.ticket
        if ticket is None:
            return False
        ticket.progress[self.slot] = tokens     # the engine's own list: it keeps growing in place
        if engine_finish and ticket.resolve is not None:
            ticket.resolve(self, tokens, engine_finish)
        ticket.changed.set()
        return ticket.cancelled.is_set()

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


class Ticket:
    """One request's link to the engine thread: tokens so far per job, and a cancel flag."""

    def __init__(self):
        self.cancelled = threading.Event()
        self.changed = threading.Event()
        self.progress: dict[int, list[int]] = {}
        self.futures: dict[int, Future] = {}    # slot -> its future, while the engine runs it
        self.resolve: Callable[[Job, list[int], str], None] | None = None

    def cancel(self) -> None:
        self.cancelled.set()


@dataclass
class BatchStats:
    """Written by the engine thread only; read by anyone (tests, the bench)."""
    calls: int = 0
    jobs: int = 0
    largest: int = 0
    cancelled: int = 0                # jobs stopped early because their client went away


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


class Batcher:
    """run_batch(jobs, is_finished) -> one engine completion each (.text, .token_ids, .prompt_tokens, .finish)."""

    def __init__(self, run_batch: Callable[[list[Job], Callable[[str], bool]], Sequence], max_batch: int,
                 decode: Callable[[list[int]], str] | None = None):
        """decode: the engine's tokenizer decode; given, a sequence is answered as soon as it ends
        (through its ticket), not when the longest sequence of its batch does."""
        self.run_batch, self.max_batch, self.decode = run_batch, max_batch, decode
        self.stats = BatchStats()
        self._lock = threading.Condition()
        self._waiting: deque[deque[tuple[Job, Future]]] = deque()   # one deque of jobs per request
        self._closing = False
        self._thread = threading.Thread(target=self._loop, name="mtpb-engine", daemon=True)
        self._thread.start()

    def submit(self, jobs: list[Job]) -> list[Future]:
        """One request's jobs; they share batches fairly with every other request's."""
        futures = [Future() for _ in jobs]
        with self._lock:
            if self._closing:
                for f in futures:
                    f.set_exception(RuntimeError("the server is shutting down"))
                return futures
            if jobs:
                if self.decode is not None:
                    for job, fut in zip(jobs, futures):
                        if job.ticket is not None:
                            job.ticket.futures[job.slot] = fut
                            job.ticket.resolve = self._resolve
                self._waiting.append(deque(zip(jobs, futures)))
                self._lock.notify()
        return futures

    def waiting(self) -> int:
        with self._lock:
            return sum(len(r) for r in self._waiting)

    def close(self, timeout: float | None = 10) -> None:
        with self._lock:
            self._closing = True
            self._lock.notify()
        self._thread.join(timeout)

    def _gather(self) -> list[tuple[Job, Future]] | None:
        """Up to max_batch jobs, one per waiting request in turn; None once closing with nothing left."""
        with self._lock:
            while not self._waiting and not self._closing:
                self._lock.wait()
            if self._closing:       # jobs queued behind the close are answered, never left hanging
                for request in self._waiting:
                    for _, fut in request:
                        if fut.set_running_or_notify_cancel():
                            fut.set_exception(RuntimeError("the server is shutting down"))
                self._waiting.clear()
                return None
            batch = []
            while self._waiting and len(batch) < self.max_batch:
                request = self._waiting.popleft()
                job, fut = request.popleft()
                if job.ticket is not None and job.ticket.cancelled.is_set():
                    for _, dropped in [(job, fut), *request]:      # its other jobs too
                        dropped.set_exception(CancelledError("the client went away"))
                    request.clear()
                elif fut.set_running_or_notify_cancel():
                    batch.append((job, fut))
                if request:
                    self._waiting.append(request)
            return batch

    def _loop(self) -> None:
        while (batch := self._gather()) is not None:
            if batch:
                self._run(batch)

    def _resolve(self, job: Job, tokens: list[int], engine_finish: str) -> None:
        """A sequence ended inside a running call: answer it now (the same Output the call would give)."""
        fut = job.ticket.futures.get(job.slot) if job.ticket is not None else None
        if fut is None or fut.done():
            return
        prompt_tokens = len(job.prompt_ids) if job.prompt_ids else 1     # the engine feeds eos for ""
        fut.set_result(Output(*finish(job, self.decode(tokens), engine_finish), prompt_tokens, len(tokens)))

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
                    if not fut.done():
                        fut.set_exception(e)
                continue
            for (_, fut), output, c in zip(group, outputs, done):
                if fut.done():            # answered when its sequence ended
                    continue
                if c.finish == "cancelled":
                    self.stats.cancelled += 1
                    fut.set_exception(CancelledError("the client went away"))
                else:
                    fut.set_result(output)
