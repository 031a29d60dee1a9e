"""Sampling: transformers' temperature -> top-k -> top-p filter, inverse-CDF draw, greedy rows."""
from __future__ import annotations

import torch
from transformers.generation.logits_process import TemperatureLogitsWarper, TopKLogitsWarper, TopPLogitsWarper

from mtpb.engine.sampling import UniformStream, sample_next


def hf_kept(logits: torch.Tensor, temperature: float, top_p: float, top_k: int) -> list[set[int]]:
    scores = TemperatureLogitsWarper(temperature)(None, logits.clone())
    if top_k:
        scores = TopKLogitsWarper(top_k)(None, scores)
    scores = TopPLogitsWarper(top_p)(None, scores)
    return [set(torch.isfinite(row).nonzero().flatten().tolist()) for row in scores]


def our_kept(logits, temperature, top_p, top_k, draws=400) -> list[set[int]]:
    B = logits.shape[0]
    seen = [set() for _ in range(B)]
    for u in torch.linspace(0, 0.9999, draws):
        out = sample_next(logits, torch.full((B,), temperature), torch.full((B,), top_p), torch.full((B,), float(u)), top_k)
        for b, t in enumerate(out.tolist()):
            seen[b].add(t)
    return seen


def test_kept_tokens_match_transformers_warpers():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(4, 200, generator=g) * 3
    for temperature, top_p, top_k in [(0.8, 0.95, 50), (1.0, 0.5, 0), (0.2, 0.9, 50), (1.5, 0.99, 10)]:
        assert our_kept(logits, temperature, top_p, top_k) == hf_kept(logits, temperature, top_p, top_k)


def test_draw_follows_the_filtered_distribution():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, -3.0]])
    probs = (logits / 0.7).softmax(-1)[0]
    n = 2000
    counts = torch.zeros(5)
    for i in range(n):
        t = sample_next(logits, torch.tensor([0.7]), torch.tensor([1.0]), torch.tensor([(i + 0.5) / n]), 0)
        counts[t] += 1
    torch.testing.assert_close(counts / n, probs, atol=2e-3, rtol=0)


def test_greedy_rows_take_argmax_and_mix_with_sampling_rows():
    logits = torch.tensor([[0.0, 3.0, 1.0], [5.0, 0.0, 4.9]])
    out = sample_next(logits, torch.tensor([0.0, 1.0]), torch.tensor([0.95, 1.0]), torch.tensor([0.0, 0.99]), 50)
    assert out[0].item() == 1
    assert out[1].item() == 2   # u near 1 picks the least likely kept token


def test_uniform_streams_are_per_seed():
    a, b, c = UniformStream(7), UniformStream(7), UniformStream(8)
    xs = [a.next() for _ in range(5)]
    assert xs == [b.next() for _ in range(5)]
    assert xs != [c.next() for _ in range(5)]
    assert all(0 <= x < 1 for x in xs)
