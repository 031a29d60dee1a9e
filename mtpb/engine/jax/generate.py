"""The JAX engine: batching.Generator's loop (shared with the torch engine) over jit-compiled steps.

Every forward pass, prefill or decode, is padded up to a shape bucket, so XLA compiles each bucket
once and a long run stops compiling after its first calls:
    rows     a power of two, at least the data axis, at most the pool's rows
    width    32 times a power of four (prefill; decode is width 1): few compilations, some padding
    keys     KEY_STEP times a power of two, up to max_length (the cache holds max_length from the start)
Padding rows and tokens write their keys and values to the cache's sink position, which no query
reads, and their logits are dropped. Greedy decoding takes the argmax inside the step; sampling runs
on the device (sampling.py) from the same per-request uniforms as the torch engine.
"""
from __future__ import annotations

from functools import lru_cache, partial

import jax
import jax.numpy as jnp
import numpy as np

from mtpb.engine.batching import Generator, _Live
from mtpb.engine.config import CodeGenConfig
from mtpb.engine.jax.cache import JaxKVPool
from mtpb.engine.jax.model import forward
from mtpb.engine.jax.sampling import sample_next
from mtpb.engine.jax.sharding import cache_sharding, replicated
from mtpb.engine.tokenizer import Tokenizer

KEY_STEP = 256


def _step(params, cache, ids, pos, write, rows, last, *, cfg: CodeGenConfig, key_len: int):
    logits, cache = forward(params, cache, ids, pos, write, rows, last, cfg=cfg, key_len=key_len)
    return logits, jnp.argmax(logits, axis=-1), cache


@lru_cache(maxsize=None)
def compiled_steps(cfg: CodeGenConfig, mesh) -> tuple:
    """The jitted prefill and decode steps and sampler for a model shape on a mesh, shared by every
    engine of that shape (a second engine over the same model compiles nothing new). Prefill and
    decode are two jitted functions over one step so that each keeps its own compilation cache."""
    out = (replicated(mesh), replicated(mesh), cache_sharding(mesh))
    prefill = jax.jit(partial(_step, cfg=cfg), static_argnames="key_len", donate_argnums=1, out_shardings=out)
    decode = jax.jit(partial(_step, cfg=cfg), static_argnames="key_len", donate_argnums=1, out_shardings=out)
    return prefill, decode, jax.jit(sample_next, static_argnames="top_k")


def bucket(n: int, low: int, high: int, factor: int = 2) -> int:
    """The smallest low * factor^k >= n, at most high."""
    b = low
    while b < n:
        b *= factor
    return min(b, high)


class JaxEngine(Generator):
    def __init__(self, params: dict, cfg: CodeGenConfig, tokenizer: Tokenizer, mesh, max_batch: int = 16,
                 max_length: int | None = None, prefill_tokens: int | None = None, top_k: int = 50):
        """params: model.py's pytree, placed on `mesh` (sharding.param_shardings)."""
        self.params, self.cfg, self.mesh, self.top_k = params, cfg, mesh, top_k
        self.dtype = params["wte"].dtype
        self.data = mesh.shape["data"]
        physical = -(-max_batch // self.data) * self.data     # rows split evenly over the data axis
        length = min(max_length or cfg.n_positions, cfg.n_positions)
        pool = JaxKVPool(cfg, max_batch, physical, length, self.dtype, cache_sharding(mesh))
        self.setup(tokenizer, pool, max_batch, length, prefill_tokens or 2048)
        self.prefill_fn, self.decode_fn, self.sample_fn = compiled_steps(cfg, mesh)
        self.buckets: dict[str, set] = {"prefill": set(), "decode": set()}   # shapes run, per step kind

    def describe(self) -> dict:
        devices = self.mesh.devices.ravel()
        return {"parameters": int(sum(v.size for k, v in self.params.items() if k not in ("sin", "cos"))),
                "dtype": jnp.dtype(self.dtype).name, "device": f"{devices[0].platform} x{len(devices)}",
                "runtime": "jax", "mesh": f"{self.mesh.shape['data']}x{self.mesh.shape['model']}",
                "batch_size": self.max_batch, "max_length": self.max_length, "top_k": self.top_k}

    def _key_len(self, need: int) -> int:
        return bucket(need, KEY_STEP, self.pool.capacity)

    def _run(self, kind: str, ids, pos, write, rows, last, need: int):
        pool, key_len = self.pool, self._key_len(need)
        self.buckets[kind].add((ids.shape, key_len, pool.capacity))
        fn = self.prefill_fn if kind == "prefill" else self.decode_fn
        pos = np.minimum(pos, self.cfg.n_positions - 1)   # padding may run past the rotary table
        logits, greedy, pool.cache = fn(self.params, pool.cache, ids, pos, write, rows, last, key_len=key_len)
        return logits, greedy

    def _prefill_group(self, group: list[_Live], lo: int, starts: list[int]):
        chunks = [s.prompt[st:] for s, st in zip(group, starts)]
        n = len(group)
        B = bucket(n, self.data, self.pool.physical_rows)
        W = bucket(max(map(len, chunks)), 32, 1 << 30, factor=4)
        ids = np.zeros((B, W), np.int32)
        lengths = np.ones(B, np.int32)
        start = np.zeros(B, np.int32)
        for r, (c, st) in enumerate(zip(chunks, starts)):
            ids[r, :len(c)], lengths[r], start[r] = c, len(c), st
        offset = np.arange(W, dtype=np.int32)
        pos = start[:, None] + offset                                                   # (B, W)
        write = np.where((offset < lengths[:, None]) & (np.arange(B) < n)[:, None], pos, self.pool.sink)
        rows = np.full(B, lo, np.int32)          # padding rows read row lo and write only to the sink
        rows[:n] = np.arange(lo, lo + n)
        need = max(st + len(c) for st, c in zip(starts, chunks))
        logits, _ = self._run("prefill", ids, pos, write.astype(np.int32), rows, lengths - 1, need)
        for r, chunk in enumerate(chunks):
            self.pool.extend(lo + r, chunk)
        return logits[:n]

    def _decode_step(self, tokens: list[int], positions: list[int], changed: bool):
        n = len(tokens)
        B = bucket(n, self.data, self.pool.physical_rows)
        ids = np.zeros((B, 1), np.int32)
        pos = np.zeros((B, 1), np.int32)
        write = np.full((B, 1), self.pool.sink, np.int32)
        ids[:n, 0], pos[:n, 0], write[:n, 0] = tokens, positions, positions
        logits, greedy = self._run("decode", ids, pos, write, np.arange(B, dtype=np.int32),
                                   np.zeros(B, np.int32), max(positions) + 1)
        return logits, np.asarray(greedy)[:n]      # logits stay padded: slicing would compile per n

    def _choose(self, rows: list[_Live], logits, greedy):
        """logits may have padding rows past len(rows) (decode): they are greedy, and dropped."""
        if all(s.request.temperature <= 0 for s in rows):
            return greedy if greedy is not None else jnp.argmax(logits, axis=-1)
        temp, top_p, u = (np.zeros(logits.shape[0], np.float32) for _ in range(3))
        for r, s in enumerate(rows):
            temp[r], top_p[r] = s.request.temperature, s.request.top_p
            u[r] = s.uniforms.next() if s.request.temperature > 0 else 0.0
        return np.asarray(self.sample_fn(logits, temp, top_p, u, top_k=self.top_k))[:len(rows)]

    def _concat(self, parts: list):
        return parts[0] if len(parts) == 1 else jnp.concatenate(parts)

    def _tolist(self, tokens) -> list[int]:
        return np.asarray(tokens).tolist()
