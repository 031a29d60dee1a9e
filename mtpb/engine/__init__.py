"""The bundled CodeGen inference engine; imports nothing from mtpb outside mtpb/engine/.

    from mtpb.engine.load import load_model
    from mtpb.engine.generate import Engine, GenerationRequest
    model, tokenizer = load_model("checkpoints/tiny-codegen", device="cpu", dtype="fp32")
    done = Engine(model, tokenizer, max_batch=16).generate([GenerationRequest("# add\n", 64)])

model.py     the network and its static-KV-cache attention   load.py      checkpoint folder -> model
tokenizer.py CodeGen's BPE with added whitespace tokens       cache.py     KV rows and prefix reuse
generate.py  batched prefill/decode, per-sequence stop        sampling.py  temperature, top-k, top-p
graphs.py    the decode step as CUDA graphs
See docs/engine.md.
"""
