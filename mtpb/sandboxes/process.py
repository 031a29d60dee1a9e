"""The `process` sandbox: the executor on this host, inside bubblewrap when `bwrap` exists.

bwrap gives the executor its own user, network, pid, ipc and mount namespaces: a read-only view of
/usr and /etc, a private /tmp and /dev, no network. As root, bwrap's user namespace would still map
to root on the host, so the executor is first dropped to an unprivileged uid (nobody); it then
needs an interpreter that uid can read (Debian's /usr/bin/python3 with python3-numpy and
python3-pandas, or MTPB_SANDBOX_PYTHON). Without bwrap only rlimits apply: no security boundary.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile

from mtpb.sandboxes.base import ExecutorClient, Limits, Pool, SandboxUnavailable, executor_dir
from mtpb.sandboxes.cgroup import memory_cgroup

NOBODY = 65534
TMP_BYTES = 256 << 20
EXECUTOR_BYTES = 512 << 20  # the executor itself (python, numpy, pandas) on top of the program's allowance


def _as_nobody() -> dict:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.getuid() == 0 else {}


def sandbox_python() -> str:
    """An interpreter with numpy and pandas that the executor's uid can run."""
    chosen = os.environ.get("MTPB_SANDBOX_PYTHON")
    candidates = [chosen] if chosen else (["/usr/bin/python3", sys.executable] if os.getuid() == 0
                                          else [sys.executable, "/usr/bin/python3"])
    for python in candidates:
        try:
            ok = subprocess.run([python, "-c", "import numpy, pandas"], capture_output=True,
                                timeout=60, **_as_nobody()).returncode == 0
        except (OSError, subprocess.SubprocessError):
            ok = False
        if ok:
            return python
    who = f"uid {NOBODY}" if os.getuid() == 0 else "this user"
    raise SandboxUnavailable(
        f"no Python interpreter with numpy and pandas that {who} can run (tried {', '.join(candidates)}): "
        "install Debian's python3-numpy and python3-pandas (apt-get install -y python3-numpy python3-pandas) "
        "or set MTPB_SANDBOX_PYTHON to one")


def bwrap_command(python: str, args: dict) -> list[str]:
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{top}"
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    prefix = os.path.realpath(os.path.dirname(os.path.dirname(os.path.realpath(python))))
    if not prefix.startswith("/usr"):  # an interpreter outside /usr (a venv, pyenv): bind its prefix
        cmd += ["--ro-bind", prefix, prefix]
        base = subprocess.run([python, "-c", "import sys; print(sys.base_prefix)"], capture_output=True,
                              text=True, **_as_nobody()).stdout.strip()
        if base and not base.startswith("/usr") and base != prefix:
            cmd += ["--ro-bind", base, base]
    cmd += ["--ro-bind", str(executor_dir()), "/sandbox",
            "--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue",
            "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            python, "-I", "/sandbox/executor.py", json.dumps(args)]
    return cmd


class ProcessSandbox:
    name = "process"

    def __init__(self, workers: int = 2, limits: Limits | None = None, use_bwrap: bool | None = None):
        self.limits = limits or Limits()
        self.python = sandbox_python()
        self.bwrap = shutil.which("bwrap") is not None if use_bwrap is None else use_bwrap
        self.warning = None if self.bwrap else (
            "bwrap (Debian package bubblewrap) is not installed: programs run under rlimits only, "
            "which is no security boundary")
        self._dirs, self._cgroups = [], []
        self.pool = Pool(self._client, workers, self.limits)
        if self.warning is None and len(self._cgroups) < len(self.pool.clients):
            self.warning = ("no writable memory cgroup: memory is bounded per process (RLIMIT_AS), "
                            "not for the whole sandbox")

    def _client(self, index: int) -> ExecutorClient:
        args = {"limits": self.limits.executor_limits()}
        cgroup = memory_cgroup((self.limits.memory_mb << 20) + EXECUTOR_BYTES,
                               owner=NOBODY if os.getuid() == 0 else None)
        enter = []
        if cgroup is not None:  # the executor moves itself in before it becomes bwrap/python
            self._cgroups.append(cgroup)
            enter = ["/bin/sh", "-c", f'echo $$ > "{cgroup.path}/cgroup.procs" && exec "$@"', "sh"]
        if self.bwrap:
            args["clean"] = ["/tmp", "/dev/shm", "/dev/mqueue"]  # a mounted mqueue lets the executor empty it
            return ExecutorClient(enter + bwrap_command(self.python, args), **_as_nobody())
        tmp = tempfile.mkdtemp(prefix=f"mtpb-sandbox-{index}-")
        if os.getuid() == 0:
            os.chown(tmp, NOBODY, NOBODY)
        self._dirs.append(tmp)
        args["tmp_root"] = tmp
        cmd = enter + [self.python, "-I", str(executor_dir() / "executor.py"), json.dumps(args)]
        return ExecutorClient(cmd, cwd=tmp, **_as_nobody())

    def run(self, programs: list[str]) -> list[dict]:
        return self.pool.run(programs)

    def close(self):
        self.pool.close()
        for cgroup in self._cgroups:
            cgroup.remove()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
