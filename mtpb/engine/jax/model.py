"""The CodeGen decoder in JAX, one forward pass over a static KV cache, numerically following
transformers' CodeGenForCausalLM: parallel attention and MLP off one LayerNorm, interleaved (GPT-J)
rotary embedding on the first rotary_dim dimensions of each head, gelu_new, attention scores and
softmax in fp32, lm_head with a bias, fp32 logits.

Weights are one pytree of arrays with the layers stacked on a leading axis, so the blocks run as one
lax.scan: XLA compiles one layer, not n_layer copies. Shapes (L layers, E = n_embd, H heads of D,
I = inner, V vocab, R cache rows, T cache positions + 1 sink):

    wte (V, E)          ln_1 w/b (L, E)       qkv (L, E, 3, H, D)  [q, k, v] by head
    out (L, H, D, E)    fc_in (L, E, I) + b (L, I)                 fc_out (L, I, E) + b (L, E)
    ln_f w/b (E,)       lm_head (E, V) + b (V,)                     sin/cos (n_positions, rot/2) fp32
    cache (L, R, T, 2, H, D): keys then values

Heads are an axis of their own in qkv, out and the cache, so tensor parallelism is a sharding of
that axis (sharding.py); the model code does not change with the mesh.
"""
from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from mtpb.engine.config import CodeGenConfig


def rotary_tables(n_positions: int, dim: int) -> tuple[np.ndarray, np.ndarray]:
    """sin, cos (n_positions, dim/2) fp32, computed in the order transformers computes them."""
    inv_freq = (1.0 / (10000 ** (np.arange(0, dim, 2, dtype=np.int64) / dim))).astype(np.float32)
    angles = np.arange(n_positions, dtype=np.float32)[:, None] * inv_freq[None, :]
    return np.sin(angles).astype(np.float32), np.cos(angles).astype(np.float32)


def rotate(x: jax.Array, sin: jax.Array, cos: jax.Array) -> jax.Array:
    """Interleaved rotary on x (B, W, H, rot) in fp32; sin, cos (B, W, 1, rot/2). The pair
    (x[2i], x[2i+1]) turns by angle_i."""
    x = x.astype(jnp.float32)
    even, odd = x[..., 0::2], x[..., 1::2]                                   # (B, W, H, rot/2)
    return jnp.stack([even * cos - odd * sin, odd * cos + even * sin], axis=-1).reshape(x.shape)


def gelu_new(x: jax.Array) -> jax.Array:
    return 0.5 * x * (1.0 + jnp.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3)))


def layer_norm(x: jax.Array, w: jax.Array, b: jax.Array, eps: float) -> jax.Array:
    """In fp32 whatever the model dtype (as torch's LayerNorm kernels accumulate), result in x's dtype."""
    h = x.astype(jnp.float32)
    mean = h.mean(-1, keepdims=True)
    var = jnp.square(h - mean).mean(-1, keepdims=True)
    h = (h - mean) * jax.lax.rsqrt(var + eps)
    return (h * w.astype(jnp.float32) + b.astype(jnp.float32)).astype(x.dtype)


