"""The CodeGen shape, read from a checkpoint's config.json: shared by the torch and JAX runtimes."""
from __future__ import annotations

from dataclasses import dataclass

MP_NUM = 4  # CodeGen was trained on 4 model-parallel shards; the fused qkv rows still follow them


@dataclass(frozen=True)
class CodeGenConfig:
    vocab_size: int = 51200
    n_positions: int = 2048
    n_embd: int = 1024
    n_layer: int = 20
    n_head: int = 16
    rotary_dim: int | None = 32
    n_inner: int | None = None
    layer_norm_epsilon: float = 1e-5
    activation_function: str = "gelu_new"
    bos_token_id: int = 50256
    eos_token_id: int = 50256

    @property
    def head_dim(self) -> int:
        return self.n_embd // self.n_head

    @property
    def inner_dim(self) -> int:
        return self.n_inner or 4 * self.n_embd

    @property
    def rotary(self) -> int:
        return self.rotary_dim or self.head_dim

    @classmethod
    def from_dict(cls, d: dict) -> "CodeGenConfig":
        if d.get("model_type", "codegen") != "codegen":
            raise ValueError(f"not a CodeGen checkpoint: model_type is {d.get('model_type')!r}, not 'codegen'")
        eos = d.get("eos_token_id", 50256)
        eos = eos[0] if isinstance(eos, list) else eos
        fields = {k: d[k] for k in cls.__dataclass_fields__ if d.get(k) is not None}
        fields["eos_token_id"] = eos if eos is not None else 50256
        cfg = cls(**fields)
        if cfg.n_embd % cfg.n_head or cfg.n_embd % MP_NUM:
            raise ValueError(f"n_embd {cfg.n_embd} must divide by n_head {cfg.n_head} and by {MP_NUM}")
        return cfg

    def to_hf_dict(self, dtype: str = "float32") -> dict:
        """config.json as transformers writes it for CodeGenForCausalLM."""
        return {
            "architectures": ["CodeGenForCausalLM"], "model_type": "codegen",
            "vocab_size": self.vocab_size, "n_positions": self.n_positions, "n_ctx": self.n_positions,
            "n_embd": self.n_embd, "n_layer": self.n_layer, "n_head": self.n_head,
            "rotary_dim": self.rotary_dim, "n_inner": self.n_inner,
            "activation_function": self.activation_function, "layer_norm_epsilon": self.layer_norm_epsilon,
            "resid_pdrop": 0.0, "embd_pdrop": 0.0, "attn_pdrop": 0.0, "initializer_range": 0.02,
            "bos_token_id": self.bos_token_id, "eos_token_id": self.eos_token_id,
            "tie_word_embeddings": False, "use_cache": True, "torch_dtype": dtype, "dtype": dtype,
        }
