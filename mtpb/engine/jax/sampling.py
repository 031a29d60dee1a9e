"""Choosing the next token on the device, in transformers' order (temperature, top-k, top-p), the
same rule as the torch runtime's sampling.py: one host-drawn uniform per row and step
(requests.UniformStream) picks by inverse CDF over the kept tokens in descending probability.
"""
from __future__ import annotations

import jax
import jax.numpy as jnp


def sample_next(logits: jax.Array, temperature: jax.Array, top_p: jax.Array, uniform: jax.Array,
                top_k: int) -> jax.Array:
    """logits (B, V) fp32; temperature, top_p, uniform (B,) fp32; top_k static (0: off).
    Returns (B,) token ids; rows with temperature 0 take the argmax."""
    V = logits.shape[-1]
    greedy = jnp.argmax(logits, axis=-1)
    sampling = temperature > 0
    scores = logits / jnp.where(sampling, temperature, 1.0)[:, None]
    order = jnp.argsort(-scores, axis=-1, stable=True)                     # (B, V) descending
    top = jnp.take_along_axis(scores, order, axis=-1)
    if 0 < top_k < V:   # transformers keeps every token tied with the k-th
        top = jnp.where(top < top[:, top_k - 1:top_k], -jnp.inf, top)
    probs = jax.nn.softmax(top, axis=-1)
    # top-p: a token is removed when the mass strictly above it reaches top_p (as transformers)
    mass_above = jnp.cumsum(probs, axis=-1) - probs
    keep = (mass_above < top_p[:, None]) | (top_p[:, None] >= 1.0)
    keep = keep.at[:, 0].set(True)
    probs = jnp.where(keep, probs, 0.0)
    cdf = jnp.cumsum(probs, axis=-1)
    target = uniform[:, None] * cdf[:, -1:]
    pick = jnp.minimum((cdf <= target).sum(-1), keep.sum(-1) - 1)          # first index with cdf > u
    sampled = jnp.take_along_axis(order, pick[:, None], axis=-1)[:, 0]
    return jnp.where(sampling, sampled, greedy)
