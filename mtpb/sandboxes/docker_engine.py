"""Talking to the Docker engine: the `docker` CLI for control, the API socket for the pool's streams.

Control (create, start, rm, inspect, build) goes through the `docker` CLI as a subprocess with a
timeout: users and CI already have it, it reads their contexts and DOCKER_HOST, and its flags are
the documented hardening one to one. The pool's data path instead attaches to its containers over
the engine's API socket (an HTTP upgrade), because a CLI process relaying every line costs as much
CPU per program as the rest of the harness. docs/sandbox.md says why not the Python SDK.
"""
from __future__ import annotations

import http.client
import json
import os
import shutil
import socket
import subprocess
import time

from mtpb.sandboxes.base import SandboxUnavailable

LABEL = "mtpb.sandbox"                   # on every image and container we make; `clean` finds them by it
SOCKET = "/var/run/docker.sock"


class EngineGone(SandboxUnavailable):
    """The engine stopped answering mid-run: nothing was recorded for the batch, so a rerun resumes."""


def engine_gone(reason: str) -> EngineGone:
    return EngineGone(f"the Docker engine stopped answering ({reason}): rerun the same command to resume")


# ---------------------------------------------------------------------------- the CLI

def docker(*args: str, timeout: float = 30, check: bool = True) -> subprocess.CompletedProcess:
    """Run one `docker` command and capture it; a failure raises SandboxUnavailable with its message."""
    try:
        done = subprocess.run(["docker", *args], stdin=subprocess.DEVNULL, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise SandboxUnavailable("the docker CLI is not installed (apt-get install -y docker.io)")
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable(f"`docker {args[0]}` did not answer within {timeout:g} s")
    if check and done.returncode != 0:
        raise SandboxUnavailable(f"`docker {' '.join(args[:2])}` failed: {tail(done.stderr)}")
    return done


def tail(data: bytes, size: int = 400) -> str:
    return data.decode("utf-8", "replace").strip()[-size:] or "no message"


def _default_socket_missing() -> str | None:
    """Instant answer for the common case of no engine at all, before paying for a CLI call."""
    if os.environ.get("DOCKER_HOST") or os.environ.get("DOCKER_CONTEXT"):
        return None  # somewhere else: only the CLI knows how to reach it
    if not os.path.exists(SOCKET):
        return f"no Docker engine runs here ({SOCKET} does not exist)"
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    probe.settimeout(0.5)
    try:
        probe.connect(SOCKET)
    except PermissionError:
        return None  # the CLI may still get in (e.g. through a group); let it say
    except OSError as e:
        return f"no Docker engine answers on {SOCKET} ({e.strerror or e})"
    finally:
        probe.close()
    return None


def quick_reason() -> str | None:
    """Why no engine can answer, from what is known without running the CLI; None when one may."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    return _default_socket_missing()


def engine_reason(timeout: float = 5) -> str | None:
    """None when an engine answers, else why not (one line)."""
    missing = quick_reason()
    if missing:
        return missing
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=timeout)
    except SandboxUnavailable as e:
        return f"the Docker engine does not answer: {e}"
    return None


# ---------------------------------------------------------------------------- the API socket

def engine_address() -> tuple[str, object]:
    """("unix", path) or ("tcp", (host, port)) of the engine's API; TLS and ssh endpoints will not do."""
    host = os.environ.get("DOCKER_HOST") or _default_context_host() or docker(
        "context", "inspect", "--format", "{{.Endpoints.docker.Host}}", timeout=10).stdout.decode().strip()
    if host.startswith("unix://"):
        return "unix", host[len("unix://"):]
    if host.startswith("tcp://") and not os.environ.get("DOCKER_TLS_VERIFY"):
        name, _, port = host[len("tcp://"):].rstrip("/").rpartition(":")
        if port.isdigit() and port != "2376":  # 2376 is the engine's TLS port
            return "tcp", (name.strip("[]"), int(port))
    raise SandboxUnavailable(f"the docker sandbox needs the engine on a unix socket or plain TCP, not {host!r} "
                             "(TLS and ssh endpoints are not supported): use --sandbox process")


def _default_context_host() -> str | None:
    """The default socket when the CLI would use its default context (no DOCKER_CONTEXT, no currentContext
    in its config file), read without running it; None when another context may be chosen."""
    if os.environ.get("DOCKER_CONTEXT"):
        return None
    config = os.path.join(os.environ.get("DOCKER_CONFIG") or os.path.expanduser("~/.docker"), "config.json")
    try:
        with open(config, encoding="utf-8") as f:
            current = json.load(f).get("currentContext")
    except FileNotFoundError:
        current = None
    except (OSError, ValueError, AttributeError):
        return None  # unreadable or odd: the CLI knows best
    return f"unix://{SOCKET}" if current in (None, "", "default") else None


def connect(address: tuple[str, object], timeout: float = 10) -> socket.socket:
    kind, where = address
    if kind == "unix":
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.settimeout(timeout)
        sock.connect(where)
    else:
        sock = socket.create_connection(where, timeout=timeout)
    return sock


class _Connection(http.client.HTTPConnection):
    def __init__(self, address: tuple[str, object], timeout: float):
        super().__init__("docker", timeout=timeout)
        self.address = address

    def connect(self):
        self.sock = connect(self.address, self.timeout)


def api(address: tuple[str, object], method: str, path: str, body: dict | None = None, timeout: float = 30) -> dict:
    """One plain API call; returns the JSON answer. A refusal raises SandboxUnavailable."""
    conn = _Connection(address, timeout)
    try:
        conn.request(method, path, body=json.dumps(body or {}), headers={"Content-Type": "application/json"})
        answer = conn.getresponse()
        data = answer.read()
    except OSError as e:
        raise SandboxUnavailable(f"the engine's API failed on {method} {path}: {e}")
    finally:
        conn.close()
    if answer.status >= 300:
        raise SandboxUnavailable(f"the engine refused {method} {path}: {answer.status} {tail(data, 200)}")
    return json.loads(data) if data.strip() else {}


def has_image(address: tuple[str, object], tag: str, timeout: float = 10) -> bool | None:
    """Whether the engine has the image `tag` (one API call, no CLI process); None when it does not answer."""
    conn = _Connection(address, timeout)
    try:
        conn.request("GET", f"/images/{tag}/json")
        answer = conn.getresponse()
        answer.read()
    except OSError:
        return None
    finally:
        conn.close()
    return answer.status == 200 if answer.status in (200, 404) else None


def hijack(address: tuple[str, object], path: str, body: dict | None = None, timeout: float = 30
           ) -> tuple[socket.socket, bytes]:
    """POST `path` with an upgrade to a raw stream (attach, exec start): the socket and any bytes
    that came after the answer's headers."""
    sock = connect(address, timeout)
    payload = json.dumps(body).encode() if body is not None else b""
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\n"
                 f"Content-Type: application/json\r\nContent-Length: {len(payload)}\r\n\r\n".encode() + payload)
    head, deadline = b"", time.monotonic() + timeout
    try:
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(65536)
            if not chunk or time.monotonic() > deadline:
                raise OSError("the engine closed the connection")
            head += chunk
    except OSError as e:
        sock.close()
        raise SandboxUnavailable(f"the engine's API failed on POST {path}: {e}")
    head, _, rest = head.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0]
    if b" 101 " not in status + b" " and b" 200 " not in status + b" ":
        sock.close()
        raise SandboxUnavailable(f"the engine refused POST {path}: {status.decode('latin-1')}")
    sock.settimeout(None)
    return sock, rest
