"""`codegen` backend: the bundled engine (mtpb.engine) on a Hugging Face CodeGen checkpoint.

    mtpb run --backend codegen --model FOLDER_OR_HUB_ID [-B device=cuda] [-B dtype=fp16]
             [-B batch_size=32] [-B max_length=2048] [-B top_k=50] [-B decode=eager]

decode: `graphs` (CUDA graphs for the decode step, the default on cuda) or `eager` (the default
elsewhere; on a GPU, the way around a graph capture that fails with your driver or torch build).

Without --model it runs the bundled tiny checkpoint (checkpoints/tiny-codegen), a demo model.
Each (problem, test, sample) keeps its cache row between turns, so a turn only prefills its new
prompt; sequences stop as soon as prompts.is_finished says the truncated completion is final.
"""
from __future__ import annotations

import torch

from mtpb.backends.base import BackendError, Request, SamplingParams, parse_number
from mtpb.engine.generate import Engine, GenerationRequest
from mtpb.engine.load import load_model, parameter_count, parse_dtype
from mtpb.paths import data_path
from mtpb.prompts import is_finished


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        dev = torch.device(device)
    except RuntimeError:
        raise BackendError(f"-B device={device}: not a torch device (cpu, cuda, cuda:1 ...)") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise BackendError(f"-B device={device}: CUDA is not available here")
    return dev


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    try:
        return parse_dtype(dtype)
    except ValueError as e:
        raise BackendError(f"-B dtype={dtype}: {e}") from None


class CodeGenBackend:
    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 batch_size: str | int = 16, max_length: str | int | None = None, top_k: str | int = 50,
                 decode: str | None = None):
        self.model_name = str(model) if model else str(data_path("checkpoints") / "tiny-codegen")
        self.device = resolve_device(device)
        self.dtype = resolve_dtype(dtype, self.device)
        self.preferred_batch_size = parse_number(batch_size, "batch_size", int, 1)
        max_len = parse_number(max_length, "max_length", int, 2) if max_length is not None else None
        if decode not in (None, "graphs", "eager"):
            raise BackendError(f"-B decode={decode}: use graphs (CUDA only) or eager")
        if decode == "graphs" and self.device.type != "cuda":
            raise BackendError(f"-B decode=graphs needs a CUDA device, not {self.device}; leave decode out")
        try:
            net, tokenizer = load_model(self.model_name, self.device, self.dtype)
        except (FileNotFoundError, ValueError, OSError) as e:
            raise BackendError(f"codegen: cannot load {self.model_name}: {e}") from e
        self.engine = Engine(net, tokenizer, max_batch=self.preferred_batch_size, max_length=max_len,
                             top_k=parse_number(top_k, "top_k"), decode=decode or "auto")
        self.parameters = parameter_count(net)

    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]:
        if params.mode == "chat":
            raise BackendError("codegen: a CodeGen checkpoint is a completion model; use --mode multi or single")
        work = [GenerationRequest(prompt=r.context, max_new_tokens=r.max_tokens, seed=r.seed,
                                  temperature=params.temperature, top_p=params.top_p,
                                  key=(r.problem_id, r.test_index, r.sample_index)) for r in requests]
        mode = params.mode
        done = self.engine.generate(work, lambda text: is_finished(text, mode))
        return [c.text for c in done]

    def describe(self) -> dict:
        return {"model": self.model_name, "parameters": self.parameters, "backend": "codegen",
                "dtype": str(self.dtype).removeprefix("torch."), "device": str(self.device),
                "batch_size": self.preferred_batch_size, "max_length": self.engine.max_length,
                "top_k": self.engine.top_k}
