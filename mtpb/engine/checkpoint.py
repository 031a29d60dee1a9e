"""What loading a CodeGen checkpoint needs whatever runs it (torch or JAX): the folder (local or
from the hub), its weight files, its config, and the error type for bad options and checkpoints."""
from __future__ import annotations

import json
import re
from pathlib import Path

from mtpb.engine.config import CodeGenConfig

# Buffers some checkpoints carry (the stored causal masks, old rotary tables): not parameters.
IGNORED = re.compile(r"(attn\.(causal_mask|masked_bias|bias)|embed_positions|rotary_emb\..*)$")


class EngineError(ValueError):
    """A bad option or a checkpoint that cannot be loaded. The message says what is wrong in plain
    words; `option` and `value` name the option at fault (None when it is the checkpoint), for the
    caller to phrase in its own syntax."""

    def __init__(self, message: str, option: str | None = None, value=None):
        super().__init__(message)
        self.option, self.value = option, value


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


def load_config(folder: Path) -> CodeGenConfig:
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise FileNotFoundError(f"{folder}: no config.json")
    try:
        config = json.loads(config_file.read_bytes())
    except ValueError as e:
        raise ValueError(f"{config_file}: not valid JSON ({e}): restore the checkpoint's config.json") from None
    if not isinstance(config, dict):
        raise ValueError(f"{config_file}: not a JSON object: restore the checkpoint's config.json")
    try:
        return CodeGenConfig.from_dict(config)
    except (TypeError, ValueError) as e:   # another architecture, or shapes that do not fit together
        raise ValueError(f"{config_file}: {e}") from None


def integer_option(option: str, value: int | str, low: int) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        raise EngineError("expected an integer", option, value) from None
    if number < low:
        raise EngineError(f"must be at least {low}", option, value)
    return number
