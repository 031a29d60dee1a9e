"""The docker sandbox's engine access and image: the `docker` CLI, the content-hash tag, the build.

We drive the engine through the `docker` CLI rather than the Python SDK: the pool needs a plain
byte stream to each executor (`docker run -i`), which the CLI gives as an ordinary subprocess pipe,
and the CLI is what users and CI already have; docs/sandbox.md says more.

The image is tagged by a hash of what goes into it (the files of sandbox/), so a build reuses an
existing image and rebuilds only when sandbox/ changed. Its base comes from a registry where one
answers (base.Dockerfile), else from a Debian rootfs made with debootstrap (base-rootfs.sh).
"""
from __future__ import annotations

import hashlib
import io
import os
import re
import shutil
import socket
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

from mtpb.sandboxes.base import SandboxUnavailable, executor_dir

IMAGE = "mtpb-sandbox"
BASE_IMAGE = "mtpb-sandbox-base"
LABEL = "mtpb.sandbox"                   # on every image and container we make; `clean` finds them by it
BASE_RECIPES = ("base.Dockerfile", "base-rootfs.sh")
REGISTRY_BASE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SOCKET = "/var/run/docker.sock"


class EngineGone(SandboxUnavailable):
    """The engine stopped answering mid-run: nothing was recorded for the batch, so a rerun resumes."""


# ---------------------------------------------------------------------------- the CLI

def docker(*args: str, timeout: float = 30, input: bytes | None = None, check: bool = True,
           ) -> subprocess.CompletedProcess:
    """Run one `docker` command and capture it; a failure raises SandboxUnavailable with its message."""
    try:
        done = subprocess.run(["docker", *args], input=input, capture_output=True, timeout=timeout)
    except FileNotFoundError:
        raise SandboxUnavailable("the docker CLI is not installed (apt-get install -y docker.io)")
    except subprocess.TimeoutExpired:
        raise SandboxUnavailable(f"`docker {args[0]}` did not answer within {timeout:g} s")
    if check and done.returncode != 0:
        raise SandboxUnavailable(f"`docker {' '.join(args[:2])}` failed: {_tail(done.stderr)}")
    return done


def _tail(data: bytes, size: int = 400) -> str:
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


def engine_reason(timeout: float = 5) -> str | None:
    """None when an engine answers, else why not (one line)."""
    if shutil.which("docker") is None:
        return "the docker CLI is not installed"
    missing = _default_socket_missing()
    if missing:
        return missing
    try:
        docker("version", "--format", "{{.Server.Version}}", timeout=timeout)
    except SandboxUnavailable as e:
        return f"the Docker engine does not answer: {e}"
    return None


# ---------------------------------------------------------------------------- tags

def _sandbox_files(folder: Path) -> list[Path]:
    """What the image is made of: the regular files of sandbox/ (caches and dotfiles aside)."""
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix not in (".pyc", ".pyo"))


def _digest(files: list[Path], salt: str = "") -> str:
    h = hashlib.sha256(salt.encode())
    for path in files:
        h.update(path.name.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:16]


def base_tag(folder: Path | None = None) -> str:
    folder = folder or executor_dir()
    return f"{BASE_IMAGE}:{_digest([folder / name for name in BASE_RECIPES])}"


def image_tag(folder: Path | None = None) -> str:
    folder = folder or executor_dir()
    return f"{IMAGE}:{_digest(_sandbox_files(folder), salt=base_tag(folder))}"


def image_exists(tag: str, timeout: float = 10) -> bool:
    return docker("image", "inspect", "--format", "{{.Id}}", tag, timeout=timeout, check=False).returncode == 0


# ---------------------------------------------------------------------------- the build

