"""The bundled CodeGen inference engine; imports nothing from mtpb outside mtpb/engine/.

    from mtpb.engine.runtime import load_engine
    from mtpb.engine.requests import GenerationRequest
    engine = load_engine("checkpoints/tiny-codegen", "torch", device="cpu", batch_size=16)   # or "jax"
    done = engine.generate([GenerationRequest("# add\n", 64)])

model.py     the network and its static-KV-cache attention   load.py      checkpoint + options -> engine
tokenizer.py CodeGen's BPE with added whitespace tokens       cache.py     KV rows in torch tensors
generate.py  batched prefill/decode, per-sequence stop        sampling.py  temperature, top-k, top-p
layout.py    the engine's fused, packed form of the model     graphs.py    the decode step as CUDA graphs
score.py     log-probabilities of text spans (prompt perplexity) on the torch engine's KV rows
Shared by both runtimes, free of torch and jax: runtime.py (runtime name -> engine), config.py,
checkpoint.py, requests.py, rows.py (which row holds what, the reuse plan), batching.py (the loop).
jax/         the JAX runtime (TPU, GPU, CPU), sharded over a device mesh
See docs/engine.md.
"""
