"""The static KV cache of the torch runtime: rows of keys and values in torch tensors. Which row
holds what, and the plan that reuses it, are framework-free (rows.py)."""
from __future__ import annotations

import torch

from mtpb.engine.model import CacheView, CodeGenConfig
from mtpb.engine.rows import GROW, MIN_SHARED, Placement, RowBook, common_prefix, place  # noqa: F401  (re-exported)


def additive_mask(allowed: torch.Tensor, dtype) -> torch.Tensor:
    """bool (True = may attend) -> 0 / -inf in the model dtype, built once per forward pass so the
    attention kernels of every layer take it as is."""
    return torch.zeros(allowed.shape, dtype=dtype, device=allowed.device).masked_fill_(~allowed, float("-inf"))


class KVPool(RowBook):
    """kv[l]: (rows, 2, H, capacity + 1, D), keys then values; position `capacity` is a sink for
    padding writes.

    Allocated with zeros (stale positions are masked, but must never be NaN) and grown on demand,
    so memory follows what the calls need up to rows x max_length. Which tokens each row holds is
    RowBook's (rows.py).
    """

    def __init__(self, cfg: CodeGenConfig, max_rows: int, max_length: int, device, dtype):
        super().__init__(max_rows, max_length)
        self.cfg, self.device, self.dtype = cfg, device, dtype
        self.kv: list[torch.Tensor] = []

    def _grow(self, rows: int, capacity: int) -> None:
        H, D = self.cfg.n_head, self.cfg.head_dim
        for layer in range(self.cfg.n_layer):   # one layer at a time: peak is one layer extra
            new = torch.zeros(rows, 2, H, capacity + 1, D, device=self.device, dtype=self.dtype)
            if self.rows:
                new[:self.rows, :, :, :self.capacity] = self.kv[layer][:, :, :, :self.capacity]
                self.kv[layer] = new
            else:
                self.kv.append(new)

    def _copy_rows(self, moves: dict[int, int], n_pos: int) -> None:
        dst = torch.tensor(list(moves), device=self.device)
        from_ = torch.tensor(list(moves.values()), device=self.device)
        for layer in self.kv:
            layer[dst, :, :, :n_pos] = layer[from_, :, :, :n_pos]

    def view(self, lo: int, hi: int, write_pos: torch.Tensor, key_len: int,
             mask: torch.Tensor | None) -> CacheView:
        """What one forward pass over rows [lo, hi) reads and writes (see model.CacheView)."""
        rows = torch.arange(hi - lo, device=self.device)[:, None]
        return CacheView([kv[lo:hi] for kv in self.kv], write_pos, key_len, mask, rows)
