"""The `docker` sandbox: a pool of warm, hardened containers, one executor (sandbox/executor.py) each.

Each pool slot creates a container with the `docker` CLI and runs the executor in it as an exec'd
process whose stdin and stdout the pool reaches over the engine's API socket, so a program costs
one fork inside a container that is already up: no container start and no CLI process relaying
each line. A container is thrown away and replaced after `recycle_after` programs and after any
program that had to be killed (timeout, signal); one that dies or wedges mid-program is replaced
and the program retried once, then reported as sandbox_error. If the engine itself stops
answering, the batch raises EngineGone and returns nothing, so the runner records nothing for it
and rerunning the same command resumes: no result is lost or recorded twice.
"""
from __future__ import annotations

import itertools
import json
import os
import secrets
import select
import socket
import struct
import subprocess
import threading
import time
from dataclasses import dataclass

from mtpb.sandboxes import base
from mtpb.sandboxes.base import ExecutorDied, Limits, Pool, SandboxUnavailable
from mtpb.sandboxes.docker_engine import (LABEL, EngineGone, api, docker, engine_address, engine_gone,
                                          engine_reason, has_image, hijack, quick_reason)
from mtpb.sandboxes.docker_image import build_image, image_exists, image_tag

__all__ = ["DockerSandbox", "EngineGone", "Hardening", "build_image", "clean", "unavailable_reason"]

FIRST_UID = 10000        # slot i of n runs as uid FIRST_UID + i, its next container as FIRST_UID + n + i, and so on
                         # in turn: no two containers share a per-uid count
GID = 10000
START_TRIES = 3          # a container that will not start this often means the engine or image is broken
RECYCLE_AFTER = 1000     # programs per container; MTPB_DOCKER_RECYCLE_AFTER overrides
SPARE_AHEAD = 50         # programs before a container's quota is served that its replacement starts


@dataclass(frozen=True)
class Hardening:
    """What every container gets beyond the image: no network, nothing writable but two small tmpfs."""
    tmp_mb: int = 256            # /tmp, the program's working folder
    shm_mb: int = 64             # /dev/shm
    executor_mb: int = 512       # the executor and its helper (numpy and pandas) on top of the program's limit
    cpus: float = 1.0
    extra_pids: int = 16         # init, the executor and its threads on top of the program's nproc

    def run_args(self, limits: Limits, uid: int) -> list[str]:
        # tmpfs pages count against the container's memory, so the cap leaves room for them too
        memory = f"{limits.memory_mb + self.executor_mb + self.tmp_mb + self.shm_mb}m"
        return ["--network", "none", "--read-only",
                "--tmpfs", f"/tmp:rw,nosuid,nodev,noexec,size={self.tmp_mb}m,mode=1777",
                "--shm-size", f"{self.shm_mb}m",
                "--user", f"{uid}:{GID}", "--cap-drop", "ALL", "--security-opt", "no-new-privileges",
                "--pids-limit", str(limits.nproc + self.extra_pids),
                "--memory", memory, "--memory-swap", memory, "--cpus", f"{self.cpus:g}",
                # pid 1 is an init that reaps; a stop needs no grace (the executor keeps no state)
                "--init", "--stop-timeout", "1", "--hostname", "sandbox",
                # no SysV IPC and no POSIX message queues: their objects would outlive a program in the
                # container's IPC namespace, where the next program could find them
                "--sysctl", "kernel.shmmni=0", "--sysctl", "kernel.msgmni=0", "--sysctl", "kernel.sem=0 0 0 0",
                "--sysctl", "fs.mqueue.queues_max=0",
                # the executor's replies come through the exec stream; nothing else needs keeping on disk
                "--log-driver", "none"]


def unavailable_reason() -> str | None:
    """None when an engine answers and the image for the current sandbox/ exists, else why not."""
    reason = engine_reason(timeout=3)
    if reason:
        return reason
    tag = image_tag()
    try:
        engine_address()
        if image_exists(tag, timeout=3):
            return None
    except SandboxUnavailable as e:
        return str(e)
    return f"the sandbox image {tag} is not built (run: mtpb sandbox build)"


