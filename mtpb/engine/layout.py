"""The inference layout: what an Engine runs in place of the plain model, made once per engine.

for_inference(model, rows) returns a module tree of the engine's own over the model's parameter
tensors (nothing is copied, and the shared model is never changed, so any number of engines can run
over one model), with two transforms applied:
- Fused GEMMs. Each Block becomes a FusedBlock: qkv_proj and fc_in are row blocks of one weight
  (both read the same LayerNorm output: one GEMM), out_proj and fc_out column blocks of another (one
  GEMM sums both branches), so a layer runs two GEMMs instead of four. The loader stores the four
  weights inside those two tensors (lay_out_for_fusion), which makes the fused weights views of the
  parameters; a model stored otherwise (built by hand, trained) gets fused copies.
- MKL-packed weights (fp32 on CPU). A GEMM with a few rows spends as long packing the weight as
  multiplying it, so the weights are packed once for `rows` input rows (the engine's batch size);
  other row counts use the plain weight. This costs one more copy of the weights per engine.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from mtpb.engine.model import Block, CacheView, CodeGen, gelu_new


def lay_out_for_fusion(model: CodeGen) -> None:
    """Store each block's weights so that [qkv_proj; fc_in] is one (3E + I, E) tensor and
    [out_proj | fc_out] one (E, E + I) tensor, the parameters becoming views into them under the
    same names and shapes. The new storage is uninitialised: the loader calls this before it fills
    the weights, so nothing is stored twice. The plain forward reads the views as any weights."""
    for block in model.transformer.h:
        attn, mlp = block.attn, block.mlp
        E, I = attn.out_proj.in_features, mlp.fc_in.out_features
        like = dict(device=attn.qkv_proj.weight.device, dtype=attn.qkv_proj.weight.dtype)
        w_in, w_out = torch.empty(3 * E + I, E, **like), torch.empty(E, E + I, **like)
        view = lambda t: nn.Parameter(t, requires_grad=False)                 # noqa: E731
        attn.qkv_proj.weight, mlp.fc_in.weight = view(w_in[:3 * E]), view(w_in[3 * E:])
        attn.out_proj.weight, mlp.fc_out.weight = view(w_out[:, :E]), view(w_out[:, E:])


def joined(first: torch.Tensor, second: torch.Tensor, dim: int) -> torch.Tensor:
    """torch.cat([first, second], dim) of two 2-d weights: a view when `second` directly follows
    `first` along dim in one storage (as lay_out_for_fusion leaves them), else a copy."""
    follows = (first.untyped_storage().data_ptr() == second.untyped_storage().data_ptr()
               and first.stride() == second.stride() and first.shape[1 - dim] == second.shape[1 - dim]
               and second.storage_offset() == first.storage_offset() + first.shape[dim] * first.stride(dim))
    if not follows:
        return torch.cat([first, second], dim)
    shape = list(first.shape)
    shape[dim] += second.shape[dim]
    return first.as_strided(shape, first.stride())


class PackedLinear(nn.Module):
    """x W^T + b with W MKL-packed for `rows` input rows where that pays (fp32 on CPU with MKL)."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, rows: int):
        super().__init__()
        self.weight, self.bias, self.rows = weight, bias, rows
        usable = weight.device.type == "cpu" and weight.dtype == torch.float32 and torch.backends.mkl.is_available()
        self.packed = torch.ops.mkl._mkl_reorder_linear_weight(weight, rows) if usable and rows > 0 else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.packed is None:
            return F.linear(x, self.weight, self.bias)
        return torch.ops.mkl._mkl_linear(x, self.packed, self.weight, self.bias, self.rows)   # any row count


class FusedBlock(nn.Module):
    """model.Block in two GEMMs: the same parameters and, up to rounding, the same outputs."""

    def __init__(self, block: Block, rows: int):
        super().__init__()
        attn, mlp = block.attn, block.mlp
        self.ln_1, self.attn, self.n_embd = block.ln_1, attn, attn.out_proj.in_features
        b_in = torch.cat([mlp.fc_in.bias.new_zeros(3 * self.n_embd), mlp.fc_in.bias])   # qkv_proj has no bias
        w_in = joined(attn.qkv_proj.weight, mlp.fc_in.weight, 0)                           # (3E + I, E)
        w_out = joined(attn.out_proj.weight, mlp.fc_out.weight, 1)                         # (E, E + I)
        self.w_in, self.w_out = PackedLinear(w_in, b_in, rows), PackedLinear(w_out, mlp.fc_out.bias, rows)

    def forward(self, x, rope, layer: int, cache: CacheView | None):
        E = self.n_embd
        both = self.w_in(self.ln_1(x))                                        # (B, L, 3E + I)
        y = self.attn.attend(both[..., :3 * E], rope, layer, cache)           # (B, L, E)
        hidden = torch.cat([y, gelu_new(both[..., 3 * E:])], dim=-1)         # (B, L, E + I)
        return self.w_out(hidden) + x                                         # (B, L, E)


@torch.no_grad()
def for_inference(model: CodeGen, rows: int) -> CodeGen:
    """The engine's own CodeGen over the model's tensors: fused blocks, weights packed for `rows`
    input rows (0: none). CodeGen.forward runs it unchanged."""
    shared = {id(t): t for t in (*model.parameters(), *model.buffers())}
    net = copy.deepcopy(model, shared)            # new modules, the same parameter and buffer tensors
    net.transformer.h = nn.ModuleList(FusedBlock(block, rows) for block in net.transformer.h)
    net.lm_head = PackedLinear(net.lm_head.weight, net.lm_head.bias, rows)
    return net.eval()
