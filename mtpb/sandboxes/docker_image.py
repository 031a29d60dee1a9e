"""The docker sandbox's image: the content-hash tag and the build.

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
import subprocess
import tarfile
from pathlib import Path
from typing import Callable

from mtpb.sandboxes.base import SandboxUnavailable, executor_dir
from mtpb.sandboxes.docker_engine import LABEL, docker, engine_reason, tail

IMAGE = "mtpb-sandbox"
BASE_IMAGE = "mtpb-sandbox-base"
BASE_RECIPES = ("base.Dockerfile", "base-rootfs.sh")
REGISTRY_BASE = "debian:bookworm-slim"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITE = "bookworm"                       # base-rootfs.sh and base.Dockerfile build this release


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

def debian_mirror(apt: Path = Path("/etc/apt"), suite: str = SUITE) -> str:
    """The archive this machine's apt uses for `suite` (one-line or deb822 sources), else deb.debian.org."""
    paths = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list")),
             *sorted((apt / "sources.list.d").glob("*.sources"))]
    for path in paths:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        pairs = re.findall(r"^[ \t]*deb[ \t]+(?:\[[^\]]*\][ \t]+)?(\S+)[ \t]+(\S+)", text, re.M)  # one-line
        for stanza in re.split(r"\n[ \t]*\n", text):  # deb822: URIs and Suites fields of one stanza
            fields = dict(re.findall(r"^([A-Za-z-]+):[ \t]*(.*)$", stanza, re.M))
            if "deb" in fields.get("Types", "").split() and fields.get("Enabled", "yes").lower() != "no":
                pairs += [(u, x) for u in fields.get("URIs", "").split() for x in fields.get("Suites", "").split()]
        for uri, listed in pairs:
            # the release itself: not -security or -updates, which debootstrap cannot start from
            if listed == suite and uri.startswith(("http://", "https://", "file:")):
                return uri.rstrip("/")
    return DEFAULT_MIRROR


def _stream(cmd: list[str], progress: Callable[[str], None], what: str, input: bytes | None = None):
    """Run a build step, passing its output on line by line; a failure names the step."""
    env = dict(os.environ)
    # BuildKit only where the CLI has buildx; otherwise the classic builder, which every engine has
    env.setdefault("DOCKER_BUILDKIT", "1" if _has_buildx() else "0")
    proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if input is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    if input is not None:
        proc.stdin.write(input)
        proc.stdin.close()
    last: list[str] = []
    for raw in proc.stdout:
        line = raw.decode("utf-8", "replace").rstrip()
        last = (last + [line])[-15:]
        progress(line)
    if proc.wait() != 0:
        raise SandboxUnavailable(f"{what} failed (exit code {proc.returncode}):\n" + "\n".join(last))


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
            raise SandboxUnavailable(f"cannot pull {REGISTRY_BASE}: {tail(pulled.stderr)}")
        progress(f"base: no registry answers ({tail(pulled.stderr, 160)}); using debootstrap")
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
    _stream(["docker", "build", "--network", "none", "--label", f"{LABEL}=image", "--build-arg", f"BASE={base}",
             "-t", tag, "-f", "Dockerfile", "-"], progress, "building the sandbox image",
            input=_context(folder, names))
    progress(f"built {tag}")
    return tag


def _has_buildx() -> bool:
    return docker("buildx", "version", timeout=10, check=False).returncode == 0
