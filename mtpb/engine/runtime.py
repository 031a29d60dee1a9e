"""The one way from a runtime name to an engine: `torch` (load.py, the default) or `jax`
(jax/load.py). Each runtime's framework is imported only when that runtime is asked for."""
from __future__ import annotations

from mtpb.engine.checkpoint import EngineError

RUNTIMES = ("torch", "jax")


def load_engine(checkpoint, runtime: str | None = None, mesh: str | None = None, **options):
    """An engine of `runtime` for a checkpoint; options are load.load_engine's (mesh: JAX only).
    Raises EngineError."""
    runtime = runtime or "torch"
    if runtime == "torch":
        if mesh is not None:
            raise EngineError("is an option of the JAX runtime; ask for runtime jax", "mesh", mesh)
        from mtpb.engine.load import load_engine as load
        return load(checkpoint, **options)
    if runtime == "jax":
        try:
            from mtpb.engine.jax.load import load_engine as load
        except ImportError as e:
            raise EngineError(f"needs JAX, which is not installed (no module {e.name}): pip install 'mtpb[jax]' "
                              "(docs/engine.md says how for TPU and GPU)", "runtime", runtime) from None
        return load(checkpoint, mesh=mesh, **options)
    raise EngineError("use torch or jax", "runtime", runtime)
