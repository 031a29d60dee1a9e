"""The `docker` sandbox: a pool of warm, hardened containers, one executor (sandbox/executor.py) each.

Each pool slot runs `docker run -i` of the image built from sandbox/ and speaks the executor's line
protocol over the CLI's stdin and stdout, so a program costs one fork inside a container that is
already up, not a container start. A container is thrown away and replaced after `recycle_after`
programs and after any program that had to be killed (timeout, signal); one that dies or wedges
mid-program is replaced and the program retried once, then reported as sandbox_error. If the engine
itself stops answering, the batch raises EngineGone and returns nothing, so the runner records
nothing for it and rerunning the same command resumes: no result is lost or recorded twice.
"""
from __future__ import annotations

import itertools
import json
import os
import queue
import secrets
import socket
import subprocess
import threading
from dataclasses import dataclass

from mtpb.sandboxes.base import ExecutorClient, ExecutorDied, Limits, Pool, SandboxUnavailable
from mtpb.sandboxes.docker_image import (LABEL, EngineGone, build_image, docker, engine_reason, image_exists,
                                         image_tag)

__all__ = ["DockerSandbox", "EngineGone", "build_image", "clean", "unavailable_reason", "Hardening"]

FIRST_UID = 10000        # slot i runs as uid FIRST_UID + i, so no two containers share a per-uid count
GID = 10000
START_TRIES = 3          # a container that will not start this often means the engine or image is broken
RECYCLE_AFTER = int(os.environ.get("MTPB_DOCKER_RECYCLE_AFTER", "1000"))


@dataclass(frozen=True)
class Hardening:
    """What every container gets beyond the image: no network, nothing writable but two small tmpfs."""
    tmp_mb: int = 256            # /tmp, the program's working folder
    shm_mb: int = 64             # /dev/shm
    executor_mb: int = 512       # the executor itself (numpy and pandas imported) on top of the program's limit
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
                "--init", "--hostname", "sandbox",
                # replies already come back through the attach stream; a log would only copy them to disk
                "--log-driver", "none"]


def unavailable_reason() -> str | None:
    """None when an engine answers and the image for the current sandbox/ exists, else why not."""
    reason = engine_reason(timeout=3)
    if reason:
        return reason
    tag = image_tag()
    try:
        if image_exists(tag, timeout=3):
            return None
    except SandboxUnavailable as e:
        return str(e)
    return f"the sandbox image {tag} is not built (run: mtpb sandbox build)"


def clean() -> int:
    """Remove every container any mtpb process left (by label); returns how many."""
    ids = docker("ps", "-aq", "--filter", f"label={LABEL}", timeout=30).stdout.decode().split()
    if ids:
        docker("rm", "-f", *ids, timeout=120, check=False)
    return len(ids)