def clean(everything: bool = False, this_host_only: bool = False) -> tuple[int, int]:
    """Remove the containers mtpb processes left (by label) -> (removed, kept). Unless everything,
    keep those whose owner is a process still alive on this host: a run in progress. this_host_only
    (a run's start) also keeps those of other hosts, whose liveness this host cannot see."""
    listed = docker("ps", "-a", "--filter", f"label={LABEL}", "--format", '{{.ID}} {{.Label "mtpb.owner"}}',
                    timeout=30).stdout.decode().split("\n")
    remove, kept = [], 0
    for line in filter(None, listed):
        cid, _, owner = line.partition(" ")
        elsewhere = this_host_only and owner.rsplit("-", 2)[0] != _owner_host()
        if not everything and (elsewhere or _owner_alive(owner)):
            kept += 1
        else:
            remove.append(cid)
    if remove:
        docker("rm", "-f", *remove, timeout=120, check=False)
    return len(remove), kept


def _clean_quietly():
    try:
        clean(this_host_only=True)
    except SandboxUnavailable:  # the engine's failures show where they matter: starting our containers
        pass


def _owner_alive(owner: str) -> bool:
    """owner is HOST-PID-TOKEN (DockerSandbox.owner): alive when HOST is this one and PID runs."""
    host, pid = (owner.rsplit("-", 2) + ["", ""])[:2]
    if host != _owner_host() or not pid.isdigit():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def _owner_host() -> str:
    return socket.gethostname()[:20].replace("_", "-")


# The container's own process only waits for its stdin to close (the pool holds it open: when the
# harness goes, even by kill -9, the container stops and removes itself). It ignores the signals a
# program could send it through init, which forwards them.
IDLE = ["/bin/sh", "-c", "trap '' TERM INT HUP QUIT USR1 USR2 ALRM; exec cat >/dev/null"]


