"""`transformers` backend: any Hugging Face causal LM through `generate`, the original way.

    mtpb run --backend transformers --model FOLDER_OR_HUB_ID [-B device=cuda] [-B dtype=fp16]
             [-B batch_size=8]

A faithful re-creation of the original MTPB sampler's loop, and the engine's speed baseline: the
whole history is re-encoded every turn, a batch is left-padded with pad = eos, every sequence runs
for exactly max_tokens new tokens (no early stop; the runner truncates afterwards), do_sample with
temperature and top_p when temperature > 0 (so transformers' default top_k=50 applies, as it did in
the original), greedy otherwise. Requests are grouped by max_tokens so each gets its own budget.
Seeding: torch is seeded with the first request's seed before each batch, so a run is
reproducible for the same batching (per-request streams are the codegen backend's feature).
Decoding keeps special tokens and does no clean-up of spaces, so completions are the exact text.
"""
from __future__ import annotations

import torch
import transformers

from mtpb.backends.base import BackendError, Request, SamplingParams, engine_error, parse_number
from mtpb.engine.load import EngineError, resolve_device, resolve_dtype


class TransformersBackend:
    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 batch_size: str | int = 8):
        if not model:
            raise BackendError("transformers: pass --model (a local folder or a Hugging Face hub id)")
        self.model_name = str(model)
        try:   # the engine's reading of device and dtype, so both backends take the same values
            self.device = resolve_device(device)
            self.dtype = resolve_dtype(dtype, self.device)
        except EngineError as e:
            raise engine_error("transformers", e) from None
        self.preferred_batch_size = parse_number(batch_size, "batch_size", int, 1)
        try:
            self.tokenizer = transformers.AutoTokenizer.from_pretrained(self.model_name)
            self.model = transformers.AutoModelForCausalLM.from_pretrained(self.model_name, dtype=self.dtype)
        except (OSError, ValueError) as e:
            raise BackendError(f"transformers: cannot load {self.model_name}: {e}") from e
        self.model.to(self.device).eval()
        self.tokenizer.padding_side = "left"      # generation continues from the right edge
        self.tokenizer.truncation_side = "left"   # an over-long history keeps its recent end
        self.tokenizer.pad_token = self.tokenizer.eos_token
        self.max_positions = getattr(self.model.config, "max_position_embeddings", None) or 2048

    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]:
        if params.mode == "chat":
            raise BackendError("transformers: this backend completes text; use --mode multi or single")
        out: list[str | None] = [None] * len(requests)
        by_budget: dict[int, list[int]] = {}
        for i, r in enumerate(requests):
            by_budget.setdefault(r.max_tokens, []).append(i)
        for budget, indices in by_budget.items():
            for lo in range(0, len(indices), self.preferred_batch_size):
                batch = indices[lo:lo + self.preferred_batch_size]
                texts = self._generate([requests[i] for i in batch], budget, params)
                for i, text in zip(batch, texts):
                    out[i] = text
        return out  # type: ignore[return-value]

    @torch.inference_mode()
    def _generate(self, batch: list[Request], budget: int, params: SamplingParams) -> list[str]:
        enc = self.tokenizer([r.context for r in batch], return_tensors="pt", padding=True,
                             truncation=True, max_length=max(self.max_positions - budget, 1))
        ids = enc["input_ids"].to(self.device)
        sampling = params.temperature > 0
        extra = {"temperature": params.temperature, "top_p": params.top_p} if sampling else {}
        torch.manual_seed(batch[0].seed)
        tokens = self.model.generate(ids, attention_mask=enc["attention_mask"].to(self.device),
                                     do_sample=sampling, max_new_tokens=budget,
                                     pad_token_id=self.tokenizer.eos_token_id, use_cache=True, **extra)
        return self.tokenizer.batch_decode(tokens[:, ids.shape[1]:], skip_special_tokens=False,
                                           clean_up_tokenization_spaces=False)

    def describe(self) -> dict:
        return {"model": self.model_name, "backend": "transformers",
                "parameters": sum(p.numel() for p in self.model.parameters()),
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device),
                "batch_size": self.preferred_batch_size, "transformers": transformers.__version__}
