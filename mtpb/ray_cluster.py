"""`mtpb run --ray`: joining a Ray cluster and keeping its actors, generation replicas and one sandbox
host per node, started, placed and replaced when one dies.

Placement: on a cluster with GPUs, one replica per GPU (Ray chooses where); on CPUs only, one per
node, pinned to it, its threads the node's CPUs shared among that node's replicas (or -B threads=N). Sandbox hosts
are pinned one per node with CPUs, each with one executor per CPU (or --workers). None of them
reserves Ray CPUs: a replica and its node's executors share the node as they would on one machine,
and an actor never waits for resources a busy node cannot free.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

START_S = float(os.environ.get("MTPB_RAY_START_S", 900))   # a 16B checkpoint may take minutes to load
REPLACEMENTS = 4   # per actor the run started with: past that, a cluster that keeps losing them stops the run


class ClusterError(Exception):
    """The Ray cluster cannot serve the run (Ray missing, no address answers, no node left): one line."""


def connect(address: str) -> str:
    """Join the cluster at `address` (`auto`, `HOST:PORT`, `ray://HOST:10001`); an empty address joins
    RAY_ADDRESS, or a Ray already started on this machine, or starts one for this run."""
    try:
        import ray
    except ImportError:
        raise ClusterError("--ray needs Ray: pip install 'mtpb[ray]'") from None
    import logging
    _check_answers(address or os.environ.get("RAY_ADDRESS", ""))
    options = {"address": address or None, "logging_level": logging.WARNING, "log_to_driver": False}
    try:
        context = ray.init(**options)
    except (ConnectionError, RuntimeError, ValueError) as e:
        raise ClusterError(f"--ray {address or '(local)'}: cannot join the Ray cluster ({str(e).splitlines()[0]}): "
                           "start it (`ray start --head`), or give its address") from None
    return getattr(context, "address_info", {}).get("gcs_address") or address or "local"


def _check_answers(address: str):
    """A HOST:PORT where nothing listens fails here at once: ray.init would wait for it without end."""
    import socket
    host, sep, port = address.rpartition(":")
    if address.startswith("ray://") or not sep or not port.isdigit():
        return   # auto, ray://: Ray's own checks time out
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as e:
        raise ClusterError(f"--ray {address}: nothing answers there ({e.strerror or e}): start the cluster "
                           "(`ray start --head` prints its address), or give the right address") from None


def alive_nodes() -> list[dict]:
    import ray
    return [n for n in ray.nodes() if n.get("Alive")]


def node_cpus(node: dict) -> int:
    return int(node.get("Resources", {}).get("CPU", 0))


def _pinned(node_id: str) -> dict:
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy
    return {"scheduling_strategy": NodeAffinitySchedulingStrategy(node_id=node_id, soft=False)}


def _discard(member: "Member"):
    """Make sure an actor given up for lost is gone: one only unreachable for a while would otherwise
    run on beside its replacement until the driver ends."""
    import ray
    try:
        ray.kill(member.actor, no_restart=True)
    except Exception:   # dead already, or its node is
        pass


def _is_alive(node_id: str | None) -> bool:
    return node_id is None or any(n["NodeID"] == node_id for n in alive_nodes())


@dataclass
class Member:
    """One actor of the run and the work it has in flight (counted by the driver)."""
    actor: object
    node_id: str | None    # None: placed by Ray (GPU replicas)
    where: str             # for messages: the node's address
    flying: int = 0        # requests sent and not answered
    slots: int = 1         # requests it runs at once (a sandbox host's executors)
    replaced: bool = False


def _ready(members: list[Member], what: str):
    """Wait for every member's start; an error raised while starting is raised here as itself."""
    import ray
    refs = [m.actor.ready.remote() for m in members]
    done, waiting = ray.wait(refs, num_returns=len(refs), timeout=START_S)
    if waiting:
        raise ClusterError(f"{len(waiting)} {what}(s) not started after {START_S:.0f} s: the cluster lacks the "
                           "resources they need (a GPU each on GPU clusters), or set MTPB_RAY_START_S higher")
    return [unwrap(ref) for ref in refs]


def unwrap(ref):
    """ray.get, with an exception raised inside an actor (a BackendError, SandboxUnavailable) raised as
    itself, so the command line shows it in one line as for a local run."""
    import ray
    from ray.exceptions import RayTaskError
    try:
        return ray.get(ref)
    except RayTaskError as e:
        cause = getattr(e, "cause", None)
        if isinstance(cause, Exception):
            raise cause from None
        raise