class ContainerTransport:
    """An executor in its own container, over an exec stream of the engine's API socket.

    The executor is an exec'd process, not the container's main one, so its stdin and stdout are held
    by it alone: init (pid 1, same uid, readable through /proc) holds only the idle main process's stdio.
    """

    def __init__(self, image: str, slot: int, owner: str, limits: Limits, hardening: Hardening, address: tuple,
                 uids: tuple[int, ...] | None = None):
        # Successive containers of a slot take turns between its uids: a spare, or a replacement started
        # while the old container is still being removed, never shares the old one's per-uid count.
        self.create_args = [["--label", f"{LABEL}=executor", "--label", f"mtpb.owner={owner}",
                             *hardening.run_args(limits, uid), image, *IDLE] for uid in uids or (FIRST_UID + slot,)]
        args = json.dumps({"limits": limits.executor_limits(), "tmp_root": "/tmp", "clean": ["/tmp", "/dev/shm"]})
        self.executor = ["/usr/bin/python3", "-I", "/sandbox/executor.py", args]
        self.prefix, self.address = f"mtpb-{owner}-{slot}", address
        self.names = itertools.count()
        self.name, self.sock, self.lifeline = None, None, None
        self.retiring: list[subprocess.Popen] = []
        self._frames, self._stderr = b"", b""
        self._spare: _Spare | None = None

    def open(self):
        """A running executor: the spare when one was prepared and came up, else a fresh container."""
        spare, self._spare = self._spare, None
        launched = spare.take() if spare is not None else None
        self.name, self.lifeline, self.sock, self._frames = launched or self._launch()
        self._stderr = b""

    def prepare(self):
        """Start the next container now, in the background, so that the switch to it costs nothing."""
        if self._spare is None:
            self._spare = _Spare(self._launch)

    def _launch(self) -> tuple:
        """(name, lifeline, executor stream, bytes read past its headers) of a new container; on failure
        what was made of it is removed."""
        number = next(self.names)
        name = f"{self.prefix}-{number}"
        lifeline = None
        try:
            docker("create", "-i", "--rm", "--name", name, *self.create_args[number % len(self.create_args)],
                   timeout=60)
            lifeline, _ = hijack(self.address, f"/containers/{name}/attach?stream=1&stdin=1")
            api(self.address, "POST", f"/containers/{name}/start", timeout=60)  # no CLI process to start
            run = api(self.address, "POST", f"/containers/{name}/exec",
                      {"AttachStdin": True, "AttachStdout": True, "AttachStderr": True, "Tty": False,
                       "Cmd": self.executor})
            sock, frames = hijack(self.address, f"/exec/{run['Id']}/start", {"Detach": False, "Tty": False})
        except BaseException:
            _close(lifeline)
            docker("rm", "-f", name, timeout=60, check=False)
            raise
        return name, lifeline, sock, frames

    def is_open(self) -> bool:
        return self.sock is not None

    def send(self, data: bytes):
        try:
            self.sock.sendall(data)
        except OSError as e:
            raise ExecutorDied(f"cannot write to the executor: {e}")

    def recv(self, deadline: float, doing: str) -> bytes:
        """The next stdout payload. Without a TTY the engine frames the stream: an 8-byte header
        (stream 1 stdout or 2 stderr, 3 zero bytes, 4-byte big-endian length), then the payload."""
        while True:
            while len(self._frames) < 8 or len(self._frames) < 8 + struct.unpack(">I", self._frames[4:8])[0]:
                self._frames += self._read(deadline, doing)
            kind, size = self._frames[0], struct.unpack(">I", self._frames[4:8])[0]
            payload, self._frames = self._frames[8:8 + size], self._frames[8 + size:]
            if kind == 1:
                return payload
            # only the executor's own failures reach its stderr; keep the end for the message
            self._stderr = (self._stderr + payload)[-4096:]

    def _read(self, deadline: float, doing: str) -> bytes:
        left = deadline - time.monotonic()
        if left <= 0 or not select.select([self.sock], [], [], left)[0]:
            raise ExecutorDied(f"the executor stopped answering while {doing} (wedged)")
        try:
            chunk = self.sock.recv(1 << 20)
        except OSError as e:
            raise ExecutorDied(f"the executor's stream broke: {e}")
        if not chunk:
            tail = self._stderr[-500:].decode("utf-8", "replace").strip()
            raise ExecutorDied("the executor exited" + (f": {tail}" if tail else ""))
        return chunk

    def kill(self):
        """The executor died or wedged: remove its container now (the retry needs the slot's budget)."""
        self._close_stream()
        if self.name:
            docker("rm", "-f", self.name, timeout=60, check=False)

    def retire(self):
        """Replace the container at the next program; the old one is removed in the background."""
        if self.sock is None:
            return
        self._close_stream()
        self._reap(wait=False)
        self.retiring.append(subprocess.Popen(["docker", "rm", "-f", self.name], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))

    def close(self):
        """Close both streams: the executor and the idle process see end of input and exit, and --rm
        removes the container. A spare goes the same way."""
        self._close_stream()
        spare, self._spare = self._spare, None
        launched = spare.take() if spare is not None else None
        if launched:
            _close(launched[1], launched[2])
        self._reap(wait=True)

    def _close_stream(self):
        _close(self.sock, self.lifeline)
        self.sock = self.lifeline = None

    def _reap(self, wait: bool):
        alive = []
        for proc in self.retiring:
            try:
                proc.wait(timeout=60 if wait else 0)
            except subprocess.TimeoutExpired:
                if not wait:
                    alive.append(proc)
                    continue
                proc.kill()
                proc.wait()
        self.retiring = alive


def _close(*streams):
    for stream in streams:
        if stream is not None:
            try:
                stream.close()
            except OSError:
                pass


class _Spare:
    """A container launched on a thread of its own; take() waits for it: its launch, or None if it failed
    (the caller then launches one itself, and says why if that fails too)."""

    def __init__(self, launch):
        self._launched = None
        self._thread = threading.Thread(target=self._run, args=(launch,), daemon=True)
        self._thread.start()

    def _run(self, launch):
        try:
            self._launched = launch()
        except Exception:
            pass

    def take(self) -> tuple | None:
        self._thread.join()
        return self._launched


