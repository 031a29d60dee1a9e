"""What `mtpb run --ray` costs and gains on this machine, measured side by side in one run.

    python bench/ray_scale.py [--rounds 2] [--ids 1-4] [--n 2] [--requests 200]

It re-runs itself inside a network namespace of its own (`unshare -n`, loopback up: no Ray traffic
leaves 127.0.0.1), starts a one-node Ray (`ray start --head`, this machine's CPUs) there, and prints:
- execution: programs/s of the suite's 575 reference programs through the runner, with the process
  sandbox here (--workers = CPUs) against RayRunner with one sandbox host on the one-node cluster;
  rounds alternate, the ratio is of the summed times. Floor 0.8x.
- generation: samples/s of the tiny checkpoint (--ids, --n, temperature 0.8, 32 tokens a turn) with
  2 CPU replicas of one torch thread each against 1 replica of one thread (the baseline), and 1 of
  two threads; with the CPU headroom measured just after (two busy processes against one: on a
  machine shared with other jobs the ceiling for 2 replicas is well below 2x);
- Ray's per-request overhead: a one-item `generate` on a reference replica actor against the same
  call in this process, in ms (mean over --requests).
Times are of the runs alone (actors started and sandboxes open before the clock starts). Exit
status 1 when the execution floor is missed.
"""
from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
EXECUTION_FLOOR = 0.8


