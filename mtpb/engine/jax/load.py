"""Hugging Face CodeGen checkpoints into JAX arrays on a device mesh, and options -> a JAX engine.

safetensors files are memory-mapped and each device's shard of each (layer-stacked) parameter is
read, rearranged and cast straight from the map (jax.make_array_from_callback), so the host never
holds the whole model and a tensor-parallel device never holds more than its part.
pytorch_model.bin goes through torch when it is installed; without torch the error says how to
convert it to safetensors.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Callable

import jax
import jax.numpy as jnp
import ml_dtypes
import numpy as np

from mtpb.engine.checkpoint import IGNORED, EngineError, integer_option, load_config, resolve_folder, weight_files
from mtpb.engine.config import MP_NUM, CodeGenConfig
from mtpb.engine.jax.model import rotary_tables
from mtpb.engine.jax.sharding import param_shardings, parse_mesh
from mtpb.engine.tokenizer import Tokenizer

DTYPES = {"fp32": jnp.float32, "float32": jnp.float32, "fp16": jnp.float16, "float16": jnp.float16,
          "half": jnp.float16, "bf16": jnp.bfloat16, "bfloat16": jnp.bfloat16}
SAFETENSORS_DTYPES = {"F32": np.float32, "F16": np.float16, "BF16": ml_dtypes.bfloat16, "F64": np.float64}
CONVERT = ("python -c \"from transformers import AutoModelForCausalLM as M; "
           "M.from_pretrained('{folder}').save_pretrained('{folder}', safe_serialization=True)\"")


def parse_dtype(name: str):
    try:
        return DTYPES[str(name).lower()]
    except KeyError:
        raise EngineError("unknown dtype: use fp32, fp16 or bf16", "dtype", name) from None


def read_safetensors(path: Path) -> dict[str, np.ndarray]:
    """name -> read-only memory-mapped array, without a framework (the format is a JSON header)."""
    try:
        with open(path, "rb") as f:
            size = int.from_bytes(f.read(8), "little")
            header = json.loads(f.read(size))
        mapped = np.memmap(path, dtype=np.uint8, mode="r")
        out = {}
        for name, info in header.items():
            if name == "__metadata__":
                continue
            dtype = np.dtype(SAFETENSORS_DTYPES[info["dtype"]])
            a, b = info["data_offsets"]
            out[name] = mapped[8 + size + a:8 + size + b].view(dtype).reshape(info["shape"])
        return out
    except KeyError as e:
        raise ValueError(f"{path}: tensor type {e} is not a float type this engine loads") from None
    except Exception as e:
        raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {e}): the file is damaged "
                         "or incomplete; download or copy it again") from None


def read_bin(path: Path) -> dict[str, np.ndarray]:
    try:
        import torch
    except ImportError:
        raise ValueError(f"{path.name}: reading .bin weights needs torch, which is not installed; convert the "
                         f"checkpoint to safetensors once where torch is, e.g. {CONVERT.format(folder=path.parent)}"
                         ) from None
    try:
        state = torch.load(str(path), map_location="cpu", mmap=True, weights_only=True)
    except RuntimeError:   # a pre-zipfile .bin cannot be memory-mapped
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as e:
        raise ValueError(f"{path}: cannot read the weights ({type(e).__name__}: {e}): the file is damaged "
                         "or incomplete; download or copy it again") from None
    out = {}
    for name, t in state.items():
        if t.dtype == torch.bfloat16:
            out[name] = t.view(torch.int16).numpy().view(ml_dtypes.bfloat16)
        else:
            out[name] = t.numpy()
    return out


def hf_tensors(folder: Path) -> dict[str, np.ndarray]:
    tensors: dict[str, np.ndarray] = {}
    for shard in weight_files(folder):
        part = read_safetensors(shard) if shard.suffix == ".safetensors" else read_bin(shard)
        tensors.update((k, v) for k, v in part.items() if not IGNORED.search(k))
    return tensors


def layouts(cfg: CodeGenConfig) -> dict[str, tuple[str, Callable[[np.ndarray], np.ndarray]]]:
    """The engine's parameter -> (HF tensor name, with {i} for the layer; HF tensor -> ours).
    Every function returns a view where numpy can, so callbacks slice before they copy."""
    E, H, D = cfg.n_embd, cfg.n_head, cfg.head_dim

    def qkv(w):   # (3E, E): 4 shards x [q, v, k] x local rows -> (E, 3, H, D), [q, k, v] in head order
        w = w.reshape(MP_NUM, 3, E // MP_NUM, E)[:, [0, 2, 1]]               # (shard, q/k/v, local, E)
        return w.transpose(1, 0, 2, 3).reshape(3, H, D, E).transpose(3, 0, 1, 2)

    same = lambda w: w                                                       # noqa: E731
    t = lambda w: w.T                                                        # noqa: E731
    h = "transformer.h.{i}."
    return {
        "wte": ("transformer.wte.weight", same), "ln_f_w": ("transformer.ln_f.weight", same),
        "ln_f_b": ("transformer.ln_f.bias", same), "lm_head": ("lm_head.weight", t), "lm_head_b": ("lm_head.bias", same),
        "ln_1_w": (h + "ln_1.weight", same), "ln_1_b": (h + "ln_1.bias", same),
        "qkv": (h + "attn.qkv_proj.weight", qkv),
        "out": (h + "attn.out_proj.weight", lambda w: w.T.reshape(H, D, E)),
        "fc_in": (h + "mlp.fc_in.weight", t), "fc_in_b": (h + "mlp.fc_in.bias", same),
        "fc_out": (h + "mlp.fc_out.weight", t), "fc_out_b": (h + "mlp.fc_out.bias", same),
    }


def load_params(folder: Path, cfg: CodeGenConfig, dtype, shardings: dict) -> dict[str, jax.Array]:
    """The engine's parameter pytree (see model.py), each array placed by shardings[name]."""
    tensors = hf_tensors(folder)
    expected = set()
    params = {}
    for name, (hf, arrange) in layouts(cfg).items():
        names = [hf.format(i=i) for i in range(cfg.n_layer)] if "{i}" in hf else [hf]
        missing = [n for n in names if n not in tensors]
        if missing:
            raise ValueError(f"{folder}: checkpoint lacks {len(missing)} tensors, e.g. {missing[:3]}")
        expected.update(names)
        parts = [arrange(tensors[n]) for n in names]
        stacked = "{i}" in hf
        shape = ((len(parts),) if stacked else ()) + parts[0].shape
        _check_shape(folder, names[0], parts[0].shape, name, cfg)

        def read(index, parts=parts, stacked=stacked):
            if stacked:
                chosen = parts[index[0]] if isinstance(index[0], slice) else [parts[index[0]]]
                return np.stack([p[index[1:]] for p in chosen]).astype(dtype)
            return np.asarray(parts[0][index]).astype(dtype)

        params[name] = jax.make_array_from_callback(shape, shardings[name], read)
    unexpected = sorted(set(tensors) - expected)
    if unexpected:
        raise ValueError(f"{folder}: unexpected tensor {unexpected[0]} for a CodeGen model")
    sin, cos = rotary_tables(cfg.n_positions, cfg.rotary)
    params["sin"] = jax.device_put(sin, shardings["sin"])
    params["cos"] = jax.device_put(cos, shardings["cos"])
    return params


