"""CUDA graphs for the decode step: one replay instead of hundreds of kernel launches.

A decode step of a small model on a fast GPU costs far more in Python and launches than in
arithmetic, so the whole step lives in static buffers and is captured once per shape bucket:
the live rows are padded up to a row bucket and the keys up to a multiple of KEY_STEP. Padding rows
write to the sink position and only ever see finite stale keys; padding keys are masked. The step
also takes the argmax and advances the positions on the device, so a greedy step costs one replay
and one copy of the chosen tokens back to the host. A graph holds the cache tensors it was captured
with, so all graphs (and their memory pool) are dropped when the pool reallocates.

With capture=False the same static-buffer step runs eagerly (on any device): that is how the CPU
tests cover the bucketing logic that the GPU replays.
"""
from __future__ import annotations

import torch

from mtpb.engine.cache import KVPool, additive_mask
from mtpb.engine.model import CodeGen

KEY_STEP = 256
ROW_BUCKETS = (1, 2, 4, 8, 12, 16, 24, 32, 48, 64, 96, 128, 192, 256)


class _Static:
    """Inputs, state and outputs of one (rows, keys) bucket."""

    def __init__(self, rows: int, keys: int, device):
        self.rows, self.keys = rows, keys
        self.graph = None
        self.ids = torch.zeros(rows, 1, dtype=torch.long, device=device)      # token to feed, per row
        self.pos = torch.zeros(rows, 1, dtype=torch.long, device=device)      # its position
        self.live = torch.zeros(rows, 1, dtype=torch.bool, device=device)     # rows [0, n) are live
        self.keys_range = torch.arange(keys, device=device)
        self.logits: torch.Tensor | None = None                              # (rows, V) fp32
        self.greedy: torch.Tensor | None = None                              # (rows,)


class StaticDecode:
    def __init__(self, model: CodeGen, pool: KVPool, capture: bool = True):
        self.model, self.pool, self.capture = model, pool, capture
        self.statics: dict[tuple[int, int], _Static] = {}
        self.current: _Static | None = None
        self.version = -1
        self.mempool = None

    def buckets(self, n: int, key_len: int) -> tuple[int, int]:
        rows = min(next((b for b in ROW_BUCKETS if b >= n), n), self.pool.rows)   # n <= pool.rows
        keys = min(-(-key_len // KEY_STEP) * KEY_STEP, self.pool.capacity)          # key_len <= capacity
        return rows, keys

    def step(self, tokens: list[int], positions: list[int], changed: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """Feed tokens at positions for live rows [0, n) -> (logits (n, V), argmax (n,)).

        changed: the rows' tokens or order differ from what the last step left on the device
        (anything but "the argmax was fed back and every row moved one position on").
        """
        n = len(tokens)
        if self.version != self.pool.version:
            self.statics.clear()
            self.current, self.mempool, self.version = None, None, self.pool.version
        rows, keys = self.buckets(n, max(positions) + 1)
        s = self.statics.get((rows, keys))
        fresh = s is None
        if fresh:
            s = self.statics[(rows, keys)] = _Static(rows, keys, self.pool.device)
        if fresh or changed or s is not self.current:
            self._upload(s, tokens, positions)
        self.current = s
        if not self.capture:
            self._body(s)
        else:
            if s.graph is None:
                self._capture(s, tokens, positions)
            s.graph.replay()
        return s.logits[:n], s.greedy[:n]

    def feed(self, chosen: torch.Tensor) -> None:
        """Replace the argmax the step fed back with the tokens actually chosen (sampling)."""
        self.current.ids[:len(chosen), 0].copy_(chosen)

    def _upload(self, s: _Static, tokens: list[int], positions: list[int]) -> None:
        n, dev = len(tokens), self.pool.device
        pad = [0] * (s.rows - n)
        s.ids.copy_(torch.tensor(tokens + pad, device=dev)[:, None])
        s.pos.copy_(torch.tensor(positions + pad, device=dev)[:, None])
        s.live.copy_((torch.arange(s.rows, device=dev) < n)[:, None])

    def _body(self, s: _Static) -> None:
        write = torch.where(s.live, s.pos, self.pool.sink)                        # (rows, 1)
        mask = additive_mask(s.keys_range <= s.pos[:, :, None, None], self.pool.dtype)   # (rows, 1, 1, keys)
        cache = self.pool.view(0, s.rows, write, s.keys, mask)
        s.logits = self.model(s.ids, s.pos, cache)[:, 0]                           # (rows, V)
        s.greedy = s.logits.argmax(dim=-1)
        s.ids.copy_(s.greedy[:, None])
        s.pos.add_(s.live.long())

    def _capture(self, s: _Static, tokens: list[int], positions: list[int]) -> None:
        # Warm up on a side stream (allocator, library handles), restore the inputs the warm-up
        # advanced, then capture. The warm-up writes the same keys/values the replay writes.
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            self._body(s)
        torch.cuda.current_stream().wait_stream(side)
        self._upload(s, tokens, positions)
        if self.mempool is None:
            self.mempool = torch.cuda.graph_pool_handle()
        s.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(s.graph, pool=self.mempool):
            self._body(s)
