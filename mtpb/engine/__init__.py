"""The bundled CodeGen inference engine; imports nothing from mtpb outside mtpb/engine/.

    from mtpb.engine.load import load_engine
    from mtpb.engine.generate import GenerationRequest
    engine = load_engine("checkpoints/tiny-codegen", device="cpu", batch_size=16)
    done = engine.generate([GenerationRequest("# add\n", 64)])

model.py     the network and its static-KV-cache attention   load.py      checkpoint + options -> engine
tokenizer.py CodeGen's BPE with added whitespace tokens       cache.py     KV rows and prefix reuse
generate.py  batched prefill/decode, per-sequence stop        sampling.py  temperature, top-k, top-p
layout.py    the engine's fused, packed form of the model     graphs.py    the decode step as CUDA graphs
See docs/engine.md.
"""
