"""Reliability of `mtpb run` as an operator meets it, with real processes: one writer per run directory,
kill -9, SIGTERM/SIGHUP, leftovers of dead runs, and a full disk."""
from __future__ import annotations

import json
import os
import random
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import pytest

from mtpb.sandboxes.cgroup import _own_memory_cgroup, memory_cgroup

IDS = "1-10"          # 10 problems x 5 tests: 50 programs, a few seconds
SLOW_IDS = "1-60"     # 300 programs: long enough to be stopped midway


def mtpb_run(out: Path, ids: str = IDS, **kwargs) -> subprocess.Popen:
    # small batches: the first results come early and the run goes on long after, so a kill or a
    # signal sent once results exist lands mid-run (with the default 256 only 44 programs were left)
    cmd = [sys.executable, "-m", "mtpb.cli", "run", "--backend", "reference", "--ids", ids, "--batch-size", "16",
           "--sandbox", "process", "--workers", "1", "--out", str(out)]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            cwd=Path(__file__).parent.parent, **kwargs)


def finish(proc: subprocess.Popen, timeout: float = 60) -> tuple[int, str]:
    stdout, stderr = proc.communicate(timeout=timeout)
    return proc.returncode, stdout + stderr


def keys(out: Path) -> Counter:
    lines = (out / "results.jsonl").read_text().splitlines()
    return Counter((r["problem_id"], r["test_index"], r["sample_index"]) for r in map(json.loads, lines))


