"""One writer per run directory: RUN/.lock, held by `mtpb run` and `mtpb execute` for their whole run.

The lock is an fcntl.flock on an open descriptor, so the kernel releases it on any death, kill -9
included: a dead holder never needs cleaning up. The file also describes the holder (pid, host, start
time, boot id and the pid's start time) for the refusal message, and for the cases flock cannot see:
- another host on a shared network folder (flock over NFS is unreliable): the holder rewrites
  `refreshed` every REFRESH_S seconds, and a lock naming another host is honoured until it is
  STALE_S seconds old, so a host that died or lost the folder is taken over after that. This assumes
  the hosts' clocks agree within a minute or so;
- a file system where flock silently succeeds for everyone: a holder on this host (same boot) whose
  pid still runs with the recorded start time is honoured; a reused pid is not mistaken for it.
`report` and `summary` read the run directory without taking the lock.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import socket
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

from mtpb.rundir import RunDirError

LOCK_FILE = ".lock"
REFRESH_S, STALE_S = 30.0, 120.0


class RunInUse(RunDirError):
    """Another live process writes this run directory."""


def _boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return ""


def _start_ticks(pid: int) -> str:
    """The process's start time since boot (field 22 of /proc/PID/stat): with the boot id, what tells
    one process from a later one given the same pid. Empty when the pid does not run."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return ""
    return stat.rsplit(")", 1)[1].split()[19]


def _holder_alive(holder: dict) -> bool:
    if holder.get("released"):
        return False
    if holder.get("host") != socket.gethostname():
        return time.time() - float(holder.get("refreshed", 0)) < STALE_S
    pid = holder.get("pid")
    return (isinstance(pid, int) and pid != os.getpid() and holder.get("boot_id") == _boot_id()
            and bool(holder.get("pid_start")) and _start_ticks(pid) == holder.get("pid_start"))


def _describe(run_dir: Path, holder: dict) -> str:
    return (f"{run_dir} is in use by pid {holder.get('pid', '?')} on {holder.get('host', '?')} "
            f"since {holder.get('started', '?')}: wait for it, or stop it")


class RunLock:
    """Taken by acquire() (or `with`), released by release() or by the process's end."""

    def __init__(self, run_dir: str | Path):
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / LOCK_FILE
        self.fd = None
        self._stop = threading.Event()
        self._refresher = None

    def _read(self) -> dict:
        try:
            data = json.loads(os.pread(self.fd, 4096, 0) or b"{}")
        except (OSError, ValueError):   # being written, or written by a crashed holder: say what we can
            return {}
        return data if isinstance(data, dict) else {}

    def _holder_written(self) -> dict:
        """The holder's record; one that took the lock an instant ago may not have written it yet."""
        for _ in range(40):
            holder = self._read()
            if holder.get("pid") and not holder.get("released"):
                return holder
            time.sleep(0.05)
        return {}

    def _write(self):
        text = json.dumps({**self.holder, "refreshed": time.time()}).encode()
        # overwrite in place, then cut: no moment where the file is empty for a reader
        os.pwrite(self.fd, text, 0)
        os.ftruncate(self.fd, len(text))

    def acquire(self) -> "RunLock":
        self.fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        try:
            try:
                fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EACCES):
                    raise
                raise RunInUse(_describe(self.run_dir, self._holder_written())) from None
            previous = self._read()
            if previous and _holder_alive(previous):
                raise RunInUse(_describe(self.run_dir, previous))
            self.holder = {"pid": os.getpid(), "host": socket.gethostname(),
                           "started": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                           "boot_id": _boot_id(), "pid_start": _start_ticks(os.getpid())}
            self._write()
        except BaseException as e:
            os.close(self.fd)
            self.fd = None
            if isinstance(e, OSError) and not e.filename:
                e.filename = str(self.path)   # a full disk: the message names where
            raise
        self._refresher = threading.Thread(target=self._refresh, name="mtpb-run-lock", daemon=True)
        self._refresher.start()
        return self

    def _refresh(self):
        while not self._stop.wait(REFRESH_S):
            try:
                self._write()
            except OSError:   # a full disk: the flock still holds; the next refresh tries again
                pass

    def release(self):
        if self.fd is None:
            return
        self._stop.set()
        self._refresher.join()
        try:   # so that another host need not wait STALE_S after a run that ended well
            self.holder["released"] = True
            self._write()
        except OSError:
            pass
        os.close(self.fd)   # the flock goes with the descriptor; the file stays, describing the last run
        self.fd = None

    def __enter__(self):
        return self.acquire()

    def __exit__(self, *exc):
        self.release()
