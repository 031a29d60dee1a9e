"""The static KV cache's rows and the plan that reuses what they already hold, whatever array
library stores the keys and values (torch: cache.KVPool, JAX: jax/cache.py).

Each row remembers the token ids whose keys and values it holds and the request key (the caller's
identity of a sequence, e.g. (problem, test, sample)) it last served. A new request starts from the
row sharing the longest common token prefix with it: its own row from the previous turn (the
history of turn t is the prefix of turn t+1), a sibling's row (samples share their prompt), or,
inside one batch, another request that is prefilled first ("leader"). Memory stays bounded: the
pool has a fixed number of rows, and rows whose keys stop coming back are overwritten, least
recently used first.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Hashable

import numpy as np

GROW = 256          # capacity grows in steps of this many positions
MIN_SHARED = 16     # a leader is worth waiting for when it saves at least this many tokens


def common_prefix(a: np.ndarray, b: np.ndarray) -> int:
    n = min(len(a), len(b))
    diff = np.flatnonzero(a[:n] != b[:n])
    return int(diff[0]) if len(diff) else n


class RowBook:
    """The bookkeeping of a pool of cache rows: per row the token ids whose keys and values it
    holds, the request key it serves and the call that last used it. These change only through the
    methods below (readers may look). A subclass stores the keys and values: _grow allocates
    (rows, capacity + 1 positions; position `capacity` is a sink for padding writes), _copy_rows
    copies the first n_pos positions of rows."""

    def __init__(self, max_rows: int, max_length: int):
        self.max_rows, self.max_length = max_rows, max_length
        self.rows = self.capacity = 0
        self.version = 0              # bumped on reallocation (compiled steps may hold the old arrays)
        self.tokens: list[list[int]] = []
        self.keys: list[Hashable | None] = []
        self.used: list[int] = []

    @property
    def sink(self) -> int:
        return self.capacity

    def ensure(self, rows: int, length: int) -> None:
        rows = max(rows, self.rows)
        length = min(max(length, self.capacity), self.max_length)
        capacity = -(-length // GROW) * GROW if length > self.capacity else self.capacity
        capacity = min(capacity, self.max_length)
        if rows == self.rows and capacity == self.capacity:
            return
        self._grow(rows, capacity)
        self.tokens += [[] for _ in range(rows - self.rows)]
        self.keys += [None] * (rows - self.rows)
        self.used += [-1] * (rows - self.rows)
        self.rows, self.capacity = rows, capacity
        self.version += 1

    def move(self, src: dict[int, int], n_pos: int) -> None:
        """Row r becomes row src[r]: its first n_pos keys/values, the tokens they hold, the key it
        serves and when it was used (all sources are read before any write)."""
        moves = {r: s for r, s in src.items() if r != s}
        if not moves:
            return
        if n_pos:
            self._copy_rows(moves, n_pos)
        tokens, keys, used = self.tokens[:], self.keys[:], self.used[:]
        for r, s in moves.items():
            self.tokens[r], self.keys[r], self.used[r] = tokens[s][:n_pos], keys[s], used[s]

    def serve(self, row: int, key: Hashable | None, tick: int, keep: int) -> None:
        """Row `row` serves request `key` in call `tick`, keeping the first `keep` tokens it holds
        (the positions after them will be overwritten)."""
        self.tokens[row], self.keys[row], self.used[row] = self.tokens[row][:keep], key, tick

    def forget(self, row: int) -> None:
        self.tokens[row], self.keys[row], self.used[row] = [], None, -1

    def extend(self, row: int, tokens: list[int]) -> None:
        """A forward pass wrote the keys/values of `tokens` right after those the row holds."""
        self.tokens[row] += tokens

    def _grow(self, rows: int, capacity: int) -> None:
        raise NotImplementedError

    def _copy_rows(self, moves: dict[int, int], n_pos: int) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Placement:
    """Where each request of a batch lives and what it starts from.

    order[r]: the request in row r (leaders first, longest remainder first; then followers).
    start[i]: prompt tokens of request i already in its row once its phase begins.
    leader[i]: the request whose row request i copies its prefix from (phase 2), or None.
    """
    order: tuple[int, ...]
    start: tuple[int, ...]
    leader: tuple[int | None, ...]
    n_leaders: int


def place(pool: RowBook, prompts: list[list[int]], keys: list[Hashable | None], tick: int) -> Placement:
    """Choose rows 0..N-1 for N requests, move reusable rows there, keep other rows' contents."""
    n = len(prompts)
    arrays = [np.asarray(p, dtype=np.int64) for p in prompts]
    held = [np.asarray(t, dtype=np.int64) for t in pool.tokens]
    own = {k: r for r, k in enumerate(pool.keys) if k is not None}
    best_row: list[int | None] = []
    best_len: list[int] = []
    for i, a in enumerate(arrays):
        row, length = own.get(keys[i]), 0
        if row is not None:
            length = common_prefix(a, held[row])
        for r, h in enumerate(held):
            shared = common_prefix(a, h) if len(h) else 0
            if shared > length:
                row, length = r, shared
        best_row.append(row if length else None)
        best_len.append(length)

    leader: list[int | None] = [None] * n
    leaders: list[int] = []
    for i, a in enumerate(arrays):
        gains = [(common_prefix(a, arrays[j]), j) for j in leaders]
        shared, j = max(gains, default=(0, None))
        if j is not None and shared >= best_len[i] + MIN_SHARED:
            leader[i], best_len[i], best_row[i] = j, shared, None
        else:
            leaders.append(i)
    start = [min(best_len[i], len(prompts[i]) - 1) for i in range(n)]
    followers = [i for i in range(n) if leader[i] is not None]
    order = (sorted(leaders, key=lambda i: start[i] - len(prompts[i]))
             + sorted(followers, key=lambda i: start[i] - len(prompts[i])))

    # Rows past N keep the most recently used contents that no request of this batch claims.
    claimed = set(keys) - {None}
    keep = sorted((r for r in range(pool.rows) if pool.keys[r] not in claimed and pool.tokens[r]),
                  key=lambda r: -pool.used[r])
    pool.ensure(n, 0)
    src = {r: best_row[i] for r, i in enumerate(order) if best_row[i] is not None}
    src.update(zip(range(n, pool.rows), keep))
    pool.move(src, max((len(pool.tokens[s]) for s in src.values()), default=0))
    for r, i in enumerate(order):
        pool.serve(r, keys[i], tick, start[i] if best_row[i] is not None else 0)
    for r in range(n, pool.rows):
        if r not in src:
            pool.forget(r)
    return Placement(tuple(order), tuple(start), tuple(leader), len(leaders))
