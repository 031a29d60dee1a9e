"""Backend lookup: the built-in ones by module path, third parties through entry points."""
from __future__ import annotations

import importlib
import inspect
from importlib.metadata import entry_points

from mtpb.backends.base import BackendError

BUILTIN = {
    "reference": "mtpb.backends.reference:ReferenceBackend",
    "replay": "mtpb.backends.replay:ReplayBackend",
    "codegen": "mtpb.backends.codegen:CodeGenBackend",
    "transformers": "mtpb.backends.transformers:TransformersBackend",
    "openai": "mtpb.backends.openai:OpenAIBackend",
}


def _entry_points() -> dict:
    return {ep.name: ep for ep in entry_points(group="mtpb.backends")}


def available_backends() -> list[str]:
    return sorted(set(BUILTIN) | set(_entry_points()))


def _load(name: str):
    if name in BUILTIN:
        module, _, attr = BUILTIN[name].partition(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except ImportError as e:
            raise BackendError(f"backend {name!r} needs a package that is not installed ({e.name}): "
                               f"pip install 'mtpb[{_extra(name)}]'") from e
    eps = _entry_points()
    if name not in eps:
        raise BackendError(f"unknown backend {name!r}: choose one of {', '.join(available_backends())}")
    return eps[name].load()


def _extra(name: str) -> str:
    return {"codegen": "engine", "transformers": "hf", "openai": "openai"}.get(name, "dev")


def create_backend(name: str, model: str | None = None, options: dict | None = None):
    """Build a backend from its name, the --model value and the -B options (strings)."""
    cls = _load(name)
    options = dict(options or {})
    if model is not None:
        options["model"] = model
    params = inspect.signature(cls).parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    unknown = [k for k in options if k not in params and not takes_any]
    if unknown:
        known = [k for k in params if params[k].kind is params[k].KEYWORD_ONLY or k != "self"]
        raise BackendError(f"backend {name!r} has no option {', '.join(unknown)}: its options are "
                           f"{', '.join(known) or 'none'}")
    try:
        return cls(**options)
    except TypeError as e:
        raise BackendError(f"backend {name!r}: {e}") from e
