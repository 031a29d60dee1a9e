"""The bundled CodeGen inference engine (imports nothing from mtpb outside mtpb/engine/).

model.py     the network, with a static KV cache          load.py      checkpoint folders -> model
tokenizer.py CodeGen's BPE with added whitespace tokens   generate.py  batched generation, prefix reuse
"""