def forward(params: dict, cache: jax.Array, ids: jax.Array, pos: jax.Array, write: jax.Array,
            rows: jax.Array, last: jax.Array | None, *, cfg: CodeGenConfig, key_len: int):
    """One pass of B sequences of W tokens over the cache.

    ids, pos, write: (B, W) token ids, their positions, the cache position each token's keys and
    values go to (padding: the sink, position T - 1, which no query ever reads).
    rows: (B,) the cache row of each sequence. last: (B,) the one position per sequence whose
    logits are wanted, or None for all of them. key_len (static): queries read cache positions
    [0, key_len), masked to those at or before their own position.
    Returns fp32 logits (B, V) (or (B, W, V) when last is None) and the updated cache.
    """
    B, W = ids.shape
    H, D, r = cfg.n_head, cfg.head_dim, cfg.rotary
    dtype = params["wte"].dtype
    sin = params["sin"][pos][:, :, None]                                      # (B, W, 1, r/2)
    cos = params["cos"][pos][:, :, None]
    allowed = jnp.arange(key_len)[None, None, :] <= pos[:, :, None]           # (B, W, K)
    x = params["wte"][ids]                                                    # (B, W, E)
    blocks = {k: params[k] for k in ("ln_1_w", "ln_1_b", "qkv", "out", "fc_in", "fc_in_b", "fc_out", "fc_out_b")}

    def block(carry, layer):
        x, cache = carry
        p, i = layer
        h = layer_norm(x, p["ln_1_w"], p["ln_1_b"], cfg.layer_norm_epsilon)   # (B, W, E)
        qkv = jnp.einsum("bwe,ethd->bwthd", h, p["qkv"])                     # (B, W, 3, H, D)
        qk = jnp.concatenate([rotate(qkv[:, :, :2, :, :r].reshape(B, W, 2 * H, r), sin, cos)
                              .reshape(B, W, 2, H, r).astype(dtype), qkv[:, :, :2, :, r:]], axis=-1)
        q = qk[:, :, 0]                                                       # (B, W, H, D)
        kv = jnp.concatenate([qk[:, :, 1:], qkv[:, :, 2:]], axis=2)           # (B, W, 2, H, D)
        cache = cache.at[i, rows[:, None], write].set(kv)
        keys = cache[i, rows, :key_len]                                       # (B, K, 2, H, D)
        scores = jnp.einsum("bwhd,bkhd->bhwk", q.astype(jnp.float32), keys[:, :, 0].astype(jnp.float32))
        scores = jnp.where(allowed[:, None], scores, jnp.finfo(jnp.float32).min) / math.sqrt(D)
        probs = jax.nn.softmax(scores, axis=-1).astype(dtype)                 # (B, H, W, K)
        y = jnp.einsum("bhwk,bkhd->bwhd", probs, keys[:, :, 1])               # (B, W, H, D)
        attn = jnp.einsum("bwhd,hde->bwe", y, p["out"])                       # (B, W, E)
        mlp = gelu_new(jnp.einsum("bwe,ei->bwi", h, p["fc_in"]) + p["fc_in_b"])   # (B, W, I)
        mlp = jnp.einsum("bwi,ie->bwe", mlp, p["fc_out"]) + p["fc_out_b"]     # (B, W, E)
        return (x + attn + mlp, cache), None

    (x, cache), _ = jax.lax.scan(block, (x, cache), (blocks, jnp.arange(cfg.n_layer)))
    if last is not None:
        x = x[jnp.arange(B), last]                                            # (B, E)
    x = layer_norm(x, params["ln_f_w"], params["ln_f_b"], cfg.layer_norm_epsilon)
    logits = x @ params["lm_head"] + params["lm_head_b"]                      # (B, [W,] V)
    return logits.astype(jnp.float32), cache


def empty_cache(cfg: CodeGenConfig, rows: int, positions: int, dtype) -> jax.Array:
    """(L, R, positions + 1, 2, H, D) zeros: stale positions are masked, but must never be NaN."""
    return jnp.zeros((cfg.n_layer, rows, positions + 1, 2, cfg.n_head, cfg.head_dim), dtype)


def logits(params: dict, cfg: CodeGenConfig, ids) -> jax.Array:
    """Logits (B, L, V) at every position of ids (B, L), no cache kept: for tests and scoring."""
    ids = jnp.asarray(ids)
    B, L = ids.shape
    pos = jnp.broadcast_to(jnp.arange(L), (B, L))
    cache = empty_cache(cfg, B, L, params["wte"].dtype)
    out, _ = _forward(params, cache, ids, pos, pos, jnp.arange(B), None, cfg=cfg, key_len=L)
    return out


_forward = jax.jit(forward, static_argnames=("cfg", "key_len"))
