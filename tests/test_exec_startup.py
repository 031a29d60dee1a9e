"""What makes the first result come fast: executors started at once, numpy and pandas loaded where named,
problem sets loaded only for lines that need them. Speed itself is measured in bench/exec_bare_fork.py."""
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from click.testing import CliRunner

from mtpb.cli import main
from mtpb.sandboxes.base import Limits
from mtpb.sandboxes.process import ProcessSandbox
from mtpb.scoring import verdict
from tests.conftest import DEMO, write_problem
from docker_fixtures import docker_ready, open_box, wait_for  # noqa: F401


def test_every_executor_starts_when_the_sandbox_opens():
    box = ProcessSandbox(workers=2)
    try:
        # no program was run: the second executor started with the first, not at its first program
        deadline = time.monotonic() + 30
        while box.pool.clients[1].hello is None and time.monotonic() < deadline:
            time.sleep(0.05)
        hellos = [client.hello for client in box.pool.clients]
        assert all(hellos), hellos
    finally:
        box.close()


def test_executors_outlive_the_threads_that_started_them():
    # bwrap --die-with-parent and the executor's PR_SET_PDEATHSIG fire when the *thread* that started it
    # ends: executors started on the background start threads, or restarted on a pool worker, must
    # still be the same processes batch after batch
    box = ProcessSandbox(workers=2)
    try:
        box.pool.clients[1].wait_started()
        time.sleep(0.3)   # the start threads are gone by now
        first = [client.transport.proc.pid for client in box.pool.clients]
        assert all(client.transport.proc.poll() is None for client in box.pool.clients)
        for _ in range(3):
            assert [r["stdout"] for r in box.run(["print(1)"] * 4)] == ["1\n"] * 4
            assert [client.transport.proc.pid for client in box.pool.clients] == first
        box.pool.clients[0].kill()            # a restart happens on a pool worker thread
        box.run(["print(1)"])
        restarted = box.pool.clients[0].transport.proc.pid
        time.sleep(0.3)
        box.run(["print(2)"] * 4)
        assert box.pool.clients[0].transport.proc.pid == restarted
        assert box.pool.clients[1].transport.proc.pid == first[1]
    finally:
        box.close()


def test_numpy_and_pandas_are_loaded_only_where_a_program_names_them_and_the_memory_allowance_follows():
    # The executor forks programs that name neither from an interpreter without them (a cheap fork);
    # those that name numpy from its numpy helper, those that name pandas from its pandas helper (both
    # imported). 160 MB on top of what the forking process maps: numpy and pandas add some 100 MB
    # there, which must not come out of the program's share.
    box = ProcessSandbox(workers=1, limits=Limits(timeout=30, memory_mb=160))
    loaded = "import sys\nprint([m for m in ('num' + 'py', 'pan' + 'das') if m in sys.modules])"
    allocate = "x = bytearray(120 << 20)\nprint(len(x))"
    try:
        replies = box.run([loaded, "# numpy\n" + loaded, "# pandas\n" + allocate, "# numpy\n" + loaded,
                           "# pandas\n" + loaded, loaded, allocate])
    finally:
        box.close()
    expected = [[], ["numpy"], 120 << 20, ["numpy"], ["numpy", "pandas"], [], 120 << 20]
    assert [verdict(r, e, "mtpb").status for r, e in zip(replies, expected)] == ["passed"] * 7, replies


def test_an_original_samples_file_loads_no_problem_sets(tmp_path, monkeypatch):
    import mtpb.problems
    loads = []
    real = mtpb.problems.load_problems
    monkeypatch.setattr(mtpb.problems, "load_problems", lambda *a, **k: loads.append(a) or real(*a, **k))
    original = tmp_path / "original.jsonl"
    original.write_text(json.dumps({"id": "1", "input": {}, "gold_output": 3, "completions": "1 + 2"}) + "\n")
    result = CliRunner().invoke(main, ["execute", str(original), "--out", str(tmp_path / "a"), "--sandbox", "process"])
    assert result.exit_code == 0 and "pass rate 100.00%" in result.output, result.output
    assert loads == []

    # a line of ours without "expected" needs them: they are loaded, and it is scored against them
    monkeypatch.setenv("MTPB_PROBLEMS", str(tmp_path / "mine"))
    (tmp_path / "mine").mkdir()
    write_problem(tmp_path / "mine", DEMO.replace("id: 1\n", "id: 9001\n"), "9001-demo.yaml")
    ours = tmp_path / "ours.jsonl"
    ours.write_text(json.dumps({"problem_id": 9001, "test_index": 0, "program": "print('cba')"}) + "\n")
    result = CliRunner().invoke(main, ["execute", str(ours), "--out", str(tmp_path / "b"), "--sandbox", "process"])
    assert result.exit_code == 0 and "pass rate 100.00%" in result.output, result.output
    assert len(loads) == 1


@pytest.mark.docker
def test_a_containers_replacement_starts_before_its_quota_is_served(docker_ready):
    box = open_box("docker", workers=1, recycle_after=4)
    try:
        names, uids = [], []
        for i in range(5):
            reply = box.run(["import os\nprint(os.getuid())"])[0]
            assert reply.get("exit_code") == 0 and reply["stdout"].strip().isdigit(), reply
            names.append(box.clients[0].transport.name)
            uids.append(int(reply["stdout"]))
            if i == 1:  # two of four served: the next container is up beside this one
                assert wait_for(lambda: len(box.containers()) == 2, 60), box.containers()
        assert names[:4] == [names[0]] * 4 and names[4] != names[0], names
        # the replacement runs as the slot's other uid: it never shares the old container's process count
        assert uids[:4] == [uids[0]] * 4 and uids[4] != uids[0], uids
    finally:
        box.close()


def test_execute_reads_the_file_while_executors_start_and_a_sandbox_that_cannot_start_writes_nothing(tmp_path):
    # an interpreter that answers the sandbox's probe but cannot run the executor (outside /tmp, which
    # the sandbox replaces, and readable by the sandbox's uid)
    folder = Path(tempfile.mkdtemp(prefix="mtpb-test-", dir="/var/tmp"))
    try:
        (folder / "bin").mkdir()
        python = folder / "bin" / "python"
        python.write_text('#!/bin/sh\ncase "$*" in *find_spec*) exec /usr/bin/python3 "$@";; esac\n'
                          'echo "boom: this interpreter runs no executor" >&2\nexit 3\n')
        for path in (folder, folder / "bin", python):
            path.chmod(0o755)
        samples = tmp_path / "samples.jsonl"
        samples.write_text(json.dumps({"id": "1", "input": {}, "gold_output": 3, "completions": "1 + 2"}) + "\n")
        out = tmp_path / "out"
        done = subprocess.run([sys.executable, "-m", "mtpb", "execute", str(samples), "--out", str(out),
                               "--sandbox", "process"], capture_output=True, text=True,
                              env={**os.environ, "MTPB_SANDBOX_PYTHON": str(python)})
    finally:
        shutil.rmtree(folder)
    assert done.returncode == 2, done.stderr
    assert "executor did not start" in done.stderr and "boom: this interpreter runs no executor" in done.stderr
    assert "Traceback" not in done.stderr
    assert not (out / "run.json").exists() and not (out / "results.jsonl").exists(), sorted(out.iterdir())
