"""The JAX runtime of the engine (TPU, GPU, CPU), sharded over a device mesh; imported only when
runtime jax is asked for, so mtpb without the [jax] extra never imports jax.

model.py     the network over a static KV cache     load.py      checkpoint + options -> engine
sharding.py  the mesh, tensor and data parallelism  generate.py  prefill/decode steps per shape bucket
sampling.py  temperature, top-k, top-p on device    cache.py     the KV cache rows in one array
The loop, the row-reuse plan, the tokenizer and the requests are shared with the torch runtime.
See docs/engine.md.
"""
