"""CUDA graphs for the decode step: one kernel-launch replay instead of hundreds of launches.

A decode step of a small model on a fast GPU costs far more in Python and kernel launches than in
arithmetic; replaying a captured graph removes nearly all of it. Graphs need static shapes, so the
live rows are padded up to a row bucket and the keys up to a multiple of KEY_STEP: padding rows
write to the sink position and attend to key 0 only, padding keys are masked. A graph holds the
cache tensors it was captured with, so every graph is dropped when the pool reallocates.
"""
from __future__ import annotations

import torch

from mtpb.engine.cache import KVPool
from mtpb.engine.model import CacheView, CodeGen

KEY_STEP = 256
ROW_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


class _Graph:
    def __init__(self, rows: int, keys: int, device):
        self.graph = torch.cuda.CUDAGraph()
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.pos = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.write = torch.zeros(rows, 1, dtype=torch.long, device=device)
        self.mask = torch.zeros(rows, 1, 1, keys, dtype=torch.bool, device=device)
        self.keys_range = torch.arange(keys, device=device)
        self.logits: torch.Tensor | None = None


class GraphedDecode:
    def __init__(self, model: CodeGen, pool: KVPool):
        self.model, self.pool = model, pool
        self.graphs: dict[tuple[int, int], _Graph] = {}
        self.version = -1
        self.mempool = None

    def buckets(self, n: int, key_len: int) -> tuple[int, int]:
        rows = next((b for b in ROW_BUCKETS if b >= n), n)
        rows = min(rows, self.pool.rows) if rows > self.pool.rows else rows
        keys = min(-(-key_len // KEY_STEP) * KEY_STEP, self.pool.capacity)
        return max(rows, n), max(keys, key_len)

    def __call__(self, ids: torch.Tensor, pos: torch.Tensor, key_len: int) -> torch.Tensor:
        """ids, pos: (n, 1) for the live rows [0, n) -> logits (n, V)."""
        n = ids.shape[0]
        rows, keys = self.buckets(n, key_len)
        if self.version != self.pool.version:
            self.graphs.clear()
            self.version = self.pool.version
        g = self.graphs.get((rows, keys))
        fresh = g is None
        if fresh:
            g = _Graph(rows, keys, ids.device)
        g.ids[:n].copy_(ids)
        g.ids[n:].zero_()
        g.pos[:n].copy_(pos)
        g.pos[n:].zero_()
        g.write.copy_(g.pos)
        g.write[n:].fill_(self.pool.sink)
        torch.le(g.keys_range, g.pos[:, :, None, None].squeeze(-1), out=g.mask[:, 0])
        if fresh:
            self._capture(g, rows, keys)
            self.graphs[(rows, keys)] = g
        g.graph.replay()
        return g.logits[:n]

    def _run(self, g: _Graph, rows: int, keys: int) -> torch.Tensor:
        cache = self.pool.view(0, rows, g.write, keys, g.mask)
        return self.model(g.ids, g.pos, cache)[:, 0]

    def _capture(self, g: _Graph, rows: int, keys: int) -> None:
        # Warm-up on a side stream (allocator and library handles), then capture. The warm-up
        # writes the same keys/values the replay will write, so running it is harmless.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._run(g, rows, keys)
        torch.cuda.current_stream().wait_stream(side)
        if self.mempool is None:
            self.mempool = torch.cuda.graph_pool_handle()
        with torch.cuda.graph(g.graph, pool=self.mempool):
            g.logits = self._run(g, rows, keys)
