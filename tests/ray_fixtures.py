"""A real multi-node Ray cluster for tests and benchmarks, inside a network namespace of its own.

Ray maps localhost to the machine's interface address, and tests must never send traffic there: in
a fresh namespace (`unshare -n`, then `lo` up) loopback is the only interface, so every Ray process
of the cluster and of the drivers (started with nsenter into that namespace) uses 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
HOST = Path(__file__).resolve().parent / "ray_cluster_host.py"
START_S = 180


def _env() -> dict:
    # the cluster's workers import this tree's mtpb, not another installed one
    return {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
            "RAY_AUTH_MODE": "disabled"}


class RayTestCluster:
    """ray.cluster_utils.Cluster in its own network namespace: a head with 0 CPUs and `workers` nodes."""

    def __init__(self, log: Path, workers: int = 2, cpus: int = 1):
        self.log = open(log, "w")
        self.proc = subprocess.Popen(
            ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, str(HOST),
             str(workers), str(cpus)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self.log, text=True, env=_env())
        self.address = self._answer(START_S)["address"]

    def _answer(self, timeout: float) -> dict:
        if not select.select([self.proc.stdout], [], [], timeout)[0]:
            raise TimeoutError(f"the Ray test cluster did not answer in {timeout} s (see {self.log.name})")
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the Ray test cluster exited (see {self.log.name})")
        return json.loads(line)

    def command(self, word: str, timeout: float = START_S) -> dict:
        self.proc.stdin.write(word + "\n")
        self.proc.stdin.flush()
        return self._answer(timeout)

    def in_netns(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/proc/{self.proc.pid}/ns/net", "--", *argv]

    def python(self, code: str) -> str:
        """Run Python code in the cluster's namespace; its stdout."""
        done = subprocess.run(self.in_netns([sys.executable, "-c", code]), capture_output=True, text=True,
                              env=_env(), timeout=120)
        assert done.returncode == 0, done.stderr[-2000:]
        return done.stdout

    def mtpb_run(self, out: Path, *args: str) -> subprocess.Popen:
        """`mtpb run ... --ray ADDRESS --out OUT` in the namespace; stdout and stderr in OUT.log."""
        log = open(f"{out}.log", "a")
        return subprocess.Popen(self.in_netns([sys.executable, "-m", "mtpb", "run", *args, "--out", str(out),
                                               "--ray", self.address]),
                                stdout=log, stderr=subprocess.STDOUT, env=_env())

    def processes(self) -> list[tuple[int, str]]:
        """(pid, command line) of every live process below the cluster (it is their subreaper)."""
        children: dict[int, list[int]] = {}
        lines = {}
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                stat = (entry / "stat").read_text()
                cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            state, ppid = stat.rsplit(")", 1)[1].split()[:2]
            if state != "Z":
                children.setdefault(int(ppid), []).append(int(entry.name))
                lines[int(entry.name)] = cmdline
        found, todo = [], [self.proc.pid]
        while todo:
            for child in children.get(todo.pop(), []):
                found.append((child, lines[child]))
                todo.append(child)
        return found

    def leftovers(self, wait: float = 20) -> list[str]:
        """Executors and run actors still alive below the cluster after `wait` seconds at most."""
        deadline = time.monotonic() + wait
        while True:
            left = [line[:120] for _, line in self.processes()
                    if "executor_value" in line or "ray::Replica" in line or "ray::SandboxHost" in line]
            if not left or time.monotonic() > deadline:
                return left
            time.sleep(0.5)

    def kill_one(self, marker: str) -> int:
        """SIGKILL one live process below the cluster whose command line has `marker`; its pid."""
        pid = next(pid for pid, line in self.processes() if marker in line)
        os.kill(pid, signal.SIGKILL)
        return pid

    def close(self):
        try:
            self.command("quit", timeout=60)
        except (OSError, TimeoutError, RuntimeError, ValueError):
            pass
        try:
            self.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.log.close()


def keyed(path: Path, drop=("seconds",)) -> dict:
    """A run file's lines by (problem, test, sample), each key asserted to appear once."""
    lines = {}
    counts = Counter()
    for line in path.read_text().splitlines():
        record = json.loads(line)
        key = (record["problem_id"], record["test_index"], record["sample_index"])
        counts[key] += 1
        lines[key] = {k: v for k, v in record.items() if k not in drop}
    assert not [k for k, c in counts.items() if c > 1], "a key written twice"
    return lines


def assert_same_run(ray_run: Path, local_run: Path, problem_ids=None):
    """Every sample and every verdict the same, key for key (timings aside); with problem_ids, the
    local run's keys of those problems only."""
    for name in ("samples.jsonl", "results.jsonl"):
        ours, theirs = keyed(ray_run / name), keyed(local_run / name)
        if problem_ids is not None:
            theirs = {k: v for k, v in theirs.items() if k[0] in problem_ids}
        assert ours.keys() == theirs.keys(), name
        assert [k for k in ours if ours[k] != theirs[k]] == [], name


def wait_for_lines(path: Path, proc: subprocess.Popen, count: int = 1, timeout: float = 180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and len(path.read_bytes().splitlines()) >= count:
            return
        assert proc.poll() is None, f"the run ended before {path} had {count} line(s)"
        time.sleep(0.1)
    raise TimeoutError(f"{path} had fewer than {count} line(s) after {timeout} s")
