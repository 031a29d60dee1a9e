"""A memory cgroup per process-sandbox executor: RLIMIT_AS bounds one process, this bounds them all.

Without it a program could fork its process allowance and hold a gigabyte in each. Needs write
access to the memory controller (root, usually); elsewhere the sandbox says it runs without one.
Both layouts are handled: cgroup v2 (memory.max) and v1 (memory.limit_in_bytes).
"""
from __future__ import annotations

import os
import signal
import time
import uuid
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")


def _own_memory_cgroup() -> tuple[Path, str] | None:
    """(folder of this process's memory cgroup, limit file name), for the layout in use."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, path = line.split(":", 2)
        if "memory" in controllers.split(","):
            return ROOT / "memory" / path.lstrip("/"), "memory.limit_in_bytes"
    if (ROOT / "cgroup.controllers").exists():
        path = next((l.split(":", 2)[2] for l in lines if l.startswith("0::")), "/")
        return ROOT / path.lstrip("/"), "memory.max"
    return None


class MemoryCgroup:
    """Created for one executor, which moves itself in (its cgroup.procs is chowned to it)."""

    def __init__(self, limit_bytes: int, owner: int | None = None):
        found = _own_memory_cgroup()
        if found is None:
            raise OSError("no memory cgroup controller is mounted")
        parent, self.limit_file = found
        self.path = parent / f"mtpb-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self.path.mkdir()
        try:
            (self.path / self.limit_file).write_text(str(limit_bytes))
            if self.limit_file == "memory.max":
                swap = self.path / "memory.swap.max"
                if swap.exists():
                    swap.write_text("0")
            for name in ("cgroup.procs", "tasks"):
                if owner is not None and (self.path / name).exists():
                    os.chown(self.path / name, owner, -1)  # the unprivileged executor moves itself in
        except OSError:
            self.remove()
            raise

    def remove(self):
        _remove(self.path)


def _remove(path: Path):
    """Kill whatever is still inside (a program's leftover), then delete the cgroup."""
    for _ in range(50):
        try:
            pids = (path / "cgroup.procs").read_text().split()
        except OSError:
            return
        for pid in pids:
            try:
                os.kill(int(pid), signal.SIGKILL)
            except OSError:
                pass
        try:
            path.rmdir()
            return
        except OSError:
            time.sleep(0.05)


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        pass
    return True


def remove_dead_cgroups():
    """The cgroups of mtpb processes that died without removing them (kill -9): named mtpb-PID-*, removed
    when PID no longer runs. A pid reused since is taken for alive: its cgroups wait for a later start."""
    found = _own_memory_cgroup()
    if found is None:
        return
    for path in found[0].glob("mtpb-*-*"):
        pid = path.name.split("-")[1]
        if pid.isdigit() and not pid_alive(int(pid)):
            _remove(path)


def memory_cgroup(limit_bytes: int, owner: int | None) -> MemoryCgroup | None:
    try:
        return MemoryCgroup(limit_bytes, owner)
    except OSError:
        return None
