"""Batched generation over the static KV cache: less work than re-running a model from scratch.

- prefill only what no cache row holds yet (prefix reuse across turns and across samples), in
  right-padded groups whose padding writes go to a sink position, logits at the last position only;
- decode every live sequence in one batch, one token per step, over keys up to the longest
  live sequence only;
- stop each sequence on its own (eos, its token budget, or the caller's is_finished(text)), and
  compact the batch so finished rows cost nothing;
- sample on the device with per-request seeds (see sampling.py).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Hashable

import torch

from mtpb.engine.cache import KVPool, Placement, additive_mask, place
from mtpb.engine.graphs import StaticDecode
from mtpb.engine.layout import for_inference
from mtpb.engine.model import CodeGen
from mtpb.engine.sampling import UniformStream, sample_next
from mtpb.engine.tokenizer import Tokenizer


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


class Engine:
    def __init__(self, model: CodeGen, tokenizer: Tokenizer, max_batch: int = 16,
                 max_length: int | None = None, prefill_tokens: int | None = None, top_k: int = 50,
                 decode: str = "auto", pack: bool = True):
        """model: shared with any other engine, never changed; this engine runs its own inference
        form of it (layout.for_inference: fused GEMMs, and with pack, MKL-packed weights for
        max_batch rows, fp32 on CPU only, one more copy of the weight matrices).
        decode: "graphs" (CUDA graphs, the default on cuda), "eager" (the default elsewhere), or
        "static" (the graphs' static-buffer step run eagerly: for tests)."""
        self.model, self.tokenizer = model, tokenizer
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        self.max_batch = max_batch
        self.max_length = min(max_length or model.cfg.n_positions, model.cfg.n_positions)
        self.prefill_tokens = prefill_tokens or (8192 if self.device.type == "cuda" else 2048)
        self.top_k = top_k
        self.pool = KVPool(model.cfg, max_batch, self.max_length, self.device, self.dtype)
        self.stats = EngineStats()
        self._tick = 0
        if decode == "auto":
            decode = "graphs" if self.device.type == "cuda" else "eager"
        if decode not in ("graphs", "eager", "static"):
            raise ValueError(f"decode={decode!r}: use graphs, eager or static")
        self.net = for_inference(model, max_batch if pack else 0)     # what runs: this engine's own
        self.static = StaticDecode(self.net, self.pool, capture=decode == "graphs") if decode != "eager" else None

    def describe(self) -> dict:
        """Facts for a run's manifest or a server's banner."""
        return {"parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device),
                "batch_size": self.max_batch, "max_length": self.max_length, "top_k": self.top_k}

    @torch.inference_mode()
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
    def _prefill(self, rows: list[_Live], plan: Placement) -> torch.Tensor:
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
        return torch.cat(logits)

    def _prefill_rows(self, rows: list[_Live], lo: int, hi: int, starts: list[int]) -> torch.Tensor:
        out = []
        a = lo
        while a < hi:   # contiguous groups within the token budget (rows are sorted longest first)
            width = len(rows[a].prompt) - starts[a - lo]
            b = a + 1
            while b < hi and (b - a + 1) * width <= self.prefill_tokens:
                b += 1
            out.append(self._prefill_group(rows[a:b], a, starts[a - lo:b - lo]))
            a = b
        return torch.cat(out) if out else torch.empty(0, self.model.cfg.vocab_size, device=self.device)

    def _prefill_group(self, group: list[_Live], lo: int, starts: list[int]) -> torch.Tensor:
        dev = self.device
        chunks = [s.prompt[st:] for s, st in zip(group, starts)]
        width = max(map(len, chunks))
        ids = torch.tensor([c + [0] * (width - len(c)) for c in chunks], device=dev)        # (B, W)
        start = torch.tensor(starts, device=dev)
        lengths = torch.tensor([len(c) for c in chunks], device=dev)
        offset = torch.arange(width, device=dev)
        pos = start[:, None] + offset                                                       # (B, W)
        write = torch.where(offset < lengths[:, None], pos, self.pool.sink)
        key_len = max(st + len(c) for st, c in zip(starts, chunks))
        mask = None
        if len(group) > 1:
            mask = additive_mask((torch.arange(key_len, device=dev) <= pos[:, :, None])[:, None], self.dtype)  # (B, 1, W, K)
        cache = self.pool.view(lo, lo + len(group), write, key_len, mask)
        positions = pos.clamp(max=self.model.cfg.n_positions - 1)
        logits = self.net(ids, positions, cache, last=lengths - 1)[:, 0]                     # (B, V)
        for r, chunk in enumerate(chunks):
            self.pool.extend(lo + r, chunk)
        return logits

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
            if self.static is not None:
                logits, greedy = self.static.step(tokens, positions, changed)        # (n, V), (n,)
            else:
                logits, greedy = self._eager_step(tokens, positions)
            self.stats.decode_steps += 1
            for r, s in enumerate(live):
                self.pool.extend(r, s.out[-1:])
            chosen = self._choose(live, logits, greedy)
            if self.static is not None and chosen is not greedy:
                self.static.feed(chosen)
            for s, t in zip(live, chosen.tolist()):
                s.out.append(t)
                self._check(s, is_finished)
            changed = any(s.finish for s in live)
            rows[:] = self._compact(rows)

    def _eager_step(self, tokens: list[int], positions: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        dev = self.device
        ids = torch.tensor(tokens, device=dev)[:, None]                                     # (n, 1)
        pos = torch.tensor(positions, device=dev)[:, None]                                  # (n, 1)
        key_len = max(positions) + 1
        mask = None
        if min(positions) != key_len - 1:
            mask = additive_mask((torch.arange(key_len, device=dev) <= pos)[:, None, None, :], self.dtype)  # (n, 1, 1, K)
        logits = self.net(ids, pos, self.pool.view(0, len(tokens), pos, key_len, mask))[:, 0]
        return logits, logits.argmax(dim=-1)

    def _choose(self, rows: list[_Live], logits: torch.Tensor, greedy: torch.Tensor) -> torch.Tensor:
        """The next token per row: the argmax when every row is greedy, else sampled on the device."""
        if all(s.request.temperature <= 0 for s in rows):
            return greedy
        dev = self.device
        temp = torch.tensor([s.request.temperature for s in rows], device=dev, dtype=torch.float32)
        top_p = torch.tensor([s.request.top_p for s in rows], device=dev, dtype=torch.float32)
        u = torch.tensor([s.uniforms.next() if s.request.temperature > 0 else 0.0 for s in rows],
                         device=dev, dtype=torch.float32)
        return sample_next(logits, temp, top_p, u, self.top_k)

    def _sample(self, rows: list[_Live], logits: torch.Tensor) -> None:
        for s, t in zip(rows, self._choose(rows, logits, logits.argmax(dim=-1)).tolist()):
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