def assert_complete(out: Path, programs: int):
    counts = keys(out)
    assert len(counts) == programs and set(counts.values()) == {1}, counts.most_common(3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_programs"] == programs


def wait_for_results(proc: subprocess.Popen, out: Path, timeout: float = 30):
    """Until the run has scored at least one program (its sandbox is then up, its cgroups made)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        results = out / "results.jsonl"
        if results.exists() and results.stat().st_size:
            return
        assert proc.poll() is None, finish(proc)[1]
        time.sleep(0.02)
    raise AssertionError("the run scored nothing in time")


def test_a_second_writer_is_refused_naming_the_holder_and_the_first_completes(tmp_path):
    out = tmp_path / "run"
    first, second = mtpb_run(out), mtpb_run(out)
    (rc1, log1), (rc2, log2) = finish(first), finish(second)
    assert sorted([rc1, rc2]) == [0, 2], (log1, log2)
    holder, loser_log = (first, log2) if rc1 == 0 else (second, log1)
    refused = [line for line in loser_log.splitlines() if line.startswith("error:")]
    assert refused == [f"error: {out} is in use by pid {holder.pid} on {socket.gethostname()} since "
                       f"{json.loads((out / '.lock').read_text())['started']}: wait for it, or stop it"], loser_log
    assert "Traceback" not in loser_log
    assert_complete(out, 50)


def test_kill_9_then_a_new_run_takes_the_lock_and_completes_every_key_once(tmp_path):
    out = tmp_path / "run"
    victim = mtpb_run(out, SLOW_IDS)
    wait_for_results(victim, out)
    victim.kill()
    victim.wait()
    assert json.loads((out / ".lock").read_text())["pid"] == victim.pid   # the dead holder's record stays
    rc, log = finish(mtpb_run(out, SLOW_IDS))
    assert rc == 0, log
    assert_complete(out, 300)


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP])
def test_sigterm_and_sighup_end_a_run_like_ctrl_c(tmp_path, signum):
    out = tmp_path / "run"
    proc = mtpb_run(out, SLOW_IDS)
    wait_for_results(proc, out)
    proc.send_signal(signum)
    rc, log = finish(proc)
    assert rc == 128 + signum, log
    assert f"interrupted: what was done is kept in {out}; the same command resumes it" in log
    assert "Traceback" not in log
    done = keys(out)
    assert 0 < len(done) < 300 and set(done.values()) == {1}
    rc, log = finish(mtpb_run(out, SLOW_IDS))
    assert rc == 0, log
    assert f"resuming: {len(done)} of 300 programs done" in log
    assert_complete(out, 300)


def _writable_memory_cgroup() -> bool:
    cgroup = memory_cgroup(1 << 30, None)
    if cgroup is None:
        return False
    cgroup.remove()
    return True


@pytest.mark.skipif(not _writable_memory_cgroup(), reason="no writable memory cgroup here: the process "
                                                          "sandbox makes none, so none can be left")
def test_no_cgroup_or_temp_folder_outlives_killed_runs(tmp_path):
    parent = _own_memory_cgroup()[0]
    killed = []
    for i in range(4):
        out = tmp_path / f"run{i}"
        proc = mtpb_run(out, SLOW_IDS)
        wait_for_results(proc, out)
        time.sleep(random.uniform(0, 0.5))
        proc.kill()
        proc.wait()
        killed.append(proc.pid)
    left = [p for p in parent.glob("mtpb-*") if int(p.name.split("-")[1]) in killed]
    assert left, "the kills left no cgroup: this test checks nothing"
    rc, log = finish(mtpb_run(tmp_path / "after"))
    assert rc == 0, log
    left = [p.name for p in parent.glob("mtpb-*") if int(p.name.split("-")[1]) in killed]
    assert left == []
    folders = [p.name for p in Path(tempfile.gettempdir()).glob("mtpb-sandbox-*-*-*")
               if int(p.name.split("-")[2]) in killed]
    assert folders == []


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(disk)], capture_output=True)
    if mounted.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    yield disk
    subprocess.run(["umount", str(disk)], check=True)


def fill(disk: Path, leave: int) -> Path:
    """A filler file that leaves about `leave` bytes free on `disk`."""
    filler = disk / "filler"
    st = os.statvfs(disk)
    filler.write_bytes(b"\0" * max(0, st.f_bavail * st.f_frsize - leave))
    return filler


def assert_whole(out: Path):
    assert not list(out.glob("*.tmp"))
    for name in ("samples.jsonl", "results.jsonl"):
        data = (out / name).read_bytes() if (out / name).exists() else b""
        assert data == b"" or data.endswith(b"\n"), f"{name} ends in a cut line"
        for line in data.splitlines():
            json.loads(line)


def test_a_full_disk_says_so_in_one_line_and_the_same_command_then_completes(small_disk):
    out = small_disk / "run"
    filler = fill(small_disk, 64 * 1024)   # the run needs about 120 kB
    rc, log = finish(mtpb_run(out))
    assert rc == 2, log
    errors = [line for line in log.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and errors[0].startswith(f"error: no space left on {out}/"), log
    assert errors[0].endswith(": free space, then the same command resumes")
    assert "Traceback" not in log
    assert_whole(out)
    filler.unlink()
    rc, log = finish(mtpb_run(out))
    assert rc == 0, log
    assert_complete(out, 50)
    # every program scored, summary.json lost to a full disk: the rerun writes it, executing nothing
    (out / "summary.json").unlink()
    results = (out / "results.jsonl").read_bytes()
    filler = fill(small_disk, 0)
    rc, log = finish(mtpb_run(out))
    assert rc == 2 and "error: no space left on" in log and "Traceback" not in log, log
    assert_whole(out)
    filler.unlink()
    rc, log = finish(mtpb_run(out))
    assert rc == 0, log
    assert (out / "results.jsonl").read_bytes() == results
    assert_complete(out, 50)


def _lock_record(out: Path, **holder):
    out.mkdir(parents=True, exist_ok=True)
    (out / ".lock").write_text(json.dumps(holder))


def test_a_lock_of_another_host_is_honoured_until_it_goes_stale(tmp_path):
    from mtpb.runlock import STALE_S, RunInUse, RunLock
    out = tmp_path / "run"
    _lock_record(out, pid=4242, host="other-host", started="then", refreshed=time.time())
    with pytest.raises(RunInUse, match=f"in use by pid 4242 on other-host since then"):
        RunLock(out).acquire()   # flock cannot see a holder on another NFS client
    _lock_record(out, pid=4242, host="other-host", started="then", refreshed=time.time() - STALE_S - 1)
    with RunLock(out):
        assert json.loads((out / ".lock").read_text())["pid"] == os.getpid()
    assert json.loads((out / ".lock").read_text())["released"] is True


def test_a_dead_or_reused_pid_on_this_host_does_not_hold_the_lock(tmp_path):
    from mtpb.runlock import RunInUse, RunLock, _boot_id, _start_ticks
    out = tmp_path / "run"
    sleeper = subprocess.Popen(["sleep", "30"])
    try:
        here = {"host": socket.gethostname(), "boot_id": _boot_id(), "started": "then"}
        # a live process recorded as holder (flock not honoured, as on some network folders): refused
        _lock_record(out, pid=sleeper.pid, pid_start=_start_ticks(sleeper.pid), **here)
        with pytest.raises(RunInUse, match=f"pid {sleeper.pid}"):
            RunLock(out).acquire()
        # the same pid with another start time is a later process that reuses it: taken over
        _lock_record(out, pid=sleeper.pid, pid_start="1", **here)
        RunLock(out).acquire().release()
    finally:
        sleeper.kill()
        sleeper.wait()
    _lock_record(out, pid=sleeper.pid, pid_start=_start_ticks(os.getpid()), **here)   # dead now
    RunLock(out).acquire().release()
