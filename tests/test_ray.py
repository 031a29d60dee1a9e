"""`mtpb run --ray` on a real multi-node Ray cluster (ray.cluster_utils, 2 worker nodes of 1 CPU and a
head with none) inside a network namespace of its own: the same samples and verdicts as a local run,
key for key, and every key exactly once when a node is removed, a replica is killed or the driver is
killed. This test process never imports ray: the cluster and every driver run in the namespace."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from ray_fixtures import RayTestCluster, assert_same_run, keyed, wait_for_lines

REPO = Path(__file__).resolve().parent.parent
# the tiny checkpoint, sampled: 4 problems x 5 tests x 2 samples, programs depend on every seed
SAMPLING = ("--backend", "codegen", "-B", "device=cpu", "-B", "batch_size=8", "--n", "2", "--temperature", "0.8",
            "--max-gen-length", "24", "--sandbox", "process")
CODEGEN = (*SAMPLING, "--ids", "1-4")
# the fault tests: a part of CODEGEN, in tasks of 4 samples so that a fault lands mid-run
FAULTS = (*SAMPLING, "--ids", "1-2", "--batch-size", "4")
REFERENCE = ("--backend", "reference", "--sandbox", "process", "--batch-size", "16")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    cluster = RayTestCluster(tmp_path_factory.mktemp("ray") / "cluster.log")
    yield cluster
    cluster.close()


def local_run(out: Path, args: tuple) -> Path:
    # one thread, as each replica on a 1-CPU node has: two on this 2-core machine only crowd the executors
    done = subprocess.run([sys.executable, "-m", "mtpb", "run", *args, "--out", str(out)], capture_output=True,
                          text=True, cwd=REPO, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr[-2000:]
    return out


@pytest.fixture(scope="module")
def reference_local(tmp_path_factory):
    return local_run(tmp_path_factory.mktemp("local") / "reference", REFERENCE)


@pytest.fixture(scope="module")
def codegen_local(tmp_path_factory):
    return local_run(tmp_path_factory.mktemp("local") / "codegen", CODEGEN)


def finish(proc: subprocess.Popen, out: Path, timeout: float = 300) -> str:
    proc.wait(timeout=timeout)
    log = Path(f"{out}.log").read_text()
    assert proc.returncode == 0, log[-3000:]
    return log


def test_every_node_of_the_test_cluster_is_on_loopback(cluster):
    nodes = json.loads(cluster.python(
        "import json, ray\n"
        f"ray.init(address={cluster.address!r}, log_to_driver=False)\n"
        "print(json.dumps([(n['NodeManagerAddress'], n['Alive'], n['Resources'].get('CPU', 0)) for n in ray.nodes()]))"))
    assert [n[0] for n in nodes] == ["127.0.0.1"] * 3 and all(n[1] for n in nodes)
    assert sorted(n[2] for n in nodes) == [0, 1, 1]
    assert cluster.address.startswith("127.0.0.1:")


def test_the_suite_on_ray_gives_the_local_run_key_for_key(cluster, reference_local, tmp_path):
    out = tmp_path / "ray"
    log = finish(cluster.mtpb_run(out, *REFERENCE), out)
    assert "3 node(s), 2 replica(s)" in log and "on each of 2 node(s)" in log
    assert_same_run(out, reference_local)
    assert len(keyed(out / "results.jsonl")) == 575
    manifest = json.loads((out / "run.json").read_text())
    assert manifest["ray"]["replicas"] == 2 and manifest["backend_info"]["replicas"] == 2
    assert cluster.leftovers() == []


def test_humaneval_on_ray_is_judged_in_check_mode_as_locally(cluster, tmp_path):
    """HumanEval's programs go to the sandbox hosts in check mode: the canonical solutions all pass."""
    args = ("--backend", "reference", "--suite", "humaneval", "--ids", "0-9", "--n", "2", "--sandbox", "process")
    local = local_run(tmp_path / "local", args)
    out = tmp_path / "ray"
    finish(cluster.mtpb_run(out, *args), out)
    assert_same_run(out, local)
    results = keyed(out / "results.jsonl")
    assert len(results) == 20 and all(r["result"] == "passed" for r in results.values())


def test_codegen_on_two_replicas_samples_what_one_local_engine_samples(cluster, codegen_local, tmp_path):
    out = tmp_path / "ray"
    finish(cluster.mtpb_run(out, *CODEGEN), out)
    assert_same_run(out, codegen_local)
    assert len(keyed(out / "samples.jsonl")) == 40


def test_a_killed_replica_is_replaced_and_its_work_redone_once(cluster, codegen_local, tmp_path):
    out = tmp_path / "ray"
    proc = cluster.mtpb_run(out, *FAULTS)
    wait_for_lines(out / "samples.jsonl", proc)
    cluster.kill_one("ray::Replica")
    log = finish(proc, out)
    assert "a replica on 127.0.0.1 was lost" in log
    assert_same_run(out, codegen_local, {1, 2})
    assert cluster.leftovers() == []


def test_a_removed_node_loses_no_program_and_leaves_no_process(cluster, codegen_local, tmp_path):
    out = tmp_path / "ray"
    proc = cluster.mtpb_run(out, *FAULTS)
    wait_for_lines(out / "samples.jsonl", proc)
    assert cluster.command("remove")["worker_nodes"] == 1
    try:
        log = finish(proc, out)
        assert "was lost" in log
        assert_same_run(out, codegen_local, {1, 2})
        assert cluster.leftovers() == []
    finally:
        cluster.command("add")


def test_a_driver_killed_mid_run_resumes_every_key_once(cluster, reference_local, tmp_path):
    out = tmp_path / "ray"
    proc = cluster.mtpb_run(out, *REFERENCE)
    wait_for_lines(out / "results.jsonl", proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert len(keyed(out / "results.jsonl")) < 575
    assert cluster.leftovers() == []   # the driver's actors, and their executors, die with it
    log = finish(cluster.mtpb_run(out, *REFERENCE), out)
    assert "resuming:" in log
    assert_same_run(out, reference_local)


def test_a_killed_sandbox_host_has_its_programs_run_again_once(cluster, reference_local, tmp_path):
    out = tmp_path / "ray"
    proc = cluster.mtpb_run(out, *REFERENCE)
    wait_for_lines(out / "results.jsonl", proc)
    cluster.kill_one("ray::SandboxHost")
    log = finish(proc, out)
    assert "a sandbox host on 127.0.0.1 was lost" in log
    assert_same_run(out, reference_local)
    assert cluster.leftovers() == []