class ContainerClient(ExecutorClient):
    """One executor in its own container. kill() and retire() remove the container, not only the CLI."""

    def __init__(self, image: str, slot: int, owner: str, limits: Limits, hardening: Hardening,
                 recycle_after: int):
        args = json.dumps({"limits": limits.executor_limits(), "tmp_root": "/tmp", "clean": ["/tmp", "/dev/shm"]})
        self.run_args = ["--label", f"{LABEL}=executor", "--label", f"mtpb.owner={owner}",
                         *hardening.run_args(limits, FIRST_UID + slot), image,
                         "/usr/bin/python3", "-I", "/sandbox/executor.py", args]
        self.prefix, self.recycle_after = f"mtpb-{owner}-{slot}", recycle_after
        self.names = itertools.count()
        self.name, self.served, self.retiring = None, 0, []
        super().__init__([])

    def start(self):
        """Start a fresh container; raise SandboxUnavailable (which stops the run) if none will start."""
        error = None
        for _ in range(START_TRIES):
            self.name = f"{self.prefix}-{next(self.names)}"
            self.command = ["docker", "run", "-i", "--rm", "--name", self.name, *self.run_args]
            self.served = 0
            try:
                return super().start()
            except ExecutorDied as e:
                error = e
                self.kill()
                reason = engine_reason()
                if reason:
                    raise EngineGone(f"the Docker engine stopped answering ({reason}): rerun the same command "
                                     "to resume")
        raise SandboxUnavailable(f"no sandbox container would start ({START_TRIES} tries): {error}")

    def run(self, program: str, timeout: float) -> dict:
        reply = super().run(program, timeout)
        self.served += 1
        # the executor already killed and removed what a killed program left; a fresh container
        # is the second line of defence, and cheap next to the timeout that was just spent
        if reply.get("timed_out") or reply.get("signal") is not None or self.served >= self.recycle_after:
            self.retire()
        return reply

    def kill(self):
        """The executor died or wedged: remove its container now (the retry needs the slot's budget)."""
        name = self.name
        super().kill()
        if name:
            docker("rm", "-f", name, timeout=60, check=False)

    def retire(self):
        """Replace the container at the next program; removing the old one goes on in the background."""
        if self.proc is None:
            return
        self.proc.kill()
        self.retiring.append(self.proc)
        self.retiring.append(subprocess.Popen(["docker", "rm", "-f", self.name], stdin=subprocess.DEVNULL,
                                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        self.proc = None
        self._reap(wait=False)

    def _reap(self, wait: bool):
        alive = []
        for proc in self.retiring:
            try:
                proc.wait(timeout=60 if wait else 0)
            except subprocess.TimeoutExpired:
                if wait:
                    proc.kill()
                    proc.wait()
                else:
                    alive.append(proc)
                    continue
            for stream in (proc.stdin, proc.stdout, proc.stderr):
                if stream:
                    stream.close()
        self.retiring = alive

    def stop(self):
        super().stop()  # closes the executor's stdin: it exits, and --rm removes its container
        self._reap(wait=True)


class ContainerPool(Pool):
    """The base pool, but an engine failure stops every worker and surfaces as an exception."""

    def run(self, programs: list[str]) -> list[dict]:
        jobs: queue.Queue = queue.Queue()
        for item in enumerate(programs):
            jobs.put(item)
        replies: list = [None] * len(programs)
        failures: list[Exception] = []
        threads = [threading.Thread(target=self._guarded, args=(c, jobs, replies, failures), daemon=True)
                   for c in self.clients[:max(1, len(programs))]]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if failures:
            # replies of this batch are dropped on purpose: the caller records none, and a rerun redoes it
            raise failures[0]
        return replies

    def _guarded(self, client, jobs, replies, failures):
        try:
            while not failures:
                try:
                    index, program = jobs.get_nowait()
                except queue.Empty:
                    return
                replies[index] = self.run_one(client, program)
        except SandboxUnavailable as e:
            failures.append(e)

    def run_one(self, client: ContainerClient, program: str) -> dict:
        error = None
        for _attempt in range(2):
            try:
                reply = client.run(program, self.limits.timeout)
            except ExecutorDied as e:
                error = str(e)
                client.kill()
                reason = engine_reason()
                if reason:  # not this program's fault, nor the container's: stop the run, do not record
                    raise EngineGone(f"the Docker engine stopped answering ({reason}): rerun the same "
                                     "command to resume")
                continue
            if "internal_error" in reply:
                return {"sandbox_error": f"executor: {reply['internal_error']}"}
            return reply
        return {"sandbox_error": f"the sandbox failed twice on this program: {error}"}


class DockerSandbox:
    name = "docker"

    def __init__(self, workers: int = 2, limits: Limits | None = None, image: str | None = None,
                 recycle_after: int = RECYCLE_AFTER, hardening: Hardening | None = None):
        self.limits = limits or Limits()
        reason = engine_reason()
        if reason:
            raise SandboxUnavailable(reason)
        self.image = image or image_tag()
        if not image_exists(self.image):
            raise SandboxUnavailable(f"the sandbox image {self.image} is not built (run: mtpb sandbox build)")
        # one owner label per pool: close() removes exactly its own containers, even ones it lost track of
        self.owner = f"{socket.gethostname()[:20]}-{os.getpid()}-{secrets.token_hex(3)}".replace("_", "-")
        hardening = hardening or Hardening()
        self.pool = ContainerPool(lambda i: ContainerClient(self.image, i, self.owner, self.limits, hardening,
                                                            max(1, recycle_after)), workers, self.limits)
        self._start_all()

    def _start_all(self):
        """Warm every slot now, in parallel, so a broken image or engine shows before the first batch."""
        errors: list[Exception] = []

        def start(client):
            try:
                client.start()
            except SandboxUnavailable as e:
                errors.append(e)
        threads = [threading.Thread(target=start, args=(c,), daemon=True) for c in self.pool.clients]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            self.close()
            raise errors[0]

    @property
    def clients(self) -> list[ContainerClient]:
        return self.pool.clients

    def run(self, programs: list[str]) -> list[dict]:
        return self.pool.run(programs)

    def containers(self) -> list[str]:
        """Names of this pool's containers that the engine still has (running or not)."""
        done = docker("ps", "-a", "--filter", f"label=mtpb.owner={self.owner}", "--format", "{{.Names}}",
                      timeout=30, check=False)
        return done.stdout.decode().split()

    def close(self):
        for client in self.pool.clients:
            try:
                client.stop()
            except OSError:
                client.kill()
        if engine_reason(timeout=3) is None:  # a gone engine took its containers with it
            left = self.containers()
            if left:
                docker("rm", "-f", *left, timeout=120, check=False)
