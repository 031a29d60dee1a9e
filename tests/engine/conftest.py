"""Checkpoints for the engine tests: the committed tiny one, and random-init ones saved by
transformers' save_pretrained (safetensors and .bin, sharded) so the loader sees real HF output."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

ROOT = Path(__file__).resolve().parents[2]
TINY = ROOT / "checkpoints" / "tiny-codegen"
TOKENIZER_FILES = ("tokenizer.json", "vocab.json", "merges.txt", "added_tokens.json",
                   "special_tokens_map.json", "tokenizer_config.json")

SMALL = dict(vocab_size=4096, n_positions=512, n_ctx=512, n_embd=128, n_layer=3, n_head=8, rotary_dim=8,
             bos_token_id=4057, eos_token_id=4057)
SHAPE_350M = dict(vocab_size=51200, n_positions=2048, n_ctx=2048, n_embd=1024, n_layer=20, n_head=16,
                  rotary_dim=32, bos_token_id=50256, eos_token_id=50256)


@pytest.fixture(scope="session")
def tiny() -> Path:
    if not (TINY / "config.json").is_file():
        pytest.skip("checkpoints/tiny-codegen not built (python scripts/train_tiny.py)")
    return TINY


def random_model(config: dict, seed: int = 0, std: float = 0.02):
    """A random-init transformers CodeGenForCausalLM; std above the 0.02 init gives peaked logits."""
    torch.manual_seed(seed)
    model = transformers.CodeGenForCausalLM(transformers.CodeGenConfig(**config)).eval()
    if std != 0.02:
        with torch.no_grad():
            for p in model.parameters():
                if p.dim() == 2:
                    p.normal_(0, std)
    return model


def copy_tokenizer(folder: Path) -> None:
    for name in TOKENIZER_FILES:
        if (TINY / name).is_file():
            shutil.copy(TINY / name, folder / name)


def save_random(folder: Path, config: dict, seed: int = 0, shard: str | None = None,
                std: float = 0.02) -> Path:
    """Saved by transformers' save_pretrained (safetensors, sharded when `shard`), tiny tokenizer beside."""
    model = random_model(config, seed, std)
    model.save_pretrained(folder, **({"max_shard_size": shard} if shard else {}))
    copy_tokenizer(folder)
    return folder


def save_bin(folder: Path, model, n_shards: int = 2, old_buffers: bool = True) -> Path:
    """pytorch_model-0000k-of-0000n.bin shards + index, as transformers 4 wrote them; with
    old_buffers, the per-layer causal_mask / masked_bias buffers old CodeGen checkpoints carry."""
    folder.mkdir(parents=True, exist_ok=True)
    state = dict(model.state_dict())
    if old_buffers:
        n = model.config.n_positions
        for i in range(model.config.n_layer):
            state[f"transformer.h.{i}.attn.causal_mask"] = torch.tril(torch.ones(n, n, dtype=torch.bool))[None, None]
            state[f"transformer.h.{i}.attn.masked_bias"] = torch.tensor(-1e9)
    names = list(state)
    weight_map = {}
    for k in range(n_shards):
        file = f"pytorch_model-{k + 1:05d}-of-{n_shards:05d}.bin"
        part = {name: state[name].clone() for name in names[k::n_shards]}
        torch.save(part, folder / file)
        weight_map.update({name: file for name in part})
    (folder / "pytorch_model.bin.index.json").write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    model.config.save_pretrained(folder)
    copy_tokenizer(folder)
    return folder


@pytest.fixture(scope="session")
def small_ckpt(tmp_path_factory, tiny) -> Path:
    """Small random CodeGen, safetensors in several shards."""
    return save_random(tmp_path_factory.mktemp("small-st"), SMALL, seed=1, shard="200KB", std=0.08)


@pytest.fixture(scope="session")
def small_bin(tmp_path_factory, tiny) -> Path:
    """The same architecture as .bin shards."""
    return save_bin(tmp_path_factory.mktemp("small-bin"), random_model(SMALL, seed=2, std=0.08), n_shards=3)


def hf_model(folder: Path, dtype=None, attn: str = "eager"):
    return transformers.CodeGenForCausalLM.from_pretrained(
        folder, dtype=dtype or torch.float32, attn_implementation=attn).eval()
