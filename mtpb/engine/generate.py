"""The torch engine: batched generation over the static KV cache, less work than re-running a
model from scratch. The loop (batching.Generator) is shared with the JAX runtime; this file is its
torch array work:

- prefill only what no cache row holds yet (prefix reuse across turns and across samples), in
  right-padded groups whose padding writes go to a sink position, logits at the last position only;
- decode every live sequence in one batch, one token per step, over keys up to the longest
  live sequence only;
- stop each sequence on its own (eos, its token budget, or the caller's is_finished(text)), and
  compact the batch so finished rows cost nothing;
- sample on the device with per-request seeds (see sampling.py).
"""
from __future__ import annotations

import torch

from mtpb.engine.batching import Generator, _Live
from mtpb.engine.cache import KVPool, additive_mask
from mtpb.engine.graphs import StaticDecode
from mtpb.engine.layout import for_inference
from mtpb.engine.model import CodeGen
from mtpb.engine.requests import Completion, EngineStats, GenerationRequest  # noqa: F401  (re-exported)
from mtpb.engine.sampling import sample_next
from mtpb.engine.tokenizer import Tokenizer


class Engine(Generator):
    def __init__(self, model: CodeGen, tokenizer: Tokenizer, max_batch: int = 16,
                 max_length: int | None = None, prefill_tokens: int | None = None, top_k: int = 50,
                 decode: str = "auto", pack: bool = True):
        """model: shared with any other engine, never changed; this engine runs its own inference
        form of it (layout.for_inference: fused GEMMs, and with pack, MKL-packed weights for
        max_batch rows, fp32 on CPU only, one more copy of the weight matrices).
        decode: "graphs" (CUDA graphs, the default on cuda), "eager" (the default elsewhere), or
        "static" (the graphs' static-buffer step run eagerly: for tests)."""
        self.model = model
        p = next(model.parameters())
        self.device, self.dtype = p.device, p.dtype
        length = min(max_length or model.cfg.n_positions, model.cfg.n_positions)
        self.top_k = top_k
        self.setup(tokenizer, KVPool(model.cfg, max_batch, length, self.device, self.dtype), max_batch, length,
                   prefill_tokens or (8192 if self.device.type == "cuda" else 2048))
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

    @torch.inference_mode()
    def generate(self, requests: list[GenerationRequest], is_finished=None) -> list[Completion]:
        return super().generate(requests, is_finished)

    def _decode_step(self, tokens: list[int], positions: list[int], changed: bool):
        if self.static is not None:
            return self.static.step(tokens, positions, changed)                            # (n, V), (n,)
        return self._eager_step(tokens, positions)

    def _chosen(self, chosen: torch.Tensor, greedy: torch.Tensor) -> None:
        if self.static is not None and chosen is not greedy:
            self.static.feed(chosen)

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
            return greedy if greedy is not None else logits.argmax(dim=-1)
        dev = self.device
        temp = torch.tensor([s.request.temperature for s in rows], device=dev, dtype=torch.float32)
        top_p = torch.tensor([s.request.top_p for s in rows], device=dev, dtype=torch.float32)
        u = torch.tensor([s.uniforms.next() if s.request.temperature > 0 else 0.0 for s in rows],
                         device=dev, dtype=torch.float32)
        return sample_next(logits, temp, top_p, u, self.top_k)

    def _concat(self, parts: list[torch.Tensor]) -> torch.Tensor:
        return torch.cat(parts)

    def _tolist(self, tokens: torch.Tensor) -> list[int]:
        return tokens.tolist()
