"""Loading Hugging Face CodeGen checkpoints without a second full copy in memory, and the one way
from a checkpoint and options to a ready engine (load_engine).

The model is built on the meta device in the target dtype, given real (uninitialised) storage on
the target device, and then filled tensor by tensor, shard by shard, straight from safetensors
(memory-mapped) or pytorch_model.bin (torch.load with mmap). Peak memory is the model in its final
dtype plus one tensor in flight, so 16B in fp16 fits one 80 GB GPU.

Errors about options or checkpoints are EngineErrors in plain words, free of any command-line
syntax: the codegen backend says them as `-B option=value`, `mtpb serve` as `--option value`.
"""
from __future__ import annotations

from pathlib import Path

import torch

from mtpb.engine.checkpoint import (IGNORED, EngineError, integer_option, load_config,  # noqa: F401  (re-exported)
                                    resolve_folder, weight_files)
from mtpb.engine.generate import Engine
from mtpb.engine.layout import lay_out_for_fusion
from mtpb.engine.model import CodeGen, qkv_from_hf
from mtpb.engine.tokenizer import Tokenizer

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise EngineError("unknown dtype: use fp32, fp16 or bf16", "dtype", name) from None


def resolve_device(device: str | None) -> torch.device:
    """The named torch device, or cuda when there is one and cpu otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise EngineError("not a torch device (cpu, cuda, cuda:1 ...)", "device", device) from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise EngineError("CUDA is not available here", "device", device)
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The named dtype, or fp16 on cuda and fp32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    return parse_dtype(dtype)


def iter_tensors(path: Path):
    """(name, tensor) pairs of one shard, one tensor materialised at a time."""
    try:
        yield from _read_tensors(path)
    except Exception as e:   # safetensors, zip and pickle each fail on a cut file in their own way
        raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {e}): the file is damaged "
                         "or incomplete; download or copy it again") from None


def _read_tensors(path: Path):
    if path.suffix == ".safetensors":
        from safetensors import safe_open
        with safe_open(str(path), framework="pt", device="cpu") as f:
            for name in f.keys():
                yield name, f.get_tensor(name)
    else:
        try:
            state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError:   # a pre-zipfile .bin cannot be memory-mapped: read the shard whole
            state = torch.load(str(path), map_location="cpu", weights_only=True)
        for name in list(state):
            yield name, state.pop(name)


def load_model(model: str | Path, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "fp32") -> tuple[CodeGen, Tokenizer]:
    folder = resolve_folder(model)
    cfg = load_config(folder)
    dtype, device = parse_dtype(dtype), torch.device(device)
    with torch.device("meta"):
        net = CodeGen(cfg).to(dtype)
    net = net.to_empty(device=device)        # real storage, final dtype, never filled twice
    net.reset_rotary()
    lay_out_for_fusion(net)                  # so the engine's fused weights are views, not copies
    params = dict(net.named_parameters())
    filled: set[str] = set()
    with torch.no_grad():
        for shard in weight_files(folder):
            for name, tensor in iter_tensors(shard):
                if IGNORED.search(name):
                    continue
                if name not in params:
                    raise ValueError(f"{shard.name}: unexpected tensor {name} for a CodeGen model")
                if name.endswith("attn.qkv_proj.weight"):
                    tensor = qkv_from_hf(tensor, cfg.n_embd)
                if tuple(tensor.shape) != tuple(params[name].shape):
                    raise ValueError(f"{shard.name}: {name} has shape {tuple(tensor.shape)}, "
                                     f"config says {tuple(params[name].shape)}")
                params[name].copy_(tensor)
                filled.add(name)
                del tensor
    missing = sorted(set(params) - filled)
    if missing:
        raise ValueError(f"{folder}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
    net.eval().requires_grad_(False)
    return net, Tokenizer.from_folder(folder, eos_id=cfg.eos_token_id)


def load_engine(checkpoint: str | Path, device: str | None = None, dtype: str | None = None,
                batch_size: int | str = 16, max_length: int | str | None = None, top_k: int | str = 50,
                decode: str | None = None) -> Engine:
    """A ready engine for a checkpoint folder or hub id. Options may be strings (as typed by a user)
    or values; None means the default:
        device      cpu, cuda, cuda:1 ... (default: cuda when there is one)
        dtype       fp32, fp16 or bf16 (default: fp16 on cuda, fp32 elsewhere)
        batch_size  the most sequences in one forward pass (the KV pool's rows)
        max_length  context + generated tokens per sequence (default: the model's n_positions)
        top_k       when sampling, 0 turns it off
        decode      graphs (CUDA graphs, the default on cuda) or eager (the default elsewhere)
    Raises EngineError."""
    dev = resolve_device(device)
    torch_dtype = resolve_dtype(dtype, dev)
    rows = integer_option("batch_size", batch_size, 1)
    length = integer_option("max_length", max_length, 2) if max_length is not None else None
    k = integer_option("top_k", top_k, 0)
    if decode not in (None, "graphs", "eager"):
        raise EngineError("use graphs (CUDA only) or eager", "decode", decode)
    if decode == "graphs" and dev.type != "cuda":
        raise EngineError(f"needs a CUDA device, not {dev}; leave decode out", "decode", decode)
    try:
        net, tokenizer = load_model(checkpoint, dev, torch_dtype)
    except (FileNotFoundError, ValueError, OSError) as e:
        raise EngineError(f"cannot load {checkpoint}: {e}") from e
    return Engine(net, tokenizer, max_batch=rows, max_length=length, top_k=k, decode=decode or "auto")
