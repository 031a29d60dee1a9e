"""A multi-node Ray test cluster on this machine (Ray's own ray.cluster_utils.Cluster), for tests and
benchmarks: run it inside a network namespace of its own (tests/ray_fixtures.py does), so that every
Ray process listens and connects on that namespace's loopback only.

Prints one JSON line {"address", "pid"} when the nodes are up, then obeys lines on stdin:
`remove` (the last worker node, killed as a lost machine would be), `add` (a worker node), `quit`.
Each command is answered with a JSON line. It is the subreaper of everything it starts, so a process
orphaned by a killed node stays below it, where a test can look for leftovers.
"""
from __future__ import annotations

import ctypes
import json
import sys

PR_SET_CHILD_SUBREAPER = 36


def main(worker_nodes: int, cpus: int):
    ctypes.CDLL(None).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    from ray.cluster_utils import Cluster
    # the head runs nothing of a run (0 CPUs, as on a real cluster): the workers are the nodes
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0, "include_dashboard": False})
    workers = [cluster.add_node(num_cpus=cpus) for _ in range(worker_nodes)]
    cluster.wait_for_nodes()
    print(json.dumps({"address": cluster.address}), flush=True)
    for line in sys.stdin:
        command = line.strip()
        if command == "remove":
            cluster.remove_node(workers.pop(), allow_graceful=False)
        elif command == "add":
            workers.append(cluster.add_node(num_cpus=cpus))
            cluster.wait_for_nodes()
        elif command == "quit":
            break
        print(json.dumps({"done": command, "worker_nodes": len(workers)}), flush=True)
    cluster.shutdown()


if __name__ == "__main__":
    main(int(sys.argv[1]) if len(sys.argv) > 1 else 2, int(sys.argv[2]) if len(sys.argv) > 2 else 1)
