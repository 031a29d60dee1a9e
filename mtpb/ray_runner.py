"""The run loop of `mtpb run --ray`: mtpb.runner.Runner with its work spread over a Ray cluster.

Everything about the run directory stays the Runner's (manifest, resume, checks, summary); this
only replaces the loop that feeds the backend and the sandbox:
- generation: the items to sample go out as tasks of whole test cases (all samples of one test
  case, all their turns, on one replica, where their cache rows are), each replica holding up to
  IN_FLIGHT tasks, so none waits for another; a test case larger than a task keeps to the replica
  that has its prompt;
- execution: each sample's program goes out as soon as its record is written, in chunks of CHUNK,
  to the node hosts with free executors; replies come back chunk by chunk;
- faults: work on an actor that died (its node removed, or the actor killed) goes back to the front
  of its queue and the actor is replaced. Only the driver writes, and it writes a key once, when
  its record or reply arrives, so a redone task can never write a line twice.
"""
from __future__ import annotations

from collections import deque
from dataclasses import dataclass
from pathlib import Path

from mtpb.rundir import JsonlWriter, read_jsonl
from mtpb.runner import Runner

IN_FLIGHT = 2     # generation tasks per replica: the next one is queued at the actor when one ends
CHUNK = 4         # programs per execution request: Ray's per-call cost spread over a few programs
WAIT_S = 1.0


@dataclass(frozen=True)
class Task:
    kind: str            # "generate": payload is (problem, test, sample) keys; "execute": sample records
    payload: tuple
    affinity: tuple = ()  # (problem, test) of a generation task


class RayRunner(Runner):
    def __init__(self, config, out: Path, cluster, problems: list, progress=None, warn=print):
        super().__init__(config, out, cluster.replicas, cluster.hosts, problems, progress)
        self.cluster, self.warn = cluster, warn
        self.lost = {"generate": 0, "execute": 0}

    def _manifest(self) -> dict:
        manifest = super()._manifest()
        manifest["ray"] = {"address": self.cluster.address, "nodes": self.cluster.nodes,
                           "replicas": len(self.cluster.replicas.members), "sandbox_hosts": len(self.cluster.hosts.members)}
        return manifest

    def _tasks(self, keys: list[tuple]) -> deque:
        """Whole test cases per task up to the batch size; a test case with more samples than that is
        split, its parts sharing one affinity."""
        size, tasks, current = self._batch_size(), deque(), []
        cases: dict[tuple, list] = {}
        for key in keys:
            cases.setdefault(key[:2], []).append(key)
        for case, case_keys in cases.items():
            if current and len(current) + len(case_keys) > size:
                tasks.append(Task("generate", tuple(current), current[0][:2]))
                current = []
            for start in range(0, len(case_keys), size):
                part = case_keys[start:start + size]
                if len(part) == size:
                    tasks.append(Task("generate", tuple(part), case))
                else:
                    current += part
        if current:
            tasks.append(Task("generate", tuple(current), current[0][:2]))
        return tasks

    def _loop(self, sampled: set, executed: set):
        import ray
        from ray.exceptions import RayError, RayTaskError
        all_keys = list(self._all_keys())
        if self.progress:
            self.progress.start(len(all_keys), sum(k in executed for k in all_keys))
        samples, results = JsonlWriter(self.dir.samples), JsonlWriter(self.dir.results)
        # samples whose programs were never executed (a crash between the two steps) go first
        to_run = deque(r for _, r in read_jsonl(self.dir.samples)
                       if self._key(r) not in executed and self._key(r)[0] in self.problems)
        to_sample = self._tasks([k for k in all_keys if k not in sampled])
        self.sticky: dict[tuple, object] = {}   # (problem, test) -> the replica that has its prefix
        flying: dict = {}                       # ObjectRef -> (Task, Member)
        try:
            while to_sample or to_run or flying:
                self._send_generation(to_sample, flying)
                self._send_execution(to_run, flying)
                ready, _ = ray.wait(list(flying), num_returns=1, timeout=WAIT_S)
                if ready:
                    ready, _ = ray.wait(list(flying), num_returns=len(flying), timeout=0)
                for ref in ready:
                    task, member = flying.pop(ref)
                    member.flying -= 1
                    try:
                        value = ray.get(ref)
                    except RayTaskError as e:    # raised by our code in the actor: the run's error
                        cause = getattr(e, "cause", None)
                        raise (cause if isinstance(cause, Exception) else e) from None
                    except RayError as e:        # the actor or its node died: redo, elsewhere if need be
                        self._lost(task, member, e, to_sample if task.kind == "generate" else to_run)
                        continue
                    if task.kind == "generate":
                        for record in value:
                            samples.write(record)
                        samples.checkpoint()
                        to_run.extend(value)
                    else:
                        self._write_results(list(task.payload), value, results)
        finally:
            samples.close()
            results.close()
        if any(self.lost.values()):
            self.warn(f"ray: redone after actors were lost: {self.lost['generate']} sample(s), "
                      f"{self.lost['execute']} program(s); every key is written once")

    def _send_generation(self, queue: deque, flying: dict):
        for member in list(self.cluster.replicas.members):
            while queue and member.flying < IN_FLIGHT:
                task = self._next_for(member, queue)
                if task is None:
                    break
                self.sticky[task.affinity] = member
                flying[member.actor.generate.remote(list(task.payload))] = (task, member)
                member.flying += 1

    def _next_for(self, member, queue: deque) -> Task | None:
        """The first task whose test case is new or already this replica's; an idle replica takes the
        first one whatever it is, so that none waits while work is queued."""
        for i, task in enumerate(queue):
            if self.sticky.get(task.affinity, member) is member:
                del queue[i]
                return task
        return queue.popleft() if member.flying == 0 else None

    def _send_execution(self, queue: deque, flying: dict):
        for member in list(self.cluster.hosts.members):
            while queue and member.flying < 2 * member.slots:
                records = tuple(queue.popleft() for _ in range(min(CHUNK, len(queue))))
                ref = member.actor.run.remote([r["program"] for r in records], self.check_mode)
                flying[ref] = (Task("execute", records), member)
                member.flying += 1

    def _lost(self, task: Task, member, error: Exception, queue: deque):
        """Put the task back at the front of its queue, with the dead actor's other tasks (they fail the
        same way; each is requeued as it comes), and replace the actor once."""
        self.lost[task.kind] += len(task.payload)
        if task.kind == "generate":
            queue.appendleft(task)
        else:
            queue.extendleft(reversed(task.payload))
        if member.replaced:
            return
        member.replaced = True
        what = "replica" if task.kind == "generate" else "sandbox host"
        reason = (str(error).strip().splitlines() or [""])[0].split(". ")[0][:160]
        group = self.cluster.replicas if task.kind == "generate" else self.cluster.hosts
        new = group.replace(member)
        if task.kind == "generate":
            self.sticky = {case: m for case, m in self.sticky.items() if m is not member}
        self.warn(f"ray: a {what} on {member.where} was lost ({type(error).__name__}: {reason}); its work is redone"
                  + (f", a new one starts on {new.where}" if new else " on the others"))
