"""Fixtures and helpers for the tests that need a Docker engine (imported by the test modules).

Docker tests skip with the reason when no engine answers or the image is not built; with
MTPB_REQUIRE_DOCKER=1 (set by scripts/test.sh after scripts/ci_docker.sh) they fail instead, so
CI cannot pass by skipping them.
"""
from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

REQUIRE = "MTPB_REQUIRE_DOCKER"


def docker_required() -> bool:
    return os.environ.get(REQUIRE, "") not in ("", "0")


def skip_or_fail(reason: str):
    if docker_required():
        pytest.fail(f"{REQUIRE}=1 but the docker tests cannot run: {reason}", pytrace=False)
    pytest.skip(f"docker: {reason}")


def need_docker():
    """Skip (or fail under MTPB_REQUIRE_DOCKER=1) unless an engine answers and the image is built."""
    from mtpb.sandboxes.docker import unavailable_reason
    reason = unavailable_reason()
    if reason:
        skip_or_fail(reason)


@pytest.fixture(scope="module")
def docker_ready():
    need_docker()


def open_box(kind: str, workers: int = 1, timeout: float = 5.0, **kwargs):
    from mtpb.sandboxes.base import Limits
    limits = Limits(timeout=timeout)
    if kind == "docker":
        need_docker()
        from mtpb.sandboxes.docker import DockerSandbox
        return DockerSandbox(workers=workers, limits=limits, **kwargs)
    from mtpb.sandboxes.process import ProcessSandbox
    return ProcessSandbox(workers=workers, limits=limits, **kwargs)


def docker(*args: str, check: bool = True, timeout: float = 60) -> str:
    done = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    if check and done.returncode:
        raise AssertionError(f"docker {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout


def wait_for(predicate, seconds: float, step: float = 0.05):
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(step)
    return predicate()


# ---------------------------------------------------------------------------- the engine itself

class Engine:
    """The local dockerd, which a test may stop and start again (it restores the same command line)."""

    def __init__(self):
        self.pid = self._pid()
        self.cmdline = Path(f"/proc/{self.pid}/cmdline").read_bytes().split(b"\0")[:-1] if self.pid else None
        try:  # under systemd, which would restart it behind our back: go through systemctl instead
            self.unit = "docker" if "docker.service" in Path(f"/proc/{self.pid}/cgroup").read_text() else None
        except OSError:
            self.unit = None

    @staticmethod
    def _pid() -> int | None:
        try:
            pid = int(Path("/var/run/docker.pid").read_text().strip())
            os.kill(pid, 0)
            return pid
        except (OSError, ValueError):
            return None

    def why_not(self) -> str | None:
        if os.getuid() != 0:
            return "restarting the engine needs root"
        if not self.pid or not self.cmdline or not self.cmdline[0].endswith(b"dockerd"):
            return "no local dockerd process to restart"
        return None

    def stop(self):
        if self.unit:
            subprocess.run(["systemctl", "stop", "docker.socket", self.unit], check=True)
        else:
            os.kill(self.pid, signal.SIGTERM)
        if not wait_for(lambda: not _alive(self.pid), 60):
            raise AssertionError("dockerd did not stop within 60 s")

    def start(self):
        if self.unit:
            subprocess.run(["systemctl", "start", self.unit], check=True)
        else:
            log = open(os.environ.get("MTPB_DOCKERD_LOG", "/tmp/dockerd.log"), "ab")
            # its own session: the engine must outlive this test process
            self.process = subprocess.Popen(self.cmdline, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                            start_new_session=True)
            log.close()
        if not wait_for(lambda: subprocess.run(["docker", "info"], capture_output=True).returncode == 0, 90, 0.5):
            raise AssertionError("dockerd did not come back within 90 s")
        self.pid = self._pid()


def _alive(pid: int) -> bool:
    """Running, not a zombie (a dockerd this process started stays one until it is waited for)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    if state == "Z":
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        return False
    return True
