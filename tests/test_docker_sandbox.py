"""The docker sandbox: image tags, hardening, the warm pool, recycling, and real faults.

Faults are made for real: `docker kill` and `docker pause` of a pool container mid-program, and a
stop and restart of the engine in the middle of `mtpb execute`, which must then resume with no
result lost or recorded twice. Tests marked `docker` skip without an engine and the built image
(they fail instead under MTPB_REQUIRE_DOCKER=1).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import mtpb.sandboxes.base as sandbox_base
from mtpb.sandboxes import docker_engine, docker_image, open_sandbox
from mtpb.sandboxes.base import Limits, SandboxUnavailable, executor_dir
from mtpb.scoring import verdict
from docker_fixtures import Engine, docker, docker_ready, open_box, skip_or_fail, wait_for  # noqa: F401

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------------------- without an engine

def spy_on_docker_cli(monkeypatch, *modules) -> list[tuple]:
    """Record every `docker` CLI call the given modules make: (args, timeout), the call still made."""
    calls: list[tuple] = []
    real = docker_engine.docker

    def recording(*args, timeout=30, check=True):
        calls.append((args, timeout))
        return real(*args, timeout=timeout, check=check)
    for module in (docker_engine, *modules):
        monkeypatch.setattr(module, "docker", recording)
    return calls


def test_unavailable_reason_is_fast_when_no_engine_runs(monkeypatch, tmp_path):
    from mtpb.sandboxes import docker as docker_sandbox
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setattr(docker_engine, "SOCKET", str(tmp_path / "docker.sock"))
    calls = spy_on_docker_cli(monkeypatch, docker_sandbox, docker_image)
    reason = docker_sandbox.unavailable_reason()
    # fast because it answers from the missing socket alone, before any CLI call could wait
    assert calls == [], calls
    assert "no Docker engine" in reason and str(tmp_path / "docker.sock") in reason and "\n" not in reason


def test_unavailable_reason_is_fast_for_an_unreachable_host(monkeypatch, tmp_path):
    if shutil.which("docker") is None:
        pytest.skip("no docker CLI")
    from mtpb.sandboxes import docker as docker_sandbox
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothing.sock")
    calls = spy_on_docker_cli(monkeypatch, docker_sandbox, docker_image)
    reason = docker_sandbox.unavailable_reason()
    # fast because one bounded CLI call says no, and nothing is tried after it (no image lookup, no retry)
    assert [args[0] for args, _ in calls] == ["version"] and calls[0][1] <= 5, calls
    assert reason and "does not answer" in reason and "\n" not in reason


def test_auto_falls_back_to_process_with_a_one_line_warning(monkeypatch, tmp_path):
    monkeypatch.delenv("DOCKER_HOST", raising=False)
    monkeypatch.delenv("DOCKER_CONTEXT", raising=False)
    monkeypatch.setattr(docker_engine, "SOCKET", str(tmp_path / "docker.sock"))
    warnings = []
    box = open_sandbox("auto", workers=1, warn=warnings.append)
    try:
        assert box.name == "process"
        assert warnings and "not docker" in warnings[0] and "no Docker engine" in warnings[0]
        with pytest.raises(SandboxUnavailable, match="no Docker engine"):
            open_sandbox("docker", workers=1, warn=warnings.append)
    finally:
        box.close()


def test_image_tag_follows_the_content_of_sandbox(tmp_path):
    folder = tmp_path / "sandbox"
    shutil.copytree(executor_dir(), folder, ignore=shutil.ignore_patterns("__pycache__"))
    tag, base = docker_image.image_tag(folder), docker_image.base_tag(folder)
    assert tag.startswith("mtpb-sandbox:") and base.startswith("mtpb-sandbox-base:")
    (folder / "__pycache__").mkdir()
    (folder / "__pycache__" / "executor.cpython-311.pyc").write_bytes(b"cache")
    (folder / "executor.cpython-311.pyc").write_bytes(b"cache")
    assert docker_image.image_tag(folder) == tag, "caches must not change the tag"
    (folder / "executor.py").write_text((folder / "executor.py").read_text() + "\n# changed\n")
    assert docker_image.image_tag(folder) != tag and docker_image.base_tag(folder) == base
    (folder / "base-rootfs.sh").write_text((folder / "base-rootfs.sh").read_text() + "\n# changed\n")
    assert docker_image.base_tag(folder) != base


def test_debian_mirror_comes_from_apt_sources(tmp_path):
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    assert docker_image.debian_mirror(apt) == docker_image.DEFAULT_MIRROR
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n\n"
        "Types: deb\nURIs: https://deb.nodesource.com/node_20.x\nSuites: nodistro\n\n"
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\nComponents: main\n")
    assert docker_image.debian_mirror(apt) == "http://mirror.example/debian"
    (apt / "sources.list").write_text("# deb http://old.example/debian bookworm main\n"
                                      "deb [arch=amd64] http://one.example/debian bookworm main\n")
    assert docker_image.debian_mirror(apt) == "http://one.example/debian"


def test_mtpb_help_does_not_import_docker():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom mtpb.cli import main\n"
            "CliRunner().invoke(main, ['--help'])\nCliRunner().invoke(main, ['sandbox', '--help'])\n"
            "print(sorted(m for m in sys.modules if m == 'docker' or m.startswith('mtpb.sandboxes.docker')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, check=True).stdout
    assert out.strip() == "[]"


# ---------------------------------------------------------------------------- with an engine

@pytest.fixture(scope="module")
def pool(docker_ready):
    box = open_box("docker", workers=2, timeout=5)
    yield box
    box.close()
    assert box.containers() == []


@pytest.mark.docker
def test_build_reuses_the_image_for_unchanged_sandbox(docker_ready, monkeypatch):
    tag = docker_image.image_tag()
    image_id = docker("image", "inspect", "--format", "{{.Id}}", tag).strip()
    streamed = []
    monkeypatch.setattr(docker_image, "_stream", lambda command, *a, **k: streamed.append(command))
    calls = spy_on_docker_cli(monkeypatch, docker_image)
    lines = []
    assert docker_image.build_image(progress=lines.append) == tag
    assert streamed == [], "a build ran for an unchanged sandbox/"
    assert not [args for args, _ in calls if args[0] in ("build", "buildx", "pull")], calls
    assert any("up to date" in line for line in lines), lines
    assert docker("image", "inspect", "--format", "{{.Id}}", tag).strip() == image_id


@pytest.mark.docker
def test_containers_are_hardened(pool):
    client = pool.clients[0]
    info = json.loads(docker("inspect", client.transport.name))[0]
    host, config = info["HostConfig"], info["Config"]
    assert host["NetworkMode"] == "none" and host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host.get("CapAdd")
    assert "no-new-privileges" in host["SecurityOpt"] and host["Init"] is True and host["Privileged"] is False
    assert host["PidsLimit"] > 0 and host["Memory"] > 0 and host["MemorySwap"] == host["Memory"]
    assert host["NanoCpus"] > 0
    assert "size=" in host["Tmpfs"]["/tmp"] and "noexec" in host["Tmpfs"]["/tmp"]
    assert not host.get("Binds") and not info.get("Mounts")
    uid = int(config["User"].split(":")[0])
    assert uid >= 10000 and config["Labels"]["mtpb.sandbox"] == "executor"
    assert config["Labels"]["mtpb.owner"] == pool.owner


@pytest.mark.docker
def test_results_come_back_in_order(pool):
    programs = [f"import time, numpy as np\ntime.sleep({(i * 7) % 5 / 50})\nprint(int(np.int64({i}) * 3))"
                for i in range(40)]
    replies = pool.run(programs)
    assert [verdict(r, i * 3, "mtpb").status for i, r in enumerate(replies)] == ["passed"] * 40


@pytest.mark.docker
def test_canaries_of_sandbox_check_hold(pool):
    from mtpb.sandboxes.check import run_checks
    rows = run_checks(pool)
    assert all(row["ok"] for row in rows), rows


@pytest.mark.docker
def test_a_container_is_recycled_after_n_programs(docker_ready):
    box = open_box("docker", workers=1, recycle_after=3)
    try:
        names = []
        for i in range(7):
            reply = box.run([f"print({i})"])[0]
            assert verdict(reply, i, "mtpb").passed
            names.append(box.clients[0].transport.name)
        # retire() runs after the program that fills the quota, so the name shown has moved on
        # the quota is checked after each program; the replacement starts with the next one
        a, b, c = names[0], names[3], names[6]
        assert names == [a, a, a, b, b, b, c] and len({a, b, c}) == 3
        assert wait_for(lambda: len(box.containers()) <= 1, 30), box.containers()
    finally:
        box.close()


@pytest.mark.docker
def test_a_container_is_recycled_after_a_killed_program(pool):
    client = pool.clients[0]
    before = client.transport.name
    reply = pool.run(["while True:\n    pass"])[0]
    assert verdict(reply, 1, "mtpb").status == "timeout"
    assert client.transport.sock is None, "the container that ran a killed program is retired at once"
    assert wait_for(lambda: before not in pool.containers(), 30)
    assert verdict(pool.run(["print(5)"])[0], 5, "mtpb").passed


def _program_running(name: str) -> bool:
    """The executor has forked a program: two python processes (host-side `docker top`, which cuts
    command lines short)."""
    top = docker("top", name, check=False).strip().splitlines()
    return sum("/usr/bin/python3" in line for line in top) >= 2


def _kill_during(box, kills: int, action: str = "kill", delay: float = 0.3):
    """`docker <action>` each of the next `kills` containers of the single client while a program runs."""
    done: list[str] = []

    def killer():
        seen = set()
        deadline = time.monotonic() + 60
        while len(done) < kills and time.monotonic() < deadline:
            client = box.clients[0]
            name = client.transport.name if client.transport.sock is not None else None
            if name and name not in seen and _program_running(name):
                seen.add(name)
                time.sleep(delay)
                docker(action, name, check=False)
                done.append(name)
            time.sleep(0.05)
    return threading.Thread(target=killer, daemon=True), done


def _run_killing(box, times: int):
    """Run a 2.5 s program while its container is killed `times` times -> (reply, killed names)."""
    thread, killed = _kill_during(box, times)
    thread.start()
    reply = box.run(["import time\ntime.sleep(2.5)\nprint(42)"])[0]
    thread.join(10)
    return reply, killed


@pytest.mark.docker
def test_a_killed_container_is_replaced_and_its_program_retried(docker_ready):
    box = open_box("docker", workers=1, timeout=10)
    try:
        reply, killed = _run_killing(box, 1)
        assert killed and verdict(reply, 42, "mtpb").passed, reply
        assert box.clients[0].transport.name != killed[0]
        assert wait_for(lambda: killed[0] not in box.containers(), 30)
    finally:
        box.close()


@pytest.mark.docker
def test_a_container_killed_twice_gives_sandbox_error_and_the_pool_goes_on(docker_ready):
    box = open_box("docker", workers=1, timeout=10)
    try:
        reply, killed = _run_killing(box, 2)
        assert len(killed) == 2
        result = verdict(reply, 42, "mtpb")
        assert result.status == "sandbox_error" and "twice" in result.error
        assert verdict(box.run(["print(7)"])[0], 7, "mtpb").passed
        assert wait_for(lambda: not set(killed) & set(box.containers()), 30)
    finally:
        box.close()


@pytest.mark.docker
def test_a_wedged_container_is_replaced_and_its_program_retried(docker_ready, monkeypatch):
    monkeypatch.setattr(sandbox_base, "GRACE_SECONDS", 2.0)
    box = open_box("docker", workers=1, timeout=2)
    try:
        client = box.clients[0]
        attempts: list[tuple[str, str]] = []   # (container, what came of the attempt)
        real_run = client.run

        def recording_run(program, timeout):
            try:
                reply = real_run(program, timeout)
            except Exception as e:
                attempts.append((client.transport.name, f"{type(e).__name__}: {e}"))
                raise
            attempts.append((client.transport.name, "reply"))  # a fresh container starts inside run()
            return reply
        monkeypatch.setattr(client, "run", recording_run)
        thread, paused = _kill_during(box, 1, action="pause", delay=0.3)
        thread.start()
        reply = box.run(["import time\ntime.sleep(1)\nprint(42)"])[0]
        thread.join(10)
        assert paused and verdict(reply, 42, "mtpb").passed, reply
        # the paused container was given up as wedged (its deadline passed), the program rerun once
        # on a fresh container, which answered
        assert len(attempts) == 2, attempts
        (first, how), (second, then) = attempts
        assert first == paused[0] and "ExecutorDied" in how and "wedged" in how, attempts
        assert second != first and then == "reply", attempts
        assert wait_for(lambda: paused[0] not in box.containers(), 30)
    finally:
        box.close()


@pytest.mark.docker
def test_clean_removes_leftovers_and_keeps_those_of_a_live_run(docker_ready):
    from mtpb.sandboxes.docker import _owner_host, clean
    image = docker_image.image_tag()
    owners = {"no-owner": None, "dead": f"{_owner_host()}-{2**22 + 1}-abc123",   # above any pid_max
              "live": f"{_owner_host()}-{os.getpid()}-abc123"}
    names = {}
    for what, owner in owners.items():
        names[what] = f"mtpb-test-{what}-{os.getpid()}"
        labels = ["--label", "mtpb.sandbox=executor"] + (["--label", f"mtpb.owner={owner}"] if owner else [])
        docker("run", "-d", "--rm", "--name", names[what], *labels, "--network", "none", image, "sleep", "600")
    removed, kept = clean()
    running = docker("ps", "-a", "--format", "{{.Names}}").split()
    assert removed >= 2 and kept >= 1
    assert names["no-owner"] not in running and names["dead"] not in running and names["live"] in running
    assert clean(everything=True)[0] >= 1
    assert names["live"] not in docker("ps", "-a", "--format", "{{.Names}}").split()


# ---------------------------------------------------------------------------- the engine goes away

@pytest.mark.docker
def test_engine_restart_mid_run_stops_cleanly_and_the_rerun_resumes(docker_ready, tmp_path):
    from mtpb.execute import execute_file
    from mtpb.sandboxes.docker import DockerSandbox, EngineGone
    engine = Engine()
    if engine.why_not():
        skip_or_fail(engine.why_not())
    samples, out = tmp_path / "samples.jsonl", tmp_path / "run"
    n = 36
    with open(samples, "w") as f:
        for i in range(n):
            f.write(json.dumps({"problem_id": 1, "test_index": 0, "sample_index": i, "expected": i,
                                "program": f"import time\ntime.sleep(0.25)\nprint({i})"}) + "\n")
    results = out / "results.jsonl"

    def lines() -> list[dict]:
        return [json.loads(line) for line in results.read_text().splitlines()] if results.exists() else []

    box = DockerSandbox(workers=2, limits=Limits(timeout=10))
    stopper = threading.Thread(target=lambda: (wait_for(lambda: len(lines()) >= 6, 60), engine.stop()), daemon=True)
    stopper.start()
    try:
        with pytest.raises(EngineGone, match="rerun the same command"):
            execute_file(samples, out, box, {}, "mtpb", batch=6)
    finally:
        stopper.join(90)
        box.close()  # must not hang or raise with the engine gone
        engine.start()
    first = lines()
    # batches are the first line alone, then 6 at a time: only whole batches are recorded
    assert 6 <= len(first) < n and (len(first) - 1) % 6 == 0, len(first)
    assert [r["index"] for r in first] == list(range(len(first)))

    box = DockerSandbox(workers=2, limits=Limits(timeout=10))
    try:
        execute_file(samples, out, box, {}, "mtpb", batch=6)
    finally:
        box.close()
    final = lines()
    assert [r["index"] for r in final] == list(range(n)), "every result once, in order"
    assert all(r["passed"] for r in final), [r for r in final if not r["passed"]][:3]
    assert box.containers() == []
