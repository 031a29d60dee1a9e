"""The sandbox protocol and the host side of the executor's line protocol, shared by both sandboxes."""
from __future__ import annotations

import json
import os
import queue
import select
import subprocess
import threading
import time
from dataclasses import asdict, dataclass
from typing import Callable, Protocol

from mtpb.paths import data_path

GRACE_SECONDS = 10.0     # how long past the program's timeout an executor may take to answer
START_SECONDS = 60.0     # how long an executor may take to say it is ready


@dataclass(frozen=True)
class Limits:
    timeout: float = 10.0       # wall seconds per program
    memory_mb: int = 1024       # address space on top of the executor's own
    nproc: int = 64
    fsize_mb: int = 16
    nofile: int = 256
    stdout_bytes: int = 65536
    stderr_bytes: int = 16384

    def executor_limits(self) -> dict:
        d = asdict(self)
        d.pop("timeout")
        return d


class Sandbox(Protocol):
    name: str

    def run(self, programs: list[str]) -> list[dict]:
        """One executor reply per program, in order (see sandbox/executor.py for the fields)."""
        ...

    def describe(self) -> str:
        """One line naming the sandbox and what runs the programs, printed as a run starts."""
        ...

    def close(self) -> None: ...


class SandboxUnavailable(Exception):
    """The sandbox cannot start here; the message says why and what to do."""


def executor_dir():
    return data_path("sandbox")


class ExecutorDied(Exception):
    pass


def parse_reply(line: bytes) -> dict:
    """One line the executor wrote to its stdout, as JSON."""
    try:
        return json.loads(line)
    except ValueError:
        raise ExecutorDied(f"the executor sent a line that is not JSON: {line[:200]!r}") from None


class ExecutorClient:
    """One running executor, started by `command`, spoken to over its stdin and stdout."""

    def __init__(self, command: list[str], **popen):
        self.command, self.popen, self.proc = command, popen, None
        self._buffer = b""
        self._requests = 0

    def start(self):
        self.proc = subprocess.Popen(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, **self.popen)
        self._buffer = b""
        hello = self._readline(time.monotonic() + START_SECONDS)
        if not hello.get("ready"):
            raise ExecutorDied(f"the executor did not start: {hello}")
        self.hello = hello

    def run(self, program: str, timeout: float) -> dict:
        if self.proc is None or self.proc.poll() is not None:
            self.start()
        self._requests += 1  # numbered: a reply for another number means the stream is out of step
        request = json.dumps({"id": self._requests, "program": program, "timeout": timeout}) + "\n"
        try:
            self.proc.stdin.write(request.encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise ExecutorDied(f"cannot write to the executor: {e}")
        reply = self._readline(time.monotonic() + timeout + GRACE_SECONDS)
        if reply.get("id") != self._requests:
            raise ExecutorDied(f"the executor answered request {reply.get('id')!r}, not {self._requests}")
        return reply

    def _readline(self, deadline: float) -> dict:
        fd = self.proc.stdout.fileno()
        while b"\n" not in self._buffer:
            left = deadline - time.monotonic()
            if left <= 0:
                raise ExecutorDied("the executor stopped answering (wedged)")
            ready, _, _ = select.select([fd], [], [], left)
            if ready:
                chunk = os.read(fd, 1 << 20)
                if not chunk:
                    raise ExecutorDied(f"the executor exited ({self._stderr_tail()})")
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        return parse_reply(line)

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "still running"
        err = self.proc.stderr.read()[-500:].decode("utf-8", "replace").strip()
        return f"exit code {self.proc.returncode}" + (f": {err}" if err else "")

    def kill(self):
        """Throw the executor away (it died or wedged); the next run starts a fresh one."""
        if self.proc is None:
            return
        self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout, self.proc.stderr):
            try:
                stream.close()
            except OSError:
                pass
        self.proc = None

    def stop(self):
        if self.proc is None:
            return
        for stream in (self.proc.stdin,):
            try:
                stream.close()
            except OSError:
                pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for stream in (self.proc.stdout, self.proc.stderr):
            stream.close()
        self.proc = None


class Pool:
    """Programs stream to `workers` executors; replies come back in input order.

    A dead or wedged executor is restarted and its program retried once, then reported as
    sandbox_error (never a lost or duplicated result). A SandboxUnavailable (the engine behind the
    executors went away) stops every worker and is raised with no replies: the caller records none
    of the batch, so a rerun redoes it.
    """

    def __init__(self, make_client: Callable[[int], ExecutorClient], workers: int, limits: Limits):
        self.limits = limits
        self.clients = [make_client(i) for i in range(max(1, workers))]

    def run(self, programs: list[str]) -> list[dict]:
        jobs: queue.Queue = queue.Queue()
        for item in enumerate(programs):
            jobs.put(item)
        replies: list = [None] * len(programs)
        failures: list[Exception] = []
        threads = [threading.Thread(target=self._work, args=(c, jobs, replies, failures), daemon=True)
                   for c in self.clients[:max(1, len(programs))]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        return replies

    def _work(self, client: ExecutorClient, jobs: queue.Queue, replies: list, failures: list):
        try:
            while not failures:
                try:
                    index, program = jobs.get_nowait()
                except queue.Empty:
                    return
                replies[index] = self.run_one(client, program)
        except SandboxUnavailable as e:
            failures.append(e)

    def run_one(self, client: ExecutorClient, program: str) -> dict:
        error = None
        for _attempt in range(2):
            try:
                reply = client.run(program, self.limits.timeout)
            except ExecutorDied as e:
                error = str(e)
                client.kill()
                self.after_death()
                continue
            if "internal_error" in reply:
                return {"sandbox_error": f"executor: {reply['internal_error']}"}
            return reply
        return {"sandbox_error": f"the sandbox failed twice on this program: {error}"}

    def after_death(self):
        """Called after an executor died; raise SandboxUnavailable to stop the whole run instead."""

    def close(self):
        for c in self.clients:
            c.stop()

