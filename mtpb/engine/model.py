"""The CodeGen decoder (GPT-J family) with a static KV cache, numerically following transformers'
CodeGenForCausalLM: parallel attention and MLP off one LayerNorm, interleaved rotary embedding on the
first rotary_dim dimensions of each head, gelu_new, lm_head with a bias, attention scores in fp32.

Parameter names are Hugging Face's, so a checkpoint's state dict loads as is, with one exception:
the fused qkv_proj weight is stored here as plain [q; k; v] rows (see qkv_from_hf), which turns
CodeGen's 4-shard (q, v, k) interleaving into one free split at run time. This file is the network
written once, plainly, for training (scripts/train_tiny.py) and scoring; the engine runs it through
the transforms of layout.py (fused GEMMs, packed weights), which leave this model as it is.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from mtpb.engine.config import MP_NUM, CodeGenConfig  # noqa: F401  (re-exported: the shape lives in config.py)


def qkv_from_hf(weight: torch.Tensor, n_embd: int) -> torch.Tensor:
    """HF fused rows (4 shards x [q, v, k] x local) -> [q; k; v], each in head order."""
    local = n_embd // MP_NUM
    w = weight.reshape(MP_NUM, 3, local, -1)            # (shard, q/v/k, local, n_embd)
    q, v, k = w[:, 0], w[:, 1], w[:, 2]                  # (shard, local, n_embd): shard-major = head order
    return torch.cat([q.reshape(n_embd, -1), k.reshape(n_embd, -1), v.reshape(n_embd, -1)])


def qkv_to_hf(weight: torch.Tensor, n_embd: int) -> torch.Tensor:
    """Inverse of qkv_from_hf, for saving a checkpoint that transformers reads."""
    local = n_embd // MP_NUM
    q, k, v = (t.reshape(MP_NUM, local, -1) for t in weight.split(n_embd))
    return torch.stack([q, v, k], dim=1).reshape(3 * n_embd, -1)


def rotary_tables(n_positions: int, dim: int, device=None) -> torch.Tensor:
    """(n_positions, dim/2) complex64 cos + i sin, the angles computed exactly as transformers does.

    Interleaved (GPT-J) rotary turns the pair (x[2i], x[2i+1]) by angle_i:
        out[2i]   = x[2i]   * cos_i - x[2i+1] * sin_i
        out[2i+1] = x[2i+1] * cos_i + x[2i]   * sin_i
    which is the complex product (x[2i] + i x[2i+1]) * (cos_i + i sin_i): one multiply per layer.
    """
    inv_freq = 1.0 / (10000 ** (torch.arange(0, dim, 2, dtype=torch.int64, device=device) / dim))
    angles = torch.arange(n_positions, dtype=torch.int64, device=device).float()[:, None] * inv_freq
    return torch.polar(torch.ones_like(angles), angles)


def rotate(x: torch.Tensor, turns: torch.Tensor) -> torch.Tensor:
    """x: (B, L, n, rot) in any dtype; turns: (B, L, 1, rot/2) complex64 -> rotated x in fp32
    (transformers rotates in fp32 too: its sin/cos buffer promotes half-precision q and k)."""
    pairs = torch.view_as_complex(x.float().unflatten(-1, (-1, 2)))        # (B, L, n, rot/2)
    return torch.view_as_real(pairs * turns).flatten(-2)


def gelu_new(x: torch.Tensor) -> torch.Tensor:
    """transformers' gelu_new, 0.5x(1 + tanh(sqrt(2/pi)(x + 0.044715x^3))), as one fused kernel."""
    return F.gelu(x, approximate="tanh")


