"""The turn loop over (problem, test case, sample), batched across problems, resumable.

Samples are generated batch by batch and appended to samples.jsonl; their programs then go to the
sandbox and the verdicts to results.jsonl. Nothing is kept in memory beyond one batch and the set
of keys already done, so a run of any size streams to disk. Re-running the same command on the same
directory skips what is done, and executes samples whose results were lost.
"""
from __future__ import annotations

import hashlib
import itertools
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterator

from mtpb import __version__, prompts
from mtpb.backends.base import Request, SamplingParams
from mtpb.problems import Problem, problem_from_record, problem_record, problems_digest
from mtpb.rundir import PROBLEMS_FILE, JsonlWriter, RunDirError, load_json, now, read_jsonl, repair_tail, \
    write_json_atomic, write_jsonl_atomic
from mtpb.scoring import verdict
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
        self.config, self.out, self.backend, self.sandbox = config, Path(out), backend, sandbox
        self.problems = {p.id: p for p in problems}
        self.progress = progress  # an object with .start(total, done) and .advance(kind, count)
        self.params = SamplingParams(temperature=config.temperature, top_p=config.top_p, mode=config.mode,
                                     stop=prompts.STOP_STRINGS)

    # ------------------------------------------------------------------ manifest
    def _manifest(self) -> dict:
        path = self.out / "run.json"
        described = self.backend.describe() if hasattr(self.backend, "describe") else {}
        fresh = {"harness": "mtpb", "harness_version": __version__,
                 "problems_digest": problems_digest(self.problems.values()),
                 "problem_digests": {str(p.id): problems_digest([p]) for p in self.problems.values()},
                 **{k: v for k, v in asdict(self.config).items() if k != "batch_size"},
                 "model": self.config.model or described.get("model"),
                 "parameters": described.get("parameters"), "backend_info": described,
                 "sandbox": getattr(self.sandbox, "name", None),
                 "problem_ids": sorted(self.problems), "started": now(), "finished": None}
        if not path.exists():
            return fresh
        old = load_json(path)
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
        new = not (self.out / "run.json").exists()
        try:
            self.out.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise RunDirError(f"--out {self.out}: cannot create the folder ({e.strerror or e}): "
                              "give a folder path you can write to") from None
        manifest = self._manifest()
        # everything is read and checked before run.json is touched: a refused resume changes nothing
        for name in ("samples.jsonl", "results.jsonl"):
            repair_tail(self.out / name)  # a line torn by kill -9 is dropped and redone
        sampled, executed = self._keys("samples.jsonl"), self._keys("results.jsonl")
        records = self._problem_records()
        write_json_atomic(self.out / "run.json", manifest)
        write_jsonl_atomic(self.out / PROBLEMS_FILE, records)
        try:
            self._loop(sampled, executed)
        except BaseException:
            if new:
                self._forget_empty_run()
            raise
        manifest["finished"] = now()
        write_json_atomic(self.out / "run.json", manifest)
        # breakdowns over every problem of the run, those of earlier invocations (other --ids) too
        return write_summary(self.out, {**{p.id: p for p in map(problem_from_record, records)}, **self.problems})

    def _problem_records(self) -> list[dict]:
        """problems.jsonl as it will be: what earlier invocations recorded, updated with this one's problems
        (their digests were checked against run.json already, so only names and categories can change)."""
        path, records = self.out / PROBLEMS_FILE, {}
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

    def _forget_empty_run(self):
        """A new run that failed before its first sample (say, a backend refusing the mode) leaves no
        run.json behind, so the corrected command can use the same --out."""
        files = [self.out / n for n in ("run.json", "samples.jsonl", "results.jsonl")]
        if any(f.exists() and f.stat().st_size for f in files[1:]):
            return
        files.append(self.out / PROBLEMS_FILE)
        for f in files:
            f.unlink(missing_ok=True)

    def _keys(self, name: str) -> set:
        path, keys = self.out / name, set()
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
        samples = JsonlWriter(self.out / "samples.jsonl")
        results = JsonlWriter(self.out / "results.jsonl")
        try:
            # samples whose programs were never executed (a crash between the two steps)
            orphans = (r for _, r in read_jsonl(self.out / "samples.jsonl")
                       if self._key(r) not in executed and self._key(r)[0] in self.problems)
            for batch in _chunks(orphans, 64):
                self._execute(batch, results)
            todo = (Item(self.problems[p], t, s) for p, t, s in todo_items)
            for batch in _chunks(todo, self._batch_size()):
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
        mode = self.config.mode
        states = []
        for item in items:
            test = item.problem.tests[item.test_index]
            states.append({"item": item, "prompts": item.problem.prompts(test),
                           "solutions": item.problem.solutions(test), "context": prompts.PREFIX,
                           "messages": [], "turns": []})
        if mode == "single":
            for st in states:
                st["prompts"] = [prompts.single_prompt(st["prompts"])]
                if st["solutions"] is not None:
                    st["solutions"] = ["\n".join(st["solutions"])]
        n_turns = max(len(st["prompts"]) for st in states)
        for turn in range(n_turns):
            active = [st for st in states if turn < len(st["prompts"])]
            requests = [self._request(st, turn) for st in active]
            completions = self.backend.generate(requests, self.params)
            if len(completions) != len(requests):
                raise RunDirError(f"backend returned {len(completions)} completions for {len(requests)} requests")
            for st, raw in zip(active, completions):
                self._advance(st, turn, raw)
        return [self._sample_record(st) for st in states]

    def _request(self, st: dict, turn: int) -> Request:
        item, prompt = st["item"], st["prompts"][turn]
        budget = self.config.max_gen_length or item.problem.max_gen_length
        if self.config.mode == "single":
            budget = prompts.single_budget(budget, len(item.problem.turns))
        solution = st["solutions"][turn] if st["solutions"] is not None else None
        if self.config.mode == "chat":
            st["messages"].append({"role": "user", "content": prompt})
        return Request(context=st["context"] + (prompts.wrap_prompt(prompt) if self.config.mode != "chat" else ""),
                       max_tokens=budget, seed=item_seed(self.config.seed, *item.key),
                       problem_id=item.problem.id, test_index=item.test_index, sample_index=item.sample_index,
                       turn_index=turn, solution=solution if self.config.mode != "chat" else
                       (None if solution is None else f"```python\n{solution}\n```"),
                       messages=tuple(st["messages"]))

    def _advance(self, st: dict, turn: int, raw: str):
        prompt = st["prompts"][turn]
        if self.config.mode == "chat":
            st["messages"].append({"role": "assistant", "content": raw})
            completion = prompts.extract_code(raw)
            st["context"] += completion + "\n\n"
        else:
            completion = prompts.truncate(raw, self.config.mode)
            st["context"] += prompts.wrap_prompt(prompt) + completion + "\n\n"
        st["turns"].append({"prompt": prompt, "raw": raw, "completion": completion})

    def _sample_record(self, st: dict) -> dict:
        item = st["item"]
        return {"problem_id": item.problem.id, "test_index": item.test_index, "sample_index": item.sample_index,
                "mode": self.config.mode, "turns": st["turns"], "program": st["context"]}

    # ------------------------------------------------------------------ execution
    def _execute(self, records: list[dict], results: JsonlWriter):
        replies = self.sandbox.run([r["program"] for r in records])
        for record, reply in zip(records, replies):
            problem = self.problems[int(record["problem_id"])]
            expected = problem.tests[int(record["test_index"])].output
            results.write(result_record(record, reply, expected, self.config.scoring))
        results.checkpoint()
        if self.progress:
            self.progress.advance(len(records))


def result_record(record: dict, reply: dict, expected, scoring: str) -> dict:
    v = verdict(reply, expected, scoring)
    return {"problem_id": record.get("problem_id"), "test_index": record.get("test_index"),
            "sample_index": record.get("sample_index"), "status": v.status, "passed": v.passed,
            "printed": v.printed, "expected": repr(expected), "error": v.error,
            "seconds": reply.get("seconds"), "stdout": (reply.get("stdout") or "")[:1000]}


def _chunks(iterable, size: int):
    it = iter(iterable)
    while batch := list(itertools.islice(it, size)):
        yield batch
