"""Log-probabilities of given text spans (prompt perplexity), on the engine's KV pool and net.

A ScoreRequest is a whole context and the character offset where the scored span begins; the span
runs to the end of the text. The text is tokenised whole, exactly as generate() would tokenise it
as a prompt, and the span's tokens are those starting at or after the offset (a token straddling
the offset belongs to the context). Each context costs one forward pass over the tokens its cache
row does not hold yet: the rows and the prefix reuse are generate()'s (cache.place), so the turns of
one conversation, scored in order under one key, each prefill only their new part. Logits are
computed only at the positions that predict span tokens.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import torch

from mtpb.engine.cache import additive_mask, place
from mtpb.engine.generate import Engine


@dataclass(frozen=True)
class ScoreRequest:
    text: str
    span_start: int                    # character offset of the span's first character
    key: Hashable | None = None        # the sequence's identity across calls, for reusing its cache row


@dataclass(frozen=True)
class SpanScore:
    logprobs: tuple[float, ...]        # natural log-probability of each span token given all before it
    context_tokens: int                # tokens before the span
    reused_tokens: int                 # tokens whose keys/values came from the cache

    @property
    def nll(self) -> float:
        return -sum(self.logprobs)

    @property
    def tokens(self) -> int:
        return len(self.logprobs)


@dataclass
class _Row:
    index: int
    ids: list[int]
    span: int                          # index of the first span token (at least 1)
    start: int = 0                     # tokens already in the cache row when its pass begins


def encode_span(engine: Engine, text: str, span_start: int) -> tuple[list[int], int]:
    """The text's token ids and the index of the first token starting at or after span_start. A
    span at the very start keeps its first token unscored (nothing predicts it); a text longer
    than the engine's max_length keeps its most recent end (the span must fit in it)."""
    enc = engine.tokenizer.tk.encode(text)
    ids, offsets = list(enc.ids), enc.offsets
    span = next((i for i, (a, _) in enumerate(offsets) if a >= span_start), len(ids))
    cut = max(len(ids) - engine.max_length, 0)
    if cut > span:
        raise ValueError(f"the scored span has {len(ids) - span} tokens, more than max_length "
                         f"{engine.max_length}")
    return ids[cut:], max(span - cut, 1)


@torch.inference_mode()
def score(engine: Engine, requests: list[ScoreRequest]) -> list[SpanScore]:
    """Per-token log-probabilities of each request's span, batched by the engine's max_batch."""
    out: list[SpanScore] = []
    for lo in range(0, len(requests), engine.max_batch):
        out += _score_batch(engine, requests[lo:lo + engine.max_batch])
    return out


def _score_batch(engine: Engine, requests: list[ScoreRequest]) -> list[SpanScore]:
    engine._tick += 1
    rows = []
    for i, r in enumerate(requests):
        ids, span = encode_span(engine, r.text, r.span_start)
        rows.append(_Row(i, ids, span))
    engine.pool.ensure(len(rows), max(len(r.ids) for r in rows))
    plan = place(engine.pool, [r.ids for r in rows], [q.key for q in requests], engine._tick)
    ordered = [rows[i] for i in plan.order]           # ordered[k] is the request in cache row k
    scores: dict[int, list[float]] = {}
    reused = {}
    # Leaders first (their rows hold what they reuse); then followers copy their leader's row.
    n_lead = plan.n_leaders
    for k, row in enumerate(ordered[:n_lead]):
        row.start = min(plan.start[row.index], row.span - 1)
        engine.pool.serve(k, requests[row.index].key, engine._tick, row.start)
    _forward_groups(engine, ordered, 0, n_lead, scores)
    if n_lead < len(ordered):
        row_of = {r.index: k for k, r in enumerate(ordered)}
        followers = ordered[n_lead:]
        src = {n_lead + j: row_of[plan.leader[r.index]] for j, r in enumerate(followers)}
        engine.pool.move(src, max(plan.start[r.index] for r in followers))
        for j, row in enumerate(followers):
            row.start = min(plan.start[row.index], row.span - 1)
            engine.pool.serve(n_lead + j, requests[row.index].key, engine._tick, row.start)
        _forward_groups(engine, ordered, n_lead, len(ordered), scores)
    for row in rows:
        reused[row.index] = row.start
    return [SpanScore(tuple(scores[r.index]), r.span, reused[r.index]) for r in rows]


def _forward_groups(engine: Engine, rows: list[_Row], lo: int, hi: int, scores: dict) -> None:
    """Rows [lo, hi) in contiguous groups within the engine's prefill token budget, which also bounds
    a group's logits (a row's span tokens are among its uncached ones)."""
    a = lo
    while a < hi:
        width = max(len(rows[a].ids) - rows[a].start, 1)
        b = a + 1
        while b < hi and (b - a + 1) * max(width, len(rows[b].ids) - rows[b].start) <= engine.prefill_tokens:
            width = max(width, len(rows[b].ids) - rows[b].start)
            b += 1
        _forward(engine, rows[a:b], a, scores)
        a = b


def _forward(engine: Engine, group: list[_Row], lo: int, scores: dict) -> None:
    """One forward pass over each row's uncached tokens, logits only where span tokens are predicted."""
    dev = engine.device
    chunks = [r.ids[r.start:] for r in group]
    width = max(map(len, chunks))
    ids = torch.tensor([c + [0] * (width - len(c)) for c in chunks], device=dev)            # (B, W)
    start = torch.tensor([r.start for r in group], device=dev)
    lengths = torch.tensor([len(c) for c in chunks], device=dev)
    offset = torch.arange(width, device=dev)
    pos = start[:, None] + offset                                                            # (B, W)
    write = torch.where(offset < lengths[:, None], pos, engine.pool.sink)
    key_len = max(r.start + len(c) for r, c in zip(group, chunks))
    mask = None
    if len(group) > 1:
        mask = additive_mask((torch.arange(key_len, device=dev) <= pos[:, :, None])[:, None], engine.dtype)  # (B, 1, W, K)
    # position p predicts token p + 1: span tokens [span, n) come from positions [span - 1, n - 1)
    n_pred = max(len(r.ids) - r.span for r in group)
    picks = [[min(r.span - 1 + j, len(r.ids) - 2) - r.start for j in range(n_pred)] for r in group]
    last = torch.tensor(picks, device=dev).clamp(min=0)                                      # (B, k)
    cache = engine.pool.view(lo, lo + len(group), write, key_len, mask)
    logits = engine.net(ids, pos.clamp(max=engine.model.cfg.n_positions - 1), cache, last=last)  # (B, k, V)
    logprobs = torch.log_softmax(logits.float(), dim=-1)
    for b, (r, chunk) in enumerate(zip(group, chunks)):
        engine.pool.extend(lo + b, chunk)
        targets = torch.tensor(r.ids[r.span:], device=dev)
        got = logprobs[b, :len(targets)].gather(-1, targets[:, None])[:, 0]
        scores[r.index] = got.tolist()
