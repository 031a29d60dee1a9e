"""`codegen` backend: the bundled engine (mtpb.engine) on a Hugging Face CodeGen checkpoint.

    mtpb run --backend codegen --model FOLDER_OR_HUB_ID [-B device=cuda] [-B dtype=fp16]
             [-B batch_size=32] [-B max_length=2048] [-B top_k=50] [-B decode=eager]
             [-B runtime=jax [-B mesh=DATAxMODEL]]

The options are mtpb.engine.load.load_engine's (decode: `graphs`, CUDA graphs for the decode step,
the default on cuda, or `eager`, the default elsewhere and on a GPU the way around a graph capture
that fails with your driver or torch build). runtime: `torch` (the default) or `jax`, the JAX runtime
(mtpb.engine.jax: TPU, GPU or CPU, device = the JAX platform, mesh = data x model parallelism over its
devices); each imports only its own framework.

Without --model it runs the bundled tiny checkpoint (checkpoints/tiny-codegen), a demo model.
Each (problem, test, sample) keeps its cache row between turns, so a turn only prefills its new
prompt; sequences stop as soon as prompts.is_finished says the truncated completion is final.
"""
from __future__ import annotations

from mtpb.backends.base import BackendError, Request, SamplingParams, engine_error
from mtpb.engine.checkpoint import EngineError
from mtpb.engine.requests import GenerationRequest
from mtpb.engine.runtime import load_engine
from mtpb.paths import tiny_checkpoint
from mtpb.prompts import is_finished


class CodeGenBackend:
    def __init__(self, model: str | None = None, device: str | None = None, dtype: str | None = None,
                 batch_size: str | int = 16, max_length: str | int | None = None, top_k: str | int = 50,
                 decode: str | None = None, runtime: str | None = None, mesh: str | None = None):
        self.model_name = str(model or tiny_checkpoint())
        try:
            self.engine = load_engine(self.model_name, runtime, mesh, device=device, dtype=dtype,
                                      batch_size=batch_size, max_length=max_length, top_k=top_k, decode=decode)
        except EngineError as e:
            raise engine_error("codegen", e) from e
        self.preferred_batch_size = self.engine.max_batch

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
        return {"model": self.model_name, "backend": "codegen", **self.engine.describe()}

