"""What runs on a Ray cluster's nodes for `mtpb run --ray`: generation replicas and sandbox hosts.

Plain classes (mtpb.ray_cluster makes them Ray actors), so this module imports no ray. Neither
writes anything of the run directory: they return sample records and sandbox replies to the driver,
which alone writes RUN/ (mtpb.ray_runner).
"""
from __future__ import annotations

import os
import queue
import socket
from pathlib import Path


class Replica:
    """One backend (one engine, one checkpoint loaded on this node) that generates whole samples: every
    turn of the items it is given, so an engine's cache rows serve the next turn of the same item.

    An error while starting is kept and raised by ready(): the driver then shows it as the local run
    would (a BackendError names the -B option at fault), not as a dead actor."""

    def __init__(self, backend: str, model: str | None, options: dict, config, problems: list):
        from mtpb.backends import create_backend
        from mtpb.runner import Runner
        self.error = None
        try:
            self.backend = create_backend(backend, model, options)
        except Exception as e:   # raised again, whole, by ready()
            self.error = e
            return
        # the runner's own turn loop, so a sample is built exactly as a local run builds it; this
        # Runner never touches a run directory (only _generate is called)
        self.runner = Runner(config, Path("."), self.backend, None, problems)

    def ready(self) -> dict:
        if self.error is not None:
            raise self.error
        described = self.backend.describe() if hasattr(self.backend, "describe") else {}
        return {"describe": described, "host": socket.gethostname(), "pid": os.getpid(),
                "batch_size": getattr(self.backend, "preferred_batch_size", 16) or 16}

    def generate(self, keys: list[tuple]) -> list[dict]:
        """Sample records (runner._sample_record) for (problem, test, sample) keys, in order."""
        from mtpb.runner import Item
        problems = self.runner.problems
        return self.runner._generate([Item(problems[p], t, s) for p, t, s in keys])

    def close(self):
        if self.error is None and hasattr(self.backend, "close"):
            self.backend.close()


class SandboxHost:
    """The sandbox of one node: `workers` executors (process or docker, as `mtpb run --sandbox` opens
    them here). Ray runs up to `workers` batches at once (one actor thread each), and each batch
    borrows one executor for its programs in turn, so no executor waits for another batch's slowest
    program; the pool's own retry of a dead executor (then sandbox_error) applies as in a local run."""

    def __init__(self, sandbox: str, workers: int, limits):
        from mtpb.sandboxes import open_sandbox
        self.error, self.warnings = None, []
        try:
            self.box = open_sandbox(sandbox, workers=workers, limits=limits, warn=self.warnings.append)
        except Exception as e:   # raised again, whole, by ready()
            self.error = e
            return
        self.free: queue.Queue = queue.Queue()
        for client in self.box.pool.clients:
            self.free.put(client)

    def ready(self) -> dict:
        if self.error is not None:
            raise self.error
        return {"describe": self.box.describe(), "warnings": self.warnings, "host": socket.gethostname(),
                "workers": len(self.box.pool.clients)}

    def run(self, programs: list[str], check: bool = False) -> list[dict]:
        client = self.free.get()
        try:
            return [self.box.pool.run_one(client, program, check) for program in programs]
        finally:
            self.free.put(client)

    def close(self):
        if self.error is None:
            self.box.close()
