"""The device mesh and where each array lives on it: Megatron-style tensor parallelism over the
`model` axis, data parallelism over the `data` axis (JAXFORMER's layout, written as jax.sharding
annotations; XLA inserts the collectives).

- qkv and fc_in are split by columns (heads, inner units), out_proj and fc_out by rows, so each
  device runs its heads and its slice of the MLP, and one all-reduce per layer sums the partial
  outputs; LayerNorms, embeddings and lm_head are replicated.
- The KV cache is split by heads over `model` and by rows over `data`.

A mesh is written DATAxMODEL (`8x1`: data-parallel 8, `1x8`: tensor-parallel 8, `2x4`).
"""
from __future__ import annotations

import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P

from mtpb.engine.checkpoint import EngineError
from mtpb.engine.config import CodeGenConfig

PARAM_SPECS = {
    "wte": P(), "ln_f_w": P(), "ln_f_b": P(), "lm_head": P(), "lm_head_b": P(), "sin": P(), "cos": P(),
    "ln_1_w": P(), "ln_1_b": P(),
    "qkv": P(None, None, None, "model", None),      # (L, E, 3, H, D): heads
    "out": P(None, "model", None, None),            # (L, H, D, E): heads
    "fc_in": P(None, None, "model"),                # (L, E, I): inner units
    "fc_in_b": P(None, "model"),
    "fc_out": P(None, "model", None),               # (L, I, E): inner units
    "fc_out_b": P(),
}
CACHE_SPEC = P(None, "data", None, None, "model", None)   # (L, R, T, 2, H, D)


def parse_mesh(spec: str | None, devices: list, cfg: CodeGenConfig, weight_bytes: int) -> Mesh:
    """The mesh `spec` (DATAxMODEL) over the first DATA x MODEL `devices`, or by default (all of them): the fewest model shards that
    leave each device at least half its memory for the cache, the rest data-parallel."""
    n = len(devices)
    if spec is None:
        data, model = n // (tp := default_model_shards(devices, cfg, weight_bytes)), tp
    else:
        try:
            data, model = (int(x) for x in str(spec).lower().split("x"))
        except ValueError:
            raise EngineError("write the mesh as DATAxMODEL, e.g. 1x8, 8x1 or 2x4", "mesh", spec) from None
        if data < 1 or model < 1 or data * model > n:
            raise EngineError(f"DATAxMODEL must multiply to at most the {n} devices present", "mesh", spec)
    if cfg.n_head % model or cfg.inner_dim % model:
        raise EngineError(f"the model axis ({model}) must divide the {cfg.n_head} heads and "
                          f"{cfg.inner_dim} inner units", "mesh", spec or f"{data}x{model}")
    return Mesh(np.asarray(devices[:data * model]).reshape(data, model), ("data", "model"))


def default_model_shards(devices: list, cfg: CodeGenConfig, weight_bytes: int) -> int:
    limit = None
    try:
        limit = (devices[0].memory_stats() or {}).get("bytes_limit")
    except Exception:   # backends without memory stats (CPU)
        pass
    n = len(devices)
    for tp in (d for d in range(1, n + 1) if n % d == 0 and cfg.n_head % d == 0 and cfg.inner_dim % d == 0):
        if limit is None or weight_bytes / tp <= limit / 2:
            return tp
    return max(d for d in range(1, n + 1) if n % d == 0 and cfg.n_head % d == 0 and cfg.inner_dim % d == 0)


def param_shardings(mesh: Mesh) -> dict[str, NamedSharding]:
    return {name: NamedSharding(mesh, spec) for name, spec in PARAM_SPECS.items()}


def cache_sharding(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, CACHE_SPEC)


def replicated(mesh: Mesh) -> NamedSharding:
    return NamedSharding(mesh, P())