class ContainerClient(base.ExecutorClient):
    """The executor client over a ContainerTransport: a container that will not start is retried, and
    one is replaced after a program it had to kill and after every `recycle_after` programs."""

    def __init__(self, transport: ContainerTransport, recycle_after: int):
        super().__init__(transport)
        self.recycle_after, self.served = recycle_after, 0

    def start(self):
        """Start a fresh container; raise SandboxUnavailable (which stops the run) if none will start."""
        error = None
        for _ in range(START_TRIES):
            try:
                super().start()
                self.served = 0
                return
            except (ExecutorDied, SandboxUnavailable, OSError) as e:
                error = e
                self.kill()
                reason = engine_reason()
                if reason:
                    raise engine_gone(reason)
        raise SandboxUnavailable(f"no sandbox container would start ({START_TRIES} tries): {error}")

    def run(self, program: str, timeout: float, check: bool = False) -> dict:
        reply = super().run(program, timeout, check)
        self.served += 1
        if self.served == self.recycle_after - max(1, min(SPARE_AHEAD, self.recycle_after // 2)):
            self.transport.prepare()  # the replacement starts while this container serves its last programs
        # The executor already killed and removed what a killed program left; a fresh container is
        # the second line of defence, and cheap next to the timeout just spent. After an internal
        # error the executor may not have cleaned up at all.
        if (reply.get("timed_out") or reply.get("signal") is not None or "internal_error" in reply
                or self.served >= self.recycle_after):
            self.transport.retire()
        return reply


class ContainerPool(Pool):
    """The base pool, but an executor death with the engine gone stops the run (EngineGone)."""

    def after_death(self):
        reason = engine_reason()
        if reason:  # not this program's fault, nor the container's: stop the run, record nothing
            raise engine_gone(reason)


class DockerSandbox:
    name = "docker"

    def __init__(self, workers: int = 2, limits: Limits | None = None, image: str | None = None,
                 recycle_after: int | None = None, hardening: Hardening | None = None, wait: bool = True):
        self.limits = limits or Limits()
        reason = quick_reason()
        if reason:
            raise SandboxUnavailable(reason)
        self.image = image or image_tag()
        address = engine_address()
        # one API call says both that the engine answers and that it has the image (the CLI took two runs)
        found = has_image(address, self.image)
        if found is None:
            raise SandboxUnavailable(engine_reason() or f"the Docker engine at {address[1]} does not answer its API")
        if not found:
            raise SandboxUnavailable(f"the sandbox image {self.image} is not built (run: mtpb sandbox build)")
        recycle_after = recycle_after or int(os.environ.get("MTPB_DOCKER_RECYCLE_AFTER", RECYCLE_AFTER))
        # one owner label per pool: close() removes exactly its own containers, even ones it lost track of
        self.owner = f"{_owner_host()}-{os.getpid()}-{secrets.token_hex(3)}"
        # the containers of runs here that died by kill -9, removed while ours start
        self._cleaning = threading.Thread(target=_clean_quietly, daemon=True)
        self._cleaning.start()
        hardening = hardening or Hardening()
        workers = max(1, workers)
        self.pool = ContainerPool(lambda i: ContainerClient(
            ContainerTransport(self.image, i, self.owner, self.limits, hardening, address,
                               uids=(FIRST_UID + i, FIRST_UID + workers + i)), max(1, recycle_after)),
            workers, self.limits)
        # every slot starts now, at once, and the first programs go as soon as one container answers (the
        # others join as they come up; one that cannot start stops the run at its first program)
        for client in self.pool.clients:
            client.start_in_background()
        self._ready = False
        if wait:
            self.ready()

    def describe(self) -> str:
        return f"docker (image {self.image}; {len(self.pool.clients)} container(s), no network)"

    def ready(self):
        """Wait for the first container, so that a broken image or engine shows before the run begins
        (see ProcessSandbox.ready)."""
        if not self._ready:
            try:
                self.pool.clients[0].wait_started()
            except SandboxUnavailable:
                self.close()
                raise
            self._ready = True

    @property
    def clients(self) -> list[ContainerClient]:
        return self.pool.clients

    def run(self, programs: list[str], check: bool = False) -> list[dict]:
        return self.pool.run(programs, check)

    def containers(self) -> list[str]:
        """Names of this pool's containers that the engine still has (running or not)."""
        done = docker("ps", "-a", "--filter", f"label=mtpb.owner={self.owner}", "--format", "{{.Names}}",
                      timeout=30, check=False)
        return done.stdout.decode().split()

    def close(self):
        """Stop every executor and wait until none of this pool's containers is left."""
        for client in self.pool.clients:
            client.stop()
        self._cleaning.join()
        if engine_reason(timeout=3) is not None:  # a gone engine took its containers with it
            return
        deadline = time.monotonic() + 60
        while (left := self.containers()) and time.monotonic() < deadline:
            # stopped containers remove themselves (--rm); rm -f hurries any that are still going
            docker("rm", "-f", *left, timeout=60, check=False)
            time.sleep(0.2)
