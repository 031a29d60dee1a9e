"""The `process` sandbox: the executor on this host, inside bubblewrap when `bwrap` exists.

bwrap gives the executor its own user, network, pid, ipc and mount namespaces: a read-only view of
/usr and /etc, a private /tmp and /dev, no network. As root, bwrap's user namespace would still map
to root on the host, so the executor is first dropped to an unprivileged uid (nobody); it then
needs an interpreter that uid can read (Debian's /usr/bin/python3 with python3-numpy and
python3-pandas, or MTPB_SANDBOX_PYTHON). Without bwrap only rlimits apply: no security boundary.

The executor's code reaches it as the text of a `-c` argument, read here by the host: where mtpb is
installed (pyenv or a venv under a 0700 home, say) need not be readable by the sandbox's uid.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from mtpb.sandboxes.base import ExecutorClient, ExecutorDied, Limits, PipeTransport, Pool, SandboxUnavailable, \
    executor_dir
from mtpb.sandboxes.cgroup import memory_cgroup, pid_alive, remove_dead_cgroups

NOBODY = 65534
TMP_BYTES = 256 << 20
PRIVATE = ("/tmp", "/dev", "/proc")  # the sandbox's own, hiding whatever the host has there
EXECUTOR_BYTES = 512 << 20  # the executor itself (python, numpy, pandas) on top of the program's allowance


def _as_nobody() -> dict:
    return {"user": NOBODY, "group": NOBODY, "extra_groups": []} if os.getuid() == 0 else {}


# What the sandbox needs of an interpreter, asked in one short run that imports nothing heavy: numpy
# and pandas are found (not imported: the executor imports them, and says so if that fails), and
# its prefixes, for the folders bwrap must bind.
PROBE = ("import importlib.util, sys\n"
         "missing = [m for m in ('numpy', 'pandas') if importlib.util.find_spec(m) is None]\n"
         "if missing: sys.exit('No module named ' + repr(missing[0]))\n"
         "print(sys.prefix); print(sys.base_prefix)")


@dataclass(frozen=True)
class Interpreter:
    python: str
    prefixes: tuple[str, ...]   # its sys.prefix and sys.base_prefix


def sandbox_interpreter() -> Interpreter:
    """An interpreter with numpy and pandas that the executor's uid can run."""
    chosen = os.environ.get("MTPB_SANDBOX_PYTHON")
    # Debian's first, for everyone: one numpy/pandas/scikit-learn stack that every uid can read
    candidates = [chosen] if chosen else ["/usr/bin/python3", sys.executable]
    why = []
    for python in candidates:
        try:
            proc = subprocess.run([python, "-I", "-c", PROBE], capture_output=True, text=True,
                                  timeout=60, **_as_nobody())
            if proc.returncode == 0:
                return Interpreter(python, tuple(proc.stdout.split("\n")[:2]))
            why.append(f"{python}: {(proc.stderr.strip().splitlines() or ['exit code %d' % proc.returncode])[-1]}")
        except (OSError, subprocess.SubprocessError) as e:
            why.append(f"{python}: {getattr(e, 'strerror', None) or e}")
    who = f"uid {NOBODY} (nobody: programs never run as root)" if os.getuid() == 0 else "this user"
    raise SandboxUnavailable(
        f"no Python interpreter with numpy and pandas that {who} can run:\n  " + "\n  ".join(why) + "\n"
        "fix: apt-get install -y python3-numpy python3-pandas python3-sklearn (Debian's /usr/bin/python3 is "
        "readable by every user), or set MTPB_SANDBOX_PYTHON to an interpreter with numpy and pandas "
        f"that {who} can read")


EXECUTOR_MODULES = ("executor_value", "executor_check")  # what executor.py imports from beside it


def executor_code() -> str:
    """The executor and its modules as one `python -c` text (well under Linux's 128 KiB per argument)."""
    folder = executor_dir()
    code = "import sys, types\n"
    for name in EXECUTOR_MODULES:
        text = (folder / f"{name}.py").read_text(encoding="utf-8")
        code += (f"module = types.ModuleType({name!r})\n"
                 f"exec(compile({text!r}, '/sandbox/{name}.py', 'exec'), module.__dict__)\n"
                 f"sys.modules[{name!r}] = module\n")
    main = (folder / "executor.py").read_text(encoding="utf-8")
    return (code + "del sys, types, module\n"
            "__file__ = '/sandbox/executor.py'\n"
            f"exec(compile({main!r}, __file__, 'exec'))\n")


def _interpreter_folders(interpreter: Interpreter) -> list[str]:
    """The folders outside /usr that the interpreter needs: its own (a venv's python is often a symlink
    into /usr, while its packages are beside it), its sys.prefix and sys.base_prefix."""
    python = interpreter.python
    found = [os.path.dirname(os.path.dirname(os.path.abspath(python))), *interpreter.prefixes]
    outside = []
    for folder in filter(None, found):
        real = os.path.realpath(folder)
        if real in ("/", "/usr") or real.startswith("/usr/") or folder in outside:
            continue
        if any(real == top or real.startswith(top + "/") for top in PRIVATE):
            raise SandboxUnavailable(f"the sandbox's Python {python} lives in {folder}, under {real.split('/')[1]}/, "
                                     "which the sandbox replaces with a private one: put that environment "
                                     "elsewhere, or leave MTPB_SANDBOX_PYTHON unset to use /usr/bin/python3")
        outside.append(folder)
    return outside


