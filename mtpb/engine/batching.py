"""Batched generation over a static KV cache, whatever array library runs the model: the request
and stop logic and the use of the cache rows, shared by the torch engine (generate.Engine) and the
JAX engine (jax/generate.py).

- prefill only what no cache row holds yet (prefix reuse across turns and across samples), in
  right-padded groups whose padding writes go to a sink position, logits at the last position only;
- decode every live sequence in one batch, one token per step;
- stop each sequence on its own (eos, its token budget, or the caller's is_finished(text)), and
  compact the batch so finished rows cost nothing;
- sample with per-request seeds (one uniform per row and step from requests.UniformStream).

A runtime subclasses Generator and supplies the array work: _prefill_group (one forward pass over
a group of rows), _decode_step (one token for rows [0, n)), _choose (the next token per row from
logits), _concat and _tolist, and a pool (a rows.RowBook that stores the keys and values).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

from mtpb.engine.requests import Completion, EngineStats, GenerationRequest, UniformStream
from mtpb.engine.rows import Placement, RowBook, place
from mtpb.engine.tokenizer import Tokenizer


@dataclass
class _Live:
    """One sequence while it is generated."""
    index: int                        # position in the caller's request list
    prompt: list[int]
    request: GenerationRequest
    uniforms: UniformStream
    reused: int = 0
    out: list[int] = field(default_factory=list)
    finish: str = ""

    @property
    def fed(self) -> int:             # tokens whose keys/values are in the cache
        return len(self.prompt) + max(len(self.out) - 1, 0)


class Generator:
    """The runtime-free part of an engine. A subclass's __init__ calls setup()."""
    tokenizer: Tokenizer
    pool: RowBook
    max_batch: int
    max_length: int
    prefill_tokens: int

    def setup(self, tokenizer: Tokenizer, pool: RowBook, max_batch: int, max_length: int,
              prefill_tokens: int) -> None:
        self.tokenizer, self.pool = tokenizer, pool
        self.max_batch, self.max_length, self.prefill_tokens = max_batch, max_length, prefill_tokens
        self.stats = EngineStats()
        self._tick = 0

    def generate(self, requests: list[GenerationRequest],
                 is_finished: Callable[[str], bool] | None = None) -> list[Completion]:
        results: list[Completion | None] = [None] * len(requests)
        todo = []
        for i, req in enumerate(requests):
            if req.max_new_tokens > 0:
                todo.append(i)
            else:
                results[i] = Completion("", (), 0, 0, "length")
        for lo in range(0, len(todo), self.max_batch):
            chunk = todo[lo:lo + self.max_batch]
            for i, done in zip(chunk, self._generate([requests[i] for i in chunk], is_finished)):
                results[i] = done
        return results  # type: ignore[return-value]

    def _generate(self, requests: list[GenerationRequest], is_finished) -> list[Completion]:
        self._tick += 1
        self.stats.calls += 1
        live = []
        missing = [r.prompt for r in requests if r.prompt_ids is None]
        encoded = iter(self.tokenizer.encode_batch(missing) if missing else [])
        for i, req in enumerate(requests):
            ids = list(req.prompt_ids) if req.prompt_ids is not None else next(encoded)
            budget = max(self.max_length - req.max_new_tokens, 1)
            ids = ids[-budget:] if ids else [self.tokenizer.eos_id]   # keep the most recent context
            live.append(_Live(i, ids, req, UniformStream(req.seed)))
        need = max(len(s.prompt) + s.request.max_new_tokens for s in live)
        self.pool.ensure(len(live), need)
        plan = place(self.pool, [s.prompt for s in live], [s.request.key for s in live], self._tick)
        rows = [live[i] for i in plan.order]          # rows[r] is the sequence in cache row r
        for s in live:
            s.reused = plan.start[s.index]
        logits = self._prefill(rows, plan)
        self._sample(rows, logits)
        for s in rows:
            self._check(s, is_finished)
        self._decode(rows, is_finished)
        for s in live:
            self.stats.prompt_tokens += len(s.prompt)
            self.stats.reused_tokens += s.reused
            self.stats.generated_tokens += len(s.out)
        return [Completion(self.tokenizer.decode(s.out), tuple(s.out), len(s.prompt), s.reused, s.finish)
                for s in live]

    # ---- prefill -------------------------------------------------------------------------------
    def _prefill(self, rows: list[_Live], plan: Placement):
        """Logits (N, V) at each prompt's last position; leaders first, then followers."""
        n_lead = plan.n_leaders
        logits = [self._prefill_rows(rows, 0, n_lead, [plan.start[s.index] for s in rows[:n_lead]])]
        if n_lead < len(rows):
            row_of = {s.index: r for r, s in enumerate(rows)}
            followers = rows[n_lead:]
            src = {n_lead + j: row_of[plan.leader[s.index]] for j, s in enumerate(followers)}
            n_pos = max(plan.start[s.index] for s in followers)
            self.pool.move(src, n_pos)                  # followers take their leader's row ...
            for j, s in enumerate(followers):           # ... but keep their own key, and only the shared prefix
                self.pool.serve(n_lead + j, s.request.key, self._tick, plan.start[s.index])
            logits.append(self._prefill_rows(rows, n_lead, len(rows), [plan.start[s.index] for s in followers]))
        return self._concat(logits)

    def _prefill_rows(self, rows: list[_Live], lo: int, hi: int, starts: list[int]):
        out = []
        a = lo
        while a < hi:   # contiguous groups within the token budget (rows are sorted longest first)
            width = len(rows[a].prompt) - starts[a - lo]
            b = a + 1
            while b < hi and (b - a + 1) * width <= self.prefill_tokens:
                b += 1
            out.append(self._prefill_group(rows[a:b], a, starts[a - lo:b - lo]))
            a = b
        return self._concat(out)

    # ---- decode --------------------------------------------------------------------------------
    def _decode(self, rows: list[_Live], is_finished) -> None:
        rows[:] = self._compact(rows)
        changed = True
        while True:
            n = sum(1 for s in rows if not s.finish)       # live rows come first
            if n == 0:
                return
            live = rows[:n]
            tokens, positions = [s.out[-1] for s in live], [s.fed for s in live]
            logits, greedy = self._decode_step(tokens, positions, changed)            # (n, V), (n,)
            self.stats.decode_steps += 1
            for r, s in enumerate(live):
                self.pool.extend(r, s.out[-1:])
            chosen = self._choose(live, logits, greedy)
            self._chosen(chosen, greedy)
            for s, t in zip(live, self._tolist(chosen)):
                s.out.append(t)
                self._check(s, is_finished)
            changed = any(s.finish for s in live)
            rows[:] = self._compact(rows)

    def _sample(self, rows: list[_Live], logits) -> None:
        for s, t in zip(rows, self._tolist(self._choose(rows, logits, None))):
            s.out.append(t)

    def _check(self, s: _Live, is_finished) -> None:
        if s.out[-1] == self.tokenizer.eos_id and not s.request.ignore_eos:
            s.finish = "eos"
        elif len(s.out) >= s.request.max_new_tokens or s.fed + 1 >= self.max_length:
            s.finish = "length"
        elif is_finished is not None and is_finished(self.tokenizer.decode(s.out)):
            s.finish = "stop"
        if s.request.on_token is not None and s.request.on_token(s.out, s.finish) and not s.finish:
            s.finish = "cancelled"

    def _compact(self, rows: list[_Live]) -> list[_Live]:
        """Live rows first, so decode runs on rows [0, live): each finished row among the live ones
        trades places with the last live row (two row copies, not a shift of everything after it)."""
        order = list(range(len(rows)))
        i, j = 0, len(rows) - 1
        while True:
            while i < j and not rows[order[i]].finish:
                i += 1
            while i < j and rows[order[j]].finish:
                j -= 1
            if i >= j:
                break
            order[i], order[j] = order[j], order[i]
        if order == list(range(len(rows))):
            return rows
        self.pool.move({new: old for new, old in enumerate(order)}, max(s.fed for s in rows))
        return [rows[r] for r in order]

    # ---- what a runtime supplies -----------------------------------------------------------------
    def _prefill_group(self, group: list[_Live], lo: int, starts: list[int]):
        """One forward pass over cache rows [lo, lo + len(group)): each row's prompt from starts[r];
        returns the logits (len(group), V) at each prompt's last position."""
        raise NotImplementedError

    def _decode_step(self, tokens: list[int], positions: list[int], changed: bool):
        """Feed tokens[r] at positions[r] to row r of rows [0, n); returns logits (n, V) and their
        argmax (n,). changed: the live rows differ from the previous step's."""
        raise NotImplementedError

    def _choose(self, rows: list[_Live], logits, greedy):
        """The next token per row (greedy: the argmax when known, else None)."""
        raise NotImplementedError

    def _chosen(self, chosen, greedy) -> None:
        """The tokens a decode step chose (a runtime keeping them on the device may use them)."""

    def _concat(self, parts: list):
        raise NotImplementedError

    def _tolist(self, tokens) -> list[int]:
        raise NotImplementedError
