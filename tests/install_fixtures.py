"""mtpb as a user installs it: a wheel built from this tree, installed (not editable) into a venv that
lives in a root-owned folder of mode 0700, like pyenv's Python under /root. The sandbox's uid cannot
read anything there, which is what the process sandbox must cope with."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
BUILD_JUNK = shutil.ignore_patterns(".git", "build", "dist", "*.egg-info", "runs", "__pycache__", ".pytest_cache")


@pytest.fixture(scope="session")
def installed_mtpb(tmp_path_factory) -> Path:
    """The `mtpb` executable of that install."""
    base = tmp_path_factory.mktemp("install")
    source, wheels, home = base / "source", base / "wheels", base / "home"
    shutil.copytree(REPO, source, ignore=BUILD_JUNK)   # a clean copy: no stale build/ leaks into the wheel
    home.mkdir(mode=0o700)
    os.chmod(home, 0o700)
    run = lambda *cmd: subprocess.run(cmd, check=True, capture_output=True, text=True, cwd=base)  # noqa: E731
    run(sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(source))
    venv = home / "venv"
    # the venv borrows this Python's packages (click, numpy, ...): no download; mtpb itself is the wheel
    run(sys.executable, "-m", "venv", "--system-site-packages", str(venv))
    wheel = next(wheels.glob("mtpb-*.whl"))
    run(str(venv / "bin" / "python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index", str(wheel))
    where = run(str(venv / "bin" / "python"), "-c", "import mtpb; print(mtpb.__file__)").stdout.strip()
    assert where.startswith(str(venv)), f"the venv imports mtpb from {where}, not from its own install"
    return venv / "bin" / "mtpb"


def run_installed(mtpb: Path, *args: str, cwd: Path, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run the installed `mtpb` as a user would, from a folder outside the checkout."""
    environment = {k: v for k, v in os.environ.items() if not k.startswith("MTPB_")}
    environment.update(env or {}, COLUMNS="200")
    return subprocess.run([str(mtpb), *args], cwd=cwd, env=environment, capture_output=True, text=True,
                          timeout=900)
