"""The JAX runtime's KV cache: one array (L, R, T, 2, H, D) on the mesh (rows over `data`, heads
over `model`), allocated once at its full size, R = the engine's batch size (rounded up to the data
axis) and T = max_length + 1, so that every step sees one cache shape (the torch runtime grows its
cache instead; a new shape here would recompile every step). Which row holds what is
rows.RowBook's, shared with torch.
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

    def ensure(self, rows: int, length: int) -> None:
        super().ensure(rows, self.max_length)    # every position at once: one cache shape, no recompiling

    def _grow(self, rows: int, capacity: int) -> None:
        if self.cache is not None:
            return                               # allocated once: physical_rows x max_length
        cfg = self.cfg
        shape = (cfg.n_layer, self.physical_rows, capacity + 1, 2, cfg.n_head, cfg.head_dim)
        self.cache = jax.jit(lambda: jnp.zeros(shape, self.dtype), out_shardings=self.sharding)()

    def _copy_rows(self, moves: dict[int, int], n_pos: int) -> None:
        source = np.arange(self.physical_rows)
        for dst, src in moves.items():
            source[dst] = src
        self.cache = self._permute(self.cache, jnp.asarray(source, dtype=jnp.int32))