def _check_shape(folder: Path, hf_name: str, got: tuple, name: str, cfg: CodeGenConfig) -> None:
    E, H, D, I, V = cfg.n_embd, cfg.n_head, cfg.head_dim, cfg.inner_dim, cfg.vocab_size
    want = {"wte": (V, E), "ln_f_w": (E,), "ln_f_b": (E,), "lm_head": (E, V), "lm_head_b": (V,),
            "ln_1_w": (E,), "ln_1_b": (E,), "qkv": (E, 3, H, D), "out": (H, D, E),
            "fc_in": (E, I), "fc_in_b": (I,), "fc_out": (I, E), "fc_out_b": (E,)}[name]
    if tuple(got) != want:
        raise ValueError(f"{folder}: {hf_name} does not fit the shape config.json gives ({want} expected)")


def resolve_devices(device: str | None) -> list:
    """The devices of a platform (cpu, gpu, tpu), or the default backend's."""
    try:
        return jax.devices(device) if device else jax.devices()
    except RuntimeError:
        raise EngineError("no such JAX platform here (cpu, gpu, tpu; is the matching jax installed?)",
                          "device", device) from None


def load_model(checkpoint: str | Path, dtype="fp32", mesh=None):
    """(params, cfg, tokenizer) on a mesh (sharding.parse_mesh; None: one device, the default)."""
    from jax.sharding import Mesh
    folder = resolve_folder(checkpoint)
    cfg = load_config(folder)
    if mesh is None:
        mesh = Mesh(np.asarray(jax.devices()[:1]).reshape(1, 1), ("data", "model"))
    params = load_params(folder, cfg, parse_dtype(dtype) if isinstance(dtype, str) else dtype, param_shardings(mesh))
    return params, cfg, Tokenizer.from_folder(folder, eos_id=cfg.eos_token_id)


def load_engine(checkpoint: str | Path, device: str | None = None, dtype: str | None = None,
                batch_size: int | str = 16, max_length: int | str | None = None, top_k: int | str = 50,
                mesh: str | None = None, decode: str | None = None):
    """A ready JAX engine; the options are the torch engine's (load.load_engine) and:
        device  a JAX platform, cpu, gpu or tpu (default: JAX's default backend)
        dtype   fp32, fp16 or bf16 (default: bf16 on tpu, fp16 on gpu, fp32 on cpu)
        mesh    DATAxMODEL over all devices of the platform (default: see sharding.parse_mesh)
    Raises EngineError."""
    from mtpb.engine.jax.generate import JaxEngine
    if decode is not None:
        raise EngineError("is an option of the torch runtime (CUDA graphs); leave it out with runtime jax",
                          "decode", decode)
    devices = resolve_devices(device)
    platform = devices[0].platform
    jdtype = parse_dtype(dtype or {"tpu": "bf16", "gpu": "fp16"}.get(platform, "fp32"))
    rows = integer_option("batch_size", batch_size, 1)
    length = integer_option("max_length", max_length, 2) if max_length is not None else None
    k = integer_option("top_k", top_k, 0)
    try:
        folder = resolve_folder(checkpoint)
        cfg = load_config(folder)
        n_params = cfg.vocab_size * cfg.n_embd * 2 + cfg.n_layer * (4 * cfg.n_embd ** 2 + 2 * cfg.n_embd * cfg.inner_dim)
        grid = parse_mesh(mesh, devices, cfg, n_params * np.dtype(jdtype).itemsize)
        params = load_params(folder, cfg, jdtype, param_shardings(grid))
        tokenizer = Tokenizer.from_folder(folder, eos_id=cfg.eos_token_id)
    except (FileNotFoundError, ValueError, OSError) as e:
        if isinstance(e, EngineError):
            raise
        raise EngineError(f"cannot load {checkpoint}: {e}") from e
    return JaxEngine(params, cfg, tokenizer, grid, max_batch=rows, max_length=length, top_k=k)
