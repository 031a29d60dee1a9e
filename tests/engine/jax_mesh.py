"""Run by test_jax.py in a subprocess that has 8 virtual CPU devices (XLA reads
--xla_force_host_platform_device_count before jax is imported, so it cannot be set in the test
process): for each mesh, the logits of a forward pass and the greedy completions of two turns
through the engine. Prints one JSON object: {mesh: {"logits": [...], "turns": [[ids...]...]}}."""
from __future__ import annotations

import json
import os
import sys

os.environ["XLA_FLAGS"] = os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"

import jax  # noqa: E402
import numpy as np  # noqa: E402

from mtpb.engine.jax.load import load_engine  # noqa: E402
from mtpb.engine.jax.model import logits  # noqa: E402
from mtpb.engine.requests import GenerationRequest  # noqa: E402

PROMPTS = ["# Assign the list [1, 2, 3] to a variable named \"xs\".\n", "def add(a, b):\n    ",
           "import os\n\n\nclass Config:\n", "x = 1\n", "# Print hello.\n", "for i in range(3):\n",
           "import numpy as np\n", "y"]


def main(checkpoint: str, meshes: list[str]) -> None:
    assert len(jax.devices()) == 8, jax.devices()
    out = {}
    for mesh in meshes:
        engine = load_engine(checkpoint, device="cpu", batch_size=8, mesh=mesh)
        ids = np.array([engine.tokenizer.encode(PROMPTS[0] + PROMPTS[1])])
        first = engine.generate([GenerationRequest(p, 8, key=i) for i, p in enumerate(PROMPTS)])
        second = engine.generate([GenerationRequest(p + c.text + "\n# next\n", 8, key=i)
                                  for i, (p, c) in enumerate(zip(PROMPTS, first))])
        out[mesh] = {"logits": np.asarray(logits(engine.params, engine.cfg, ids)).ravel().tolist(),
                     "turns": [[list(c.token_ids) for c in first], [list(c.token_ids) for c in second]],
                     "reused": sum(c.reused_tokens for c in second),
                     "qkv_shard": list(engine.params["qkv"].addressable_shards[0].data.shape),
                     "cache_shard": list(engine.pool.cache.addressable_shards[0].data.shape)}
    print(json.dumps(out))


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2:])
