"""Loading Hugging Face CodeGen checkpoints without a second full copy in memory.

The model is built on the meta device in the target dtype, given real (uninitialised) storage on
the target device, and then filled tensor by tensor, shard by shard, straight from safetensors
(memory-mapped) or pytorch_model.bin (torch.load with mmap). Peak memory is the model in its final
dtype plus one tensor in flight, so 16B in fp16 fits one 80 GB GPU.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from mtpb.engine.model import CodeGen, CodeGenConfig, qkv_from_hf
from mtpb.engine.tokenizer import Tokenizer

DTYPES = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16, "float16": torch.float16,
          "half": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
# Buffers some checkpoints carry (the stored causal masks, old rotary tables): not parameters.
IGNORED = re.compile(r"(attn\.(causal_mask|masked_bias|bias)|embed_positions|rotary_emb\..*)$")


def parse_dtype(name: str | torch.dtype) -> torch.dtype:
    if isinstance(name, torch.dtype):
        return name
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown dtype {name!r}: use fp32, fp16 or bf16") from None


def resolve_folder(model: str | Path) -> Path:
    """A local checkpoint folder, or a Hugging Face hub id downloaded with huggingface_hub."""
    path = Path(model).expanduser()
    if path.is_dir():
        return path
    if path.exists() or str(model).count("/") != 1 or str(model).startswith((".", "/", "~")):
        raise FileNotFoundError(f"{model}: no such checkpoint folder")
    try:
        from huggingface_hub import list_repo_files, snapshot_download
    except ImportError:
        raise FileNotFoundError(f"{model}: not a folder, and huggingface_hub is not installed to "
                                f"download it from the hub (pip install huggingface_hub)") from None
    try:
        files = list_repo_files(str(model))
        weights = "*.safetensors*" if any(f.endswith(".safetensors") for f in files) else "*.bin*"
        return Path(snapshot_download(str(model), allow_patterns=["*.json", "*.txt", weights]))
    except Exception as e:   # offline, gated, misspelt: one clear line for the user
        raise FileNotFoundError(f"{model}: not a local folder and the hub download failed: {e}") from e


def weight_files(folder: Path) -> list[Path]:
    """Shards in index order; safetensors preferred over pytorch_model.bin when both exist."""
    for index, single in (("model.safetensors.index.json", "model.safetensors"),
                          ("pytorch_model.bin.index.json", "pytorch_model.bin")):
        if (folder / index).is_file():
            weight_map = json.loads((folder / index).read_text())["weight_map"]
            return [folder / f for f in dict.fromkeys(weight_map.values())]
        if (folder / single).is_file():
            return [folder / single]
    raise FileNotFoundError(f"{folder}: no model.safetensors or pytorch_model.bin (sharded or not)")


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


def load_config(folder: Path) -> CodeGenConfig:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    try:
        return CodeGenConfig.from_dict(json.loads(config_file.read_bytes()))
    except ValueError as e:
        raise ValueError(f"{config_file}: not valid JSON ({e}): restore the checkpoint's config.json") from None


def load_model(model: str | Path, device: str | torch.device = "cpu",
               dtype: str | torch.dtype = "fp32") -> tuple[CodeGen, Tokenizer]:
    folder = resolve_folder(model)
    cfg = load_config(folder)
    dtype, device = parse_dtype(dtype), torch.device(device)
    with torch.device("meta"):
        net = CodeGen(cfg).to(dtype)
    net = net.to_empty(device=device)        # real storage, final dtype, never filled twice
    net.reset_rotary()
    net.fuse_()                              # parameters become views of the fused weights
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


def parameter_count(net: torch.nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