def in_own_netns():
    """Re-run this script inside a new network namespace with loopback up, unless already there."""
    if os.environ.get("MTPB_BENCH_NETNS") == "1":
        return
    env = {**os.environ, "MTPB_BENCH_NETNS": "1", "RAY_AUTH_MODE": "disabled",
           "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    cmd = ["unshare", "-n", "sh", "-c", 'ip link set lo up && exec "$0" "$@"', sys.executable, *sys.argv]
    sys.exit(subprocess.call(cmd, env=env))


def wait_for_port(port: int, head: subprocess.Popen, timeout: float = 120):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            time.sleep(3)   # the GCS answers before the raylet has registered
            return
        except OSError:
            if head.poll() is not None:
                sys.exit("ray start --head exited")
            time.sleep(0.5)
    sys.exit(f"no Ray head on port {port} after {timeout} s")


def timed(run) -> float:
    start = time.perf_counter()
    run()
    return time.perf_counter() - start


def execution(address: str, rounds: int, cpus: int) -> float:
    from mtpb.problems import load_problems
    from mtpb.ray_cluster import RayCluster
    from mtpb.ray_runner import RayRunner
    from mtpb.runner import RunConfig, Runner
    from mtpb.backends import create_backend
    from mtpb.sandboxes import Limits
    from mtpb.sandboxes.process import ProcessSandbox
    suite = load_problems(None)
    config = RunConfig(backend="reference")
    box = ProcessSandbox(workers=cpus, limits=Limits())
    cluster = RayCluster(address, "reference", None, {}, config, suite, "process", None, Limits())
    local_s = ray_s = 0.0
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for r in range(rounds):
                local_s += timed(lambda: Runner(config, Path(tmp, f"local{r}"), create_backend("reference"), box,
                                                suite).run())
                ray_s += timed(lambda: RayRunner(config, Path(tmp, f"ray{r}"), cluster, suite, warn=print).run())
    finally:
        box.close()
        cluster.close()
    programs = 575 * rounds
    ratio = local_s / ray_s
    print(f"execution, 575 reference programs x {rounds} round(s), {cpus} executor(s):")
    print(f"  local  {programs / local_s:7.1f} programs/s")
    print(f"  --ray  {programs / ray_s:7.1f} programs/s   ratio {ratio:.2f}x (floor {EXECUTION_FLOOR}x)")
    return ratio


def spin(seconds: float) -> int:
    """Loop turns in `seconds` of wall time: how much CPU this process gets."""
    end, turns = time.perf_counter() + seconds, 0
    while time.perf_counter() < end:
        turns += 1
    return turns


def cpu_headroom(seconds: float = 3.0) -> float:
    """Loop turns of two processes at once over one alone: the most two replicas could gain over one
    here and now (2.0 on two idle cores; less where other jobs hold the CPUs)."""
    from concurrent.futures import ProcessPoolExecutor
    with ProcessPoolExecutor(2) as pool:
        one = pool.submit(spin, seconds).result()
        two = sum(f.result() for f in [pool.submit(spin, seconds) for _ in range(2)])
    return two / one


def generation(address: str, ids: str, n: int):
    from mtpb.problems import load_problems, parse_ids, select
    from mtpb.ray_cluster import RayCluster
    from mtpb.ray_runner import RayRunner
    from mtpb.runner import RunConfig
    from mtpb.sandboxes import Limits
    suite = select(load_problems(None), parse_ids(ids))
    config = RunConfig(backend="codegen", n=n, temperature=0.8, max_gen_length=32)
    samples = sum(len(p.tests) for p in suite) * n
    rates = {}
    with tempfile.TemporaryDirectory() as tmp:
        for replicas, threads in ((1, 1), (2, 1), (1, 2)):
            cluster = RayCluster(address, "codegen", None, {"device": "cpu", "batch_size": "8",
                                                            "replicas": str(replicas), "threads": str(threads)},
                                 config, suite, "process", 1, Limits())
            try:
                seconds = timed(lambda: RayRunner(config, Path(tmp, f"r{replicas}t{threads}"), cluster, suite,
                                                  warn=print).run())
            finally:
                cluster.close()
            rates[replicas, threads] = samples / seconds
    print(f"generation, tiny checkpoint, {samples} samples (ids {ids}, n {n}, 32 tokens a turn):")
    print(f"  CPU headroom now: two busy processes do {cpu_headroom():.2f}x the work of one (the ceiling "
          "for 2 replicas)")
    base = rates[1, 1]
    for (replicas, threads), rate in rates.items():
        print(f"  {replicas} replica(s) x {threads} thread(s)  {rate:6.2f} samples/s   ratio {rate / base:.2f}x")


def overhead(address: str, requests: int):
    import ray
    from mtpb.backends import create_backend
    from mtpb.problems import load_problems
    from mtpb.ray_actors import Replica
    from mtpb.ray_cluster import connect
    from mtpb.runner import Item, Runner, RunConfig
    suite = load_problems(None)[:1]
    config = RunConfig(backend="reference")
    keys = [(suite[0].id, 0, 0)]
    here = Runner(config, Path("."), create_backend("reference"), None, suite)
    connect(address)
    try:
        actor = ray.remote(Replica).options(num_cpus=0).remote("reference", None, {}, config, suite)
        ray.get(actor.ready.remote())
        for _ in range(20):   # warm both paths
            ray.get(actor.generate.remote(keys))
        local_s = timed(lambda: [here._generate([Item(suite[0], 0, 0)]) for _ in range(requests)])
        ray_s = timed(lambda: [ray.get(actor.generate.remote(keys)) for _ in range(requests)])
        ray.kill(actor)
    finally:
        ray.shutdown()
    print(f"per-request overhead of Ray ({requests} one-item generate calls, one at a time):")
    print(f"  in process {1000 * local_s / requests:6.2f} ms   on a replica actor {1000 * ray_s / requests:6.2f} ms   "
          f"overhead {1000 * (ray_s - local_s) / requests:6.2f} ms")


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--ids", default="1-4")
    parser.add_argument("--n", type=int, default=2)
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    in_own_netns()
    cpus = os.cpu_count() or 1
    # our own head, in our namespace, ended by its process group (`ray stop` would end every Ray here)
    head = subprocess.Popen(["ray", "start", "--head", "--block", f"--num-cpus={cpus}", "--include-dashboard=false",
                             "--port=6379", "--disable-usage-stats"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    address = "127.0.0.1:6379"
    try:
        wait_for_port(6379, head)
        ratio = execution(address, args.rounds, cpus)
        generation(address, args.ids, args.n)
        overhead(address, args.requests)
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
    sys.exit(0 if ratio >= EXECUTION_FLOOR else 1)


if __name__ == "__main__":
    main()