def debian_mirror() -> str:
    """The Debian archive this machine's apt uses (one-line or deb822 sources), else deb.debian.org."""
    paths = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*.list")),
             *sorted(Path("/etc/apt/sources.list.d").glob("*.sources"))]
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        # one-line: "deb [opts] URI SUITE ..."; deb822: "URIs: URI ..." — the security archive aside
        uris = re.findall(r"^\s*deb\s+(?:\[[^\]]*\]\s+)?(\S+)", text, re.M)
        uris += [u for line in re.findall(r"^URIs:\s*(.+)$", text, re.M) for u in line.split()]
        for uri in uris:
            if uri.rstrip("/").endswith("/debian") and uri.startswith(("http://", "https://", "file:")):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _stream(cmd: list[str], progress: Callable[[str], None], what: str, input: bytes | None = None,
            env: dict | None = None):
    """Run a build step, passing its output on line by line; a failure names the step."""
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if input is not None:
        proc.stdin.write(input)
        proc.stdin.close()
    tail: list[str] = []
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        tail = (tail + [line])[-15:]
        progress(line)
    if proc.wait() != 0:
        raise SandboxUnavailable(f"{what} failed (exit code {proc.returncode}):\n" + "\n".join(tail))


def _context(folder: Path, names: list[str]) -> bytes:
    """A build context holding exactly the hashed files (nothing else of the folder leaks in)."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name in names:
            info = tarfile.TarInfo(name)
            data = (folder / name).read_bytes()
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _build_base(tag: str, folder: Path, mirror: str | None, progress: Callable[[str], None]):
    choice = os.environ.get("MTPB_SANDBOX_BASE", "debootstrap" if mirror else "auto")
    if choice in ("auto", "registry"):
        pulled = docker("pull", REGISTRY_BASE, timeout=600, check=False)
        if pulled.returncode == 0:
            progress(f"base: {REGISTRY_BASE} from the registry, then base.Dockerfile")
            # --network host: only this trusted recipe (apt-get) runs here, and bridge-less engines
            # (dockerd --bridge=none) have no other network for build steps
            _stream(["docker", "build", "--network", "host", "--label", f"{LABEL}=base", "-t", tag,
                     "-f", "base.Dockerfile", "-"], progress, "building the base image",
                    input=_context(folder, ["base.Dockerfile"]))
            return
        if choice == "registry":
            raise SandboxUnavailable(f"cannot pull {REGISTRY_BASE}: {_tail(pulled.stderr)}")
        progress(f"base: no registry answers ({_tail(pulled.stderr, 160)}); using debootstrap")
    if os.getuid() != 0:
        raise SandboxUnavailable("building the base image with debootstrap needs root (sudo mtpb sandbox build)")
    if shutil.which("debootstrap") is None:
        raise SandboxUnavailable("no registry answers and debootstrap is not installed: "
                                 "apt-get install -y debootstrap, then rerun mtpb sandbox build")
    mirror = mirror or debian_mirror()
    progress(f"base: debootstrap bookworm from {mirror} (about two minutes)")
    _stream(["sh", str(folder / "base-rootfs.sh"), tag, mirror], progress, "debootstrap and import")
    docker("image", "inspect", tag, timeout=30)  # the script's last step imported it, or we fail here


def build_image(force: bool = False, mirror: str | None = None, progress: Callable[[str], None] = print) -> str:
    """Build the sandbox image unless one for the current sandbox/ exists; returns its tag."""
    reason = engine_reason()
    if reason:
        raise SandboxUnavailable(reason)
    folder = executor_dir()
    base, tag = base_tag(folder), image_tag(folder)
    if not force and image_exists(tag):
        progress(f"{tag} is up to date")
        return tag
    if force or not image_exists(base):
        _build_base(base, folder, mirror, progress)
    names = [p.name for p in _sandbox_files(folder)]
    env = dict(os.environ)
    # BuildKit only where the CLI has buildx; otherwise the classic builder, which every engine has
    env.setdefault("DOCKER_BUILDKIT", "1" if _has_buildx() else "0")
    _stream(["docker", "build", "--network", "none", "--label", f"{LABEL}=image", "--build-arg", f"BASE={base}",
             "-t", tag, "-f", "Dockerfile", "-"], progress, "building the sandbox image",
            input=_context(folder, names), env=env)
    progress(f"built {tag}")
    return tag


def _has_buildx() -> bool:
    return docker("buildx", "version", timeout=10, check=False).returncode == 0