@dataclass(frozen=True)
class CacheView:
    """Where one forward pass reads and writes the static KV cache (made by cache.KVPool.view).

    kv: per-layer tensors (B, 2, H, T, D), keys then values, sliced to the rows of this batch.
    write_pos: (B, L) cache position of each input token (padding goes to a sink position).
    key_len: how many leading positions the queries may read.
    mask: (B, 1, L, key_len) additive mask in the model dtype (0 = may attend, -inf = may not),
    built once per forward pass; None when plain causal attention over key_len keys is right
    (one row, or every row at the same position).
    rows: (B, 1) arange, the row index of each write_pos entry, made once per pass.
    """
    kv: list[torch.Tensor]
    write_pos: torch.Tensor
    key_len: int
    mask: torch.Tensor | None
    rows: torch.Tensor

    def update(self, layer: int, kv: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Write this pass's keys and values kv (B, L, 2, H, D) at write_pos; return the layer's
        keys and values (B, H, key_len, D) for attention."""
        cache = self.kv[layer]                                                # (B, 2, H, T, D)
        assert kv.shape[:2] == self.write_pos.shape, (kv.shape, self.write_pos.shape)
        cache[self.rows, :, :, self.write_pos] = kv
        return cache[:, 0, :, :self.key_len], cache[:, 1, :, :self.key_len]


class Attention(nn.Module):
    def __init__(self, cfg: CodeGenConfig):
        super().__init__()
        self.cfg = cfg
        self.qkv_proj = nn.Linear(cfg.n_embd, 3 * cfg.n_embd, bias=False)   # rows [q; k; v]
        self.out_proj = nn.Linear(cfg.n_embd, cfg.n_embd, bias=False)

    def forward(self, x, rope, layer: int, cache: CacheView | None):
        return self.out_proj(self.attend(self.qkv_proj(x), rope, layer, cache))

    def attend(self, qkv: torch.Tensor, rope, layer: int, cache: CacheView | None) -> torch.Tensor:
        """qkv: (B, L, 3E) projections -> (B, L, E) attention output before out_proj."""
        B, L, _ = qkv.shape
        H, D, r = self.cfg.n_head, self.cfg.head_dim, self.cfg.rotary
        qkv = qkv.view(B, L, 3 * H, D)                                       # heads: q, then k, then v
        rotated = rotate(qkv[:, :, :2 * H, :r], rope)                        # q and k together, fp32
        if qkv.requires_grad:   # training: out of place, for autograd
            qkv = torch.cat([torch.cat([rotated.to(qkv.dtype), qkv[:, :, :2 * H, r:]], -1), qkv[:, :, 2 * H:]], 2)
        else:                   # inference: one copy back into the projection's output
            qkv[:, :, :2 * H, :r] = rotated
        q = qkv[:, :, :H].transpose(1, 2)                                     # (B, H, L, D)
        if cache is None:   # training / plain scoring: causal self-attention over x alone
            k, v = qkv[:, :, H:2 * H].transpose(1, 2), qkv[:, :, 2 * H:].transpose(1, 2)
            y = self._attend(q, k, v, None, causal=L > 1)
        else:
            k, v = cache.update(layer, qkv[:, :, H:].unflatten(2, (2, H)))     # (B, H, key_len, D) each
            y = self._attend(q, k, v, cache.mask, causal=cache.mask is None and L > 1)
        return y.transpose(1, 2).reshape(B, L, H * D)

    @staticmethod
    def _attend(q, k, v, mask, causal: bool):
        # Half-precision scores are accumulated and soft-maxed in fp32 inside SDPA's kernels (as in
        # transformers' eager path, which upcasts); fp32 models stay fp32 throughout.
        if causal and k.shape[2] != q.shape[2]:   # queries are the last L of the keys
            n, L = k.shape[2], q.shape[2]
            mask = torch.ones(L, n, dtype=torch.bool, device=q.device).tril(n - L)
            causal = False
        return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal)


class MLP(nn.Module):
    def __init__(self, cfg: CodeGenConfig):
        super().__init__()
        self.fc_in = nn.Linear(cfg.n_embd, cfg.inner_dim)
        self.fc_out = nn.Linear(cfg.inner_dim, cfg.n_embd)

    def forward(self, x):
        return self.fc_out(gelu_new(self.fc_in(x)))


class Block(nn.Module):
    def __init__(self, cfg: CodeGenConfig):
        super().__init__()
        self.ln_1 = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)
        self.attn = Attention(cfg)
        self.mlp = MLP(cfg)

    def forward(self, x, rope, layer: int, cache: CacheView | None):
        h = self.ln_1(x)                                                      # (B, L, E)
        return x + self.attn(h, rope, layer, cache) + self.mlp(h)             # (B, L, E)


class Transformer(nn.Module):
    def __init__(self, cfg: CodeGenConfig):
        super().__init__()
        self.wte = nn.Embedding(cfg.vocab_size, cfg.n_embd)
        self.h = nn.ModuleList(Block(cfg) for _ in range(cfg.n_layer))
        self.ln_f = nn.LayerNorm(cfg.n_embd, eps=cfg.layer_norm_epsilon)


class CodeGen(nn.Module):
    """CodeGenForCausalLM. forward() returns fp32 logits at the positions asked for."""

    def __init__(self, cfg: CodeGenConfig):
        super().__init__()
        self.cfg = cfg
        self.transformer = Transformer(cfg)
        self.lm_head = nn.Linear(cfg.n_embd, cfg.vocab_size)
        self.register_buffer("rope", rotary_tables(cfg.n_positions, cfg.rotary), persistent=False)

    def reset_rotary(self) -> None:
        """Recompute the rotary table (after building on the meta device and moving to a real one)."""
        self.rope = rotary_tables(self.cfg.n_positions, self.cfg.rotary, device=self.lm_head.weight.device)

    def forward(self, ids: torch.Tensor, positions: torch.Tensor | None = None,
                cache: CacheView | None = None, last: torch.Tensor | None = None) -> torch.Tensor:
        """ids, positions: (B, L). last: (B,) index of the one position per row whose logits are
        wanted (decode and prefill), or (B, k) indices of k positions per row (scoring); None gives
        logits at every position (training, tests)."""
        B, L = ids.shape
        if positions is None:
            positions = torch.arange(L, device=ids.device).expand(B, L)
        rope = self.rope[positions][:, :, None]                            # (B, L, 1, rot/2) complex64
        x = self.transformer.wte(ids)                                      # (B, L, E)
        for i, block in enumerate(self.transformer.h):
            x = block(x, rope, i, cache)
        if last is not None:
            x = x[torch.arange(B, device=ids.device)[:, None], last.view(B, -1)]   # (B, 1 or k, E)
        return self.lm_head(self.transformer.ln_f(x)).float()              # (B, L or 1 or k, V)
