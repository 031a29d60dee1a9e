"""The JAX runtime's KV cache: one array (L, R, T, 2, H, D) on the mesh (rows over `data`, heads
over `model`), with R fixed at the engine's batch size (rounded up to the data axis) so that every
step sees the same row count. Which row holds what is rows.RowBook's, shared with torch.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mtpb.engine.config import CodeGenConfig
from mtpb.engine.rows import RowBook


class JaxKVPool(RowBook):
    def __init__(self, cfg: CodeGenConfig, max_rows: int, physical_rows: int, max_length: int, dtype, sharding):
        super().__init__(max_rows, max_length)
        self.cfg, self.dtype, self.sharding = cfg, dtype, sharding
        self.physical_rows = physical_rows
        self.cache: jax.Array | None = None
        # row r becomes row source[r], every position (those past what a row holds are never read)
        self._permute = jax.jit(lambda cache, source: cache[:, source], donate_argnums=0, out_shardings=sharding)

    def _grow(self, rows: int, capacity: int) -> None:
        if capacity == self.capacity and self.cache is not None:
            return                               # rows are allocated once, at physical_rows
        cfg = self.cfg
        shape = (cfg.n_layer, self.physical_rows, capacity + 1, 2, cfg.n_head, cfg.head_dim)
        new = jax.jit(lambda: jnp.zeros(shape, self.dtype), out_shardings=self.sharding)()
        if self.cache is not None and self.capacity:
            old = self.capacity
            new = jax.jit(lambda n, o: n.at[:, :, :old].set(o[:, :, :old]), donate_argnums=0,
                          out_shardings=self.sharding)(new, self.cache)
        self.cache = new

    def _copy_rows(self, moves: dict[int, int], n_pos: int) -> None:
        source = np.arange(self.physical_rows)
        for dst, src in moves.items():
            source[dst] = src
        self.cache = self._permute(self.cache, jnp.asarray(source, dtype=jnp.int32))