class ReplicaSet:
    """The run's generation replicas: the backend, in the runner's terms (describe, batch size)."""

    def __init__(self, backend: str, model: str | None, options: dict, config, problems: list):
        import ray
        from mtpb.backends.base import parse_number
        from mtpb.ray_actors import Replica
        options = dict(options)
        count = options.pop("replicas", None)
        threads = options.pop("threads", None)
        self.threads = parse_number(threads, "threads", low=1) if threads is not None else None
        self.spec = (backend, model, options, config, ray.put(list(problems)))
        self.actor_class = ray.remote(Replica)
        nodes = [n for n in alive_nodes() if node_cpus(n) > 0]
        gpus = sum(int(n.get("Resources", {}).get("GPU", 0)) for n in alive_nodes())
        self.gpu = gpus > 0
        count = parse_number(count, "replicas", low=1) if count is not None else (gpus or len(nodes))
        if not self.gpu and not nodes:
            raise ClusterError("the Ray cluster has no node with CPUs to run a replica on")
        self.nodes = {n["NodeID"]: n for n in nodes}
        plan = [None] * count if self.gpu else [nodes[i % len(nodes)]["NodeID"] for i in range(count)]
        self.members = [self._start(node_id, plan) for node_id in plan]
        facts = _ready(self.members, "replica")
        self.facts = {**facts[0]["describe"], "replicas": count}
        self.preferred_batch_size = facts[0]["batch_size"]
        self.replaced = 0

    def _start(self, node_id: str | None, plan: list) -> Member:
        if node_id is None:
            actor = self.actor_class.options(num_gpus=1, num_cpus=0)
            where = "a GPU"
        else:
            node = self.nodes[node_id]
            threads = self.threads or max(1, node_cpus(node) // max(1, plan.count(node_id)))
            actor = self.actor_class.options(num_cpus=0, runtime_env={"env_vars": {"OMP_NUM_THREADS": str(threads)}},
                                             **_pinned(node_id))
            where = node["NodeManagerAddress"]
        return Member(actor.remote(*self.spec), node_id, where)

    def describe(self) -> dict:
        return self.facts

    def replace(self, dead: Member) -> Member | None:
        """A replica for the dead one: on its node if that still lives, else on the live node with the
        fewest. None when no node is left for one (the others carry on)."""
        self.members.remove(dead)
        _discard(dead)
        self.replaced += 1
        if self.replaced > REPLACEMENTS * (len(self.members) + 1):
            raise ClusterError(f"{self.replaced} replicas died during this run: see the Ray logs of the cluster")
        node_id = dead.node_id
        if node_id is not None and not _is_alive(node_id):
            live = {n["NodeID"]: n for n in alive_nodes() if node_cpus(n) > 0}
            if not live:
                if not self.members:
                    raise ClusterError("every replica and every node with CPUs is gone: restart the cluster, "
                                       "then the same command resumes")
                return None
            self.nodes.update(live)
            node_id = min(live, key=lambda i: sum(m.node_id == i for m in self.members))
        member = self._start(node_id, [m.node_id for m in self.members] + [node_id])
        self.members.append(member)
        return member

    def close(self):
        import ray
        for m in self.members:
            try:
                ray.get(m.actor.close.remote(), timeout=30)
            except Exception:   # a replica that died already has nothing to close
                pass
            ray.kill(m.actor)


class HostSet:
    """One sandbox host per node with CPUs: the sandbox, in the runner's terms."""

    def __init__(self, sandbox: str, workers: int | None, limits):
        import ray
        from mtpb.ray_actors import SandboxHost
        self.sandbox, self.workers, self.limits = sandbox, workers, limits
        self.actor_class = ray.remote(SandboxHost)
        nodes = [n for n in alive_nodes() if node_cpus(n) > 0]
        if not nodes:
            raise ClusterError("the Ray cluster has no node with CPUs to run programs on")
        self.members = [self._start(n) for n in nodes]
        self.facts = _ready(self.members, "sandbox host")
        self.name = self.facts[0]["describe"].split(" ", 1)[0]

    def _start(self, node: dict) -> Member:
        workers = self.workers or max(1, node_cpus(node))
        actor = self.actor_class.options(num_cpus=0, max_concurrency=workers, **_pinned(node["NodeID"]))
        return Member(actor.remote(self.sandbox, workers, self.limits), node["NodeID"], node["NodeManagerAddress"],
                      slots=workers)

    def describe(self) -> str:
        first = self.facts[0]["describe"]
        return f"{first} on each of {len(self.members)} node(s), {sum(m.slots for m in self.members)} in all"

    def warnings(self) -> list[str]:
        return sorted({w for f in self.facts for w in f["warnings"]})

    def replace(self, dead: Member) -> Member | None:
        """A host for the dead one if its node still lives (an actor killed alone); else None."""
        self.members.remove(dead)
        _discard(dead)
        node = next((n for n in alive_nodes() if n["NodeID"] == dead.node_id), None)
        member = self._start(node) if node is not None else None
        if member is not None:
            self.members.append(member)
        if not self.members:
            raise ClusterError("every node's sandbox host is gone: restart the cluster, then the same command resumes")
        return member

    def close(self):
        import ray
        refs = [m.actor.close.remote() for m in self.members]
        try:
            ray.wait(refs, num_returns=len(refs), timeout=60)
        finally:
            for m in self.members:
                ray.kill(m.actor)


class RayCluster:
    """What `mtpb run --ray` holds while it runs: the connection, the replicas and the sandbox hosts."""

    def __init__(self, address: str, backend: str, model: str | None, options: dict, config, problems: list,
                 sandbox: str, workers: int | None, limits):
        self.address = connect(address)
        self.replicas = self.hosts = None
        try:
            self.hosts = HostSet(sandbox, workers, limits)
            self.replicas = ReplicaSet(backend, model, options, config, problems)
        except BaseException:
            self.close()
            raise
        self.nodes = len(alive_nodes())

    def describe(self) -> str:
        return (f"ray at {self.address}: {self.nodes} node(s), {len(self.replicas.members)} replica(s); "
                f"sandbox {self.hosts.describe()}")

    def close(self):
        import ray
        try:
            for part in (self.replicas, self.hosts):
                if part is not None:
                    part.close()
        finally:
            ray.shutdown()
