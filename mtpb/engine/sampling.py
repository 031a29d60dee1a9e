"""Choosing the next token on the device, in transformers' order: temperature, top-k, top-p.

Randomness comes in as one uniform number per row and step, drawn on the host from a generator
seeded per request (see UniformStream). A row's sample then depends only on its own seed and its
own logits, never on which other rows share the batch. The draw is an inverse-CDF pick over the
kept tokens in descending probability, which is a sample from the same distribution that
transformers' multinomial draws from (the streams differ, so only greedy output is comparable).
"""
from __future__ import annotations

import torch

from mtpb.engine.requests import UniformStream  # noqa: F401  (re-exported)


def sample_next(logits: torch.Tensor, temperature: torch.Tensor, top_p: torch.Tensor,
                uniform: torch.Tensor, top_k: int) -> torch.Tensor:
    """logits (B, V) fp32; temperature, top_p, uniform (B,) fp32. Returns (B,) token ids.

    temperature 0 means greedy (argmax, first index on ties, as torch.argmax in transformers).
    top_k 0 disables top-k; transformers' generate applies its default top_k=50 when sampling
    unless told otherwise, and so did the original MTPB sampler.
    """
    greedy = logits.argmax(dim=-1)
    sampling = temperature > 0
    if not bool(sampling.any()):
        return greedy
    scores = logits / torch.where(sampling, temperature, 1.0)[:, None]
    if 0 < top_k < scores.shape[-1]:
        top, index = scores.topk(top_k, dim=-1)                          # (B, k) descending
        kth = top[:, -1:]
        # transformers keeps every token tied with the k-th; re-gather when ties reach past k
        if bool((scores == kth).sum(-1).gt((top == kth).sum(-1)).any()):
            top, index = scores.sort(dim=-1, descending=True)
            top = top.masked_fill(top < kth, float("-inf"))
    else:
        top, index = scores.sort(dim=-1, descending=True)                # (B, V) descending
    probs = top.softmax(dim=-1)
    # top-p: transformers removes a token when the mass at or below it (ascending cumsum) is
    # <= 1 - top_p, i.e. when the mass strictly above it (descending, exclusive) is >= top_p.
    mass_above = probs.cumsum(dim=-1) - probs
    keep = (mass_above < top_p[:, None]) | (top_p[:, None] >= 1.0)
    keep[:, 0] = True
    probs = torch.where(keep, probs, 0.0)
    cdf = probs.cumsum(dim=-1)                                           # (B, k)
    target = uniform[:, None] * cdf[:, -1:]
    pick = (cdf <= target).sum(dim=-1).clamp(max=probs.shape[-1] - 1)   # first index with cdf > u
    pick = torch.minimum(pick, keep.sum(dim=-1) - 1)                     # never a removed token
    sampled = index.gather(-1, pick[:, None]).squeeze(-1)
    return torch.where(sampling, sampled, greedy)
