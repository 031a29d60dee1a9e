"""Sandboxes: `process` (this host, bubblewrap) and `docker` (a warm container pool)."""
from __future__ import annotations

from mtpb.sandboxes.base import Limits, Sandbox, SandboxUnavailable

SANDBOXES = ("auto", "docker", "process")


def open_sandbox(name: str, workers: int = 2, limits: Limits | None = None, warn=print,
                 wait: bool = True) -> Sandbox:
    """`auto` takes docker when an engine answers and the image is built, else process (with a warning).
    wait=False: the executors are still starting; call ready() before the run writes anything."""
    if name not in SANDBOXES:
        raise SandboxUnavailable(f"unknown sandbox {name!r}: choose one of {', '.join(SANDBOXES)}")
    if name in ("auto", "docker"):
        try:
            from mtpb.sandboxes import docker as docker_sandbox
        except ImportError as e:
            reason = f"the docker sandbox is not available here ({e})"
        else:
            try:  # it checks the engine and the image itself, first thing: asked once, not twice
                return docker_sandbox.DockerSandbox(workers=workers, limits=limits, wait=wait)
            except SandboxUnavailable as e:  # no engine, no image, or an engine that refuses the hardening
                if name == "docker":
                    raise
                reason = str(e)
        if name == "docker":
            raise SandboxUnavailable(reason)
        warn(f"sandbox: using process, not docker: {reason}")
    from mtpb.sandboxes.process import ProcessSandbox
    sandbox = ProcessSandbox(workers=workers, limits=limits, wait=wait)
    if sandbox.warning:
        warn(f"sandbox: {sandbox.warning}")
    return sandbox


__all__ = ["Limits", "Sandbox", "SandboxUnavailable", "open_sandbox", "SANDBOXES"]
