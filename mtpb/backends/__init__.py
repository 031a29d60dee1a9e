"""Model backends: the batch-first protocol and the registry (entry-point group `mtpb.backends`)."""
from mtpb.backends.base import Backend, BackendError, Request, SamplingParams
from mtpb.backends.registry import available_backends, create_backend

__all__ = ["Backend", "BackendError", "Request", "SamplingParams", "available_backends", "create_backend"]