def bwrap_command(python: str, args: dict, folders: list[str]) -> list[str]:
    """bwrap around the executor; `folders` are _interpreter_folders(python)."""
    cmd = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session",
           "--ro-bind", "/usr", "/usr", "--ro-bind", "/etc", "/etc"]
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{top}"
        if os.path.islink(path):
            cmd += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            cmd += ["--ro-bind", path, path]
    for folder in folders:  # a venv, pyenv or conda outside /usr: bound where it is
        cmd += ["--ro-bind", os.path.realpath(folder), folder]
    cmd += ["--size", str(TMP_BYTES), "--tmpfs", "/tmp", "--proc", "/proc", "--dev", "/dev", "--mqueue", "/dev/mqueue",
            "--chdir", "/tmp", "--clearenv", "--setenv", "PATH", "/usr/bin:/bin",
            "--setenv", "LANG", "C.UTF-8", "--setenv", "PYTHONDONTWRITEBYTECODE", "1",
            python, "-I", "-c", executor_code(), json.dumps(args)]
    return cmd


def _hint(error: str) -> str:
    """The fix for the ways an executor fails to start that we know of."""
    if "Permission denied" in error:
        return (f"fix: the sandbox's uid cannot read a path it needs; set MTPB_SANDBOX_PYTHON to an interpreter "
                "that every user can read (Debian's /usr/bin/python3 with python3-numpy and python3-pandas)")
    if "namespace" in error or "uid map" in error or "Operation not permitted" in error:
        return ("fix: bwrap cannot create its namespaces here (user namespaces disabled, or a container without "
                "them): enable them (sysctl kernel.unprivileged_userns_clone=1 and "
                "user.max_user_namespaces > 0), or use --sandbox docker")
    if "No module named" in error:
        return "fix: apt-get install -y python3-numpy python3-pandas python3-sklearn, or set MTPB_SANDBOX_PYTHON"
    return "fix: run `mtpb sandbox check --sandbox process` for the details, or use --sandbox docker"


def _remove_dead_leftovers():
    """What sandboxes of processes that died by kill -9 left: memory cgroups and temp folders, both named
    by the owner's pid. Those of live processes (runs going on now) are theirs and stay."""
    remove_dead_cgroups()
    for folder in Path(tempfile.gettempdir()).glob("mtpb-sandbox-*-*-*"):
        pid = folder.name.split("-")[2]
        if pid.isdigit() and not pid_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


class ProcessSandbox:
    name = "process"

    def __init__(self, workers: int = 2, limits: Limits | None = None, use_bwrap: bool | None = None,
                 wait: bool = True):
        self.limits = limits or Limits()
        interpreter = sandbox_interpreter()
        self.python = interpreter.python
        self.bwrap = shutil.which("bwrap") is not None if use_bwrap is None else use_bwrap
        self.warning = None if self.bwrap else (
            "bwrap (Debian package bubblewrap) is not installed: programs run under rlimits only, "
            "which is no security boundary")
        self._folders = _interpreter_folders(interpreter) if self.bwrap else []
        self._dirs, self._cgroups = [], []
        _remove_dead_leftovers()
        self.pool = Pool(self._client, workers, self.limits)
        if self.warning is None and len(self._cgroups) < len(self.pool.clients):
            self.warning = ("no writable memory cgroup: memory is bounded per process (RLIMIT_AS), "
                            "not for the whole sandbox")
        # every executor starts now, at once, and the first programs go as soon as one is ready
        for client in self.pool.clients:
            client.start_in_background()
        self.hello = None
        if wait:
            self.ready()

    def ready(self):
        """Wait for the first executor, so that a sandbox that cannot start says why before the run
        begins. Opened with wait=False, the caller does its own work while the executors start, and
        calls this before it writes anything."""
        if self.hello is None:
            try:
                self.pool.clients[0].wait_started()
            except ExecutorDied as e:
                self.close()
                raise SandboxUnavailable(f"the process sandbox's executor did not start: {e}\n{_hint(str(e))}") \
                    from None
            self.hello = self.pool.clients[0].hello

    def describe(self) -> str:
        """One line for the start of a run: what isolates the programs and which interpreter runs them."""
        how = "bubblewrap" if self.bwrap else "rlimits only, no isolation"
        uid = self.hello.get("uid")
        return (f"process ({how}; programs run as uid {uid} with {self.python}, Python {self.hello.get('python')}; "
                f"{len(self.pool.clients)} worker(s))")

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
            return ExecutorClient(PipeTransport(enter + bwrap_command(self.python, args, self._folders), **_as_nobody()))
        tmp = tempfile.mkdtemp(prefix=f"mtpb-sandbox-{os.getpid()}-{index}-")
        if os.getuid() == 0:
            os.chown(tmp, NOBODY, NOBODY)
        self._dirs.append(tmp)
        args["tmp_root"] = tmp
        cmd = enter + [self.python, "-I", "-c", executor_code(), json.dumps(args)]
        return ExecutorClient(PipeTransport(cmd, cwd=tmp, **_as_nobody()))

    def run(self, programs: list[str], check: bool = False) -> list[dict]:
        return self.pool.run(programs, check)

    def close(self):
        self.pool.close()
        for cgroup in self._cgroups:
            cgroup.remove()
        for d in self._dirs:
            shutil.rmtree(d, ignore_errors=True)
