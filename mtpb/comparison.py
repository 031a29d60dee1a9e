"""Load run directories into one Comparison: the runs, every executed program, per-problem rates,
example programs and the warnings a reader needs (incomplete runs, differing settings, unknown problems).

pandas is imported inside the functions that need it, so importing this module is cheap.
"""
from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mtpb.metrics import difficulty_of, problem_rate
from mtpb.perplexity import read_perplexity
from mtpb.rundir import PROBLEMS_FILE, RunDir, RunDirError, read_jsonl
from mtpb.scoring import STATUSES

UNKNOWN = "unknown"


@dataclass(frozen=True)
class RunInfo:
    path: str
    label: str                  # unique short name of the run in tables and legends
    model: str
    parameters: int | None
    mode: str
    n: int | None
    temperature: float | None
    top_p: float | None = None
    seed: int | None = None
    backend: str = ""
    scoring: str = ""
    sandbox: str = ""
    problems_digest: str = ""
    harness_version: str = ""
    started: str = ""
    finished: str = ""


@dataclass(frozen=True)
class ProblemInfo:
    id: int
    name: str
    category: str
    n_turns: int
    prompts: tuple[str, ...]    # templates from the suite, else the rendered prompts of one sample
    description: str = ""
    known: bool = True          # False: not in the loaded suite, shown from samples.jsonl
    digest: str = ""            # problems_digest([problem]) of the description shown, "" when unknown


@dataclass(frozen=True)
class Example:
    run: str
    problem_id: int
    test_index: int
    sample_index: int
    status: str
    printed: str | None
    expected: str | None
    error: str | None
    program: str | None         # None when samples.jsonl has no line for it


@dataclass(frozen=True)
class Comparison:
    runs: tuple[RunInfo, ...]
    programs: Any               # DataFrame, one row per executed program: run, problem_id, test_index, sample_index, status, passed
    rates: Any                  # DataFrame, one row per (run, problem): rate, programs, category, n_turns, difficulty
    problems: dict[int, ProblemInfo]
    examples: dict[tuple[str, int], tuple[Example, ...]]
    warnings: tuple[str, ...] = field(default=())
    perplexity: dict[str, dict] = field(default_factory=dict)   # run label -> its perplexity.json


# ---------------------------------------------------------------- reading a run directory

def read_manifest(run_dir: str | Path) -> dict:
    run = RunDir(run_dir)
    if not run.path.is_dir():
        raise RunDirError(f"{run_dir}: no such run directory: give the folder that `mtpb run --out` wrote")
    manifest = run.read_manifest()
    if manifest is None:
        raise RunDirError(f"{run.manifest}: missing: this is not a run directory, or its run never started "
                          f"(rerun `mtpb run ... --out {run_dir}`)")
    return manifest


def _as_int(value) -> int | None:
    try:
        return None if value is None or isinstance(value, bool) else int(value)
    except (TypeError, ValueError):
        return None


def _as_float(value) -> float | None:
    try:
        return None if value is None or isinstance(value, bool) else float(value)
    except (TypeError, ValueError):
        return None


def run_info(manifest: dict, path: str, label: str) -> RunInfo:
    text = lambda key: "" if manifest.get(key) is None else str(manifest[key])  # noqa: E731
    return RunInfo(
        path=str(path), label=label, model=text("model") or text("backend") or label,
        parameters=_as_int(manifest.get("parameters")), mode=text("mode") or "multi",
        n=_as_int(manifest.get("n")), temperature=_as_float(manifest.get("temperature")),
        top_p=_as_float(manifest.get("top_p")), seed=_as_int(manifest.get("seed")),
        backend=text("backend"), scoring=text("scoring"), sandbox=text("sandbox"),
        problems_digest=text("problems_digest"),
        harness_version=text("harness_version") or text("version"),
        started=text("started"), finished=text("finished"))


def _key(obj: dict) -> tuple[int, int, int] | None:
    ids = tuple(_as_int(obj.get(k)) for k in ("problem_id", "test_index", "sample_index"))
    return None if None in ids else ids


def load_results(run_dir: str | Path, warnings: list[str]):
    """(DataFrame of problem_id, test_index, sample_index, status, passed, row; details by row)."""
    import pandas as pd

    path = RunDir(run_dir).results
    if not path.exists():
        raise RunDirError(f"{path}: missing: the run's programs were never executed "
                          f"(continue the run with the same `mtpb run` command, or `mtpb execute`)")
    from mtpb.diagnose import read_diagnoses, standing
    diagnoses = read_diagnoses(Path(run_dir))
    cols = {"problem_id": [], "test_index": [], "sample_index": [], "status": [], "passed": [],
            "broke_at_turn": [], "broke_how": []}
    details, unusable = [], 0
    for _, obj in read_jsonl(path, warnings):
        key = _key(obj)
        status = obj.get("status")
        passed = obj.get("passed")
        if key is None or (passed is None and status is None):
            unusable += 1
            continue
        passed = bool(passed) if passed is not None else status == "passed"
        status = str(status) if status else ("passed" if passed else "failed")
        for name, value in zip(("problem_id", "test_index", "sample_index"), key):
            cols[name].append(value)
        cols["status"].append(status)
        cols["passed"].append(passed)
        # `mtpb diagnose` wrote where this very result (same status) broke; a result carries it too
        d = standing(diagnoses.get(key), status) or obj
        cols["broke_at_turn"].append(_as_int(d.get("broke_at_turn")))
        cols["broke_how"].append(d.get("broke_how") if isinstance(d.get("broke_how"), str) else None)
        details.append((obj.get("printed"), obj.get("expected"), obj.get("error")))
    if unusable:
        warnings.append(f"{path}: {unusable} line(s) lack problem_id, test_index, sample_index or "
                        f"status/passed and were skipped")
    frame = pd.DataFrame(cols).astype({"problem_id": "int64", "test_index": "int64",
                                       "sample_index": "int64", "passed": "bool", "broke_at_turn": "Int64"})
    frame["row"] = range(len(frame))
    # A resumed run may execute a program again; the last verdict is the one that stands.
    before = len(frame)
    frame = frame.drop_duplicates(["problem_id", "test_index", "sample_index"], keep="last")
    if len(frame) < before:
        warnings.append(f"{path}: {before - len(frame)} duplicate result(s); the last of each is used")
    return frame, details


_ID_RE = {k: re.compile(rf'"{k}"\s*:\s*(-?\d+)') for k in ("problem_id", "test_index", "sample_index")}


def _sample_key(line: str) -> tuple[int, int, int] | None:
    """The key of a samples.jsonl line without parsing it: a raw `"problem_id":` cannot occur inside
    a JSON string (quotes there are escaped), and full parsing of every program is the slow part."""
    found = [r.search(line) for r in _ID_RE.values()]
    return None if None in found else tuple(int(m.group(1)) for m in found)


def scan_samples(run_dir: str | Path, wanted: set, warnings: list[str]):
    """Programs of the wanted (problem, test, sample) keys, and one sample's turns per problem."""
    path = RunDir(run_dir).samples
    programs, turns, lines, bad = {}, {}, 0, 0
    if not path.exists():
        warnings.append(f"{path}: missing: example programs of this run are not shown")
        return programs, turns, 0
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            if not line.strip():
                continue
            lines += 1
            key = _sample_key(line)
            if key is not None and key not in wanted and key[0] in turns:
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                obj = None
            key = _key(obj) if isinstance(obj, dict) else None
            if key is None:
                bad += 1
                continue
            if key in wanted:
                programs[key] = obj.get("program")
            if key[0] not in turns and isinstance(obj.get("turns"), list):
                turns[key[0]] = obj["turns"]
    if bad:
        warnings.append(f"{path}: {bad} malformed line(s) skipped: fix or delete them")
    return programs, turns, lines


def choose_examples(frame, per_problem: int) -> list[tuple[int, int, int]]:
    """Up to `per_problem` keys per problem: the first passing program, then the first program of
    each failing status, most frequent status first (so a reader sees the typical failure)."""
    if per_problem <= 0 or frame.empty:
        return []
    ordered = frame.sort_values(["problem_id", "test_index", "sample_index"], kind="stable")
    counts = ordered.groupby(["problem_id", "status"], observed=True).size().to_dict()
    firsts = ordered.drop_duplicates(["problem_id", "status"])
    keys = []
    for pid, group in firsts.groupby("problem_id", sort=True):
        rank = lambda row: (row.status != "passed", -counts[(pid, row.status)], row.status)  # noqa: E731
        rows = sorted(group.itertuples(index=False), key=rank)[:per_problem]
        keys += [(int(r.problem_id), int(r.test_index), int(r.sample_index)) for r in rows]
    return keys


# ---------------------------------------------------------------- problems

def load_suite(problems_paths, warnings: list[str]) -> dict:
    """Problems by id; a broken file is skipped with a warning (the suite may be mid-edit)."""
    from mtpb.problems import ProblemError, load_problem, problem_files

    try:
        files = problem_files(problems_paths)
    except ProblemError as e:
        warnings.append(f"problems: {e.errors[0]}")
        return {}
    suite, bad = {}, []
    for path in files:
        try:
            problem = load_problem(path)
        except ProblemError as e:
            bad.append(e.errors[0])
            continue
        suite.setdefault(problem.id, problem)
    if bad:
        warnings.append(f"{len(bad)} problem file(s) could not be loaded and are shown from the "
                        f"samples instead; first: {bad[0]}")
    return suite


def problem_info(pid: int, suite: dict, sample_turns: list) -> ProblemInfo:
    from mtpb.problems import problems_digest

    problem = suite.get(pid)
    if problem is not None:
        return ProblemInfo(pid, problem.name, problem.category, len(problem.turns),
                           tuple(t.prompt for t in problem.turns), problem.description,
                           digest=problems_digest([problem]))
    prompts = tuple(str(t.get("prompt", "")) for t in sample_turns if isinstance(t, dict))
    return ProblemInfo(pid, f"problem {pid}", UNKNOWN, max(len(prompts), 1), prompts, known=False)


def read_run_problems(run_dir, warnings: list[str]) -> dict[int, ProblemInfo] | None:
    """The problems a run recorded in its problems.jsonl, by id; None for a run without one
    (made before runs described their problems)."""
    path = RunDir(run_dir).problems
    if not path.exists():
        return None
    described = {}
    for lineno, record in read_jsonl(path, warnings):
        pid, turns = _as_int(record.get("id")), record.get("turns")
        if pid is None or not isinstance(turns, list):
            warnings.append(f"{path}:{lineno}: no integer id or no list of turns: line skipped")
            continue
        prompts = tuple(str(t.get("prompt", "")) if isinstance(t, dict) else str(t) for t in turns)
        text = lambda key, default="": str(record.get(key) or default)  # noqa: E731
        described[pid] = ProblemInfo(pid, text("name", f"problem {pid}"), text("category", UNKNOWN),
                                     max(len(prompts), 1), prompts, text("description"), digest=text("digest"))
    return described


def _shown(ids) -> str:
    ids = sorted(ids)
    return ", ".join(map(str, ids[:10])) + (" ..." if len(ids) > 10 else "")


def describe_problems(runs: list[tuple[str, dict | None, dict, set]], problems_paths, sample_turns: dict,
                      warnings: list[str]) -> dict[int, ProblemInfo]:
    """The description of each problem id in the runs: from --problems when given, else from the
    runs' own problems.jsonl. Only runs without one (made before runs recorded their problems) are
    labelled from the problem files, with a warning; an id no source describes is shown as unknown.
    runs: (label, recorded problems or None, run.json's problem_digests, problem ids with results)."""
    source = "--problems" if problems_paths else "the bundled suite and $MTPB_PROBLEMS"
    override = load_suite(problems_paths, warnings) if problems_paths else {}
    undescribed = set()   # ids of the runs without problems.jsonl
    for label, recorded, _, ids in runs:
        if recorded is None:
            undescribed |= ids
            warnings.append(f"{label}: no {PROBLEMS_FILE} (a run made before runs recorded their problems): "
                            f"its problems are labelled from {source}, which may not be what it ran")
    fallback = override if problems_paths else load_suite(None, warnings) if undescribed else {}
    problems, disputed, mislabelled = {}, [], {}
    for pid in sorted(set().union(*(ids for *_, ids in runs))):
        own = {label: recorded[pid] for label, recorded, _, _ in runs if recorded and pid in recorded}
        if pid in override:
            info, where = problem_info(pid, override, []), "--problems"
        elif own:
            first = next(iter(own))
            info, where = own[first], f"{first}'s {PROBLEMS_FILE}"
        else:
            info, where = problem_info(pid, fallback if pid in undescribed else {}, sample_turns.get(pid, [])), source
        problems[pid] = info
        if len({(i.digest, i.name) for i in own.values()}) > 1:
            disputed.append(f"problem {pid} is not the same in all runs ("
                            + "; ".join(f"{label}: {i.name!r}, digest {i.digest}" for label, i in own.items())
                            + f"): their results for it are not comparable; labelled {info.name!r}")
        for label, _, digests, ids in runs:   # what a run ran vs the description it is labelled with
            if pid not in ids or not info.known or (label in own and pid not in override):
                continue                      # (the runs' own records among themselves: just above)
            ran = own[label].digest if label in own else str(digests.get(str(pid), ""))
            if ran and info.digest and ran != info.digest:
                mislabelled.setdefault((label, where), []).append(pid)
    warnings += disputed[:5]
    if len(disputed) > 5:
        warnings.append(f"... and {len(disputed) - 5} more problem ids that differ between the runs")
    for (label, where), ids in mislabelled.items():
        warnings.append(f"{label}: problem(s) {_shown(ids)} are labelled from {where}, but the run ran other text "
                        "(prompts, tests or max_gen_length differ): their names, categories and turns may be wrong")
    return problems


# ---------------------------------------------------------------- loading a comparison

def _labels(run_dirs) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    paths = [Path(d).resolve() for d in run_dirs]
    names = [p.name or str(p) for p in paths]
    labels = [f"{p.parent.name}/{p.name}" if names.count(name) > 1 else name
              for p, name in zip(paths, names)]
    seen: dict[str, int] = {}
    for i, label in enumerate(labels):
        seen[label] = seen.get(label, 0) + 1
        if seen[label] > 1:
            labels[i] = f"{label}#{seen[label]}"
    return labels


def _load_run(run_dir, label: str, examples_per_problem: int, warnings: list[str]):
    """(RunInfo, programs frame, examples by problem, one sample's turns by problem) of one run."""
    manifest = read_manifest(run_dir)
    info = run_info(manifest, run_dir, label)
    frame, details = load_results(run_dir, warnings)
    keys = choose_examples(frame, examples_per_problem)
    if manifest.get("command") == "execute":  # its programs are in the samples file it scored, not here
        programs, turns, n_samples = {}, {}, 0
    else:
        programs, turns, n_samples = scan_samples(run_dir, set(keys), warnings)
    if n_samples > len(frame):
        warnings.append(f"{label}: {n_samples - len(frame)} of {n_samples} samples have no result "
                        f"yet (run incomplete): rates are over the executed programs")
    if frame.empty:
        warnings.append(f"{label}: {RunDir(run_dir).results} has no results")
    by_key = frame.set_index(["problem_id", "test_index", "sample_index"])
    examples: dict[int, list[Example]] = {}
    for key in keys:
        row = by_key.loc[key]
        printed, expected, error = details[int(row["row"])]
        examples.setdefault(key[0], []).append(Example(
            label, *key, status=row["status"], printed=printed, expected=expected,
            error=error, program=programs.get(key)))
    return info, frame.drop(columns="row").assign(run=label), examples, turns


def load_comparison(run_dirs, problems_paths=None, examples_per_problem: int = 2) -> Comparison:
    import pandas as pd

    if not run_dirs:
        raise RunDirError("no run directories given: name at least one RUN folder")
    warnings: list[str] = []
    runs, frames, examples, sample_turns, described = [], [], {}, {}, []
    for run_dir, label in zip(run_dirs, _labels(run_dirs)):
        info, frame, run_examples, turns = _load_run(run_dir, label, examples_per_problem, warnings)
        runs.append(info)
        frames.append(frame)
        digests = read_manifest(run_dir).get("problem_digests")
        described.append((label, read_run_problems(run_dir, warnings), digests if isinstance(digests, dict) else {},
                          set(frame["problem_id"].tolist())))
        examples.update({(label, pid): tuple(v) for pid, v in run_examples.items()})
        for pid, t in turns.items():
            # Prefer the longest turn list seen: a single-turn run folds all prompts into one.
            if len(t) > len(sample_turns.get(pid, ())):
                sample_turns[pid] = t
    labels = [r.label for r in runs]
    programs = pd.concat(frames, ignore_index=True)
    programs["run"] = pd.Categorical(programs["run"], categories=labels, ordered=True)
    programs["status"] = programs["status"].astype("category")

    problems = describe_problems(described, problems_paths, sample_turns, warnings)
    unknown = [pid for pid, info in problems.items() if not info.known]
    if unknown:
        warnings.append(f"{len(unknown)} problem(s) not in the loaded problem files ({_shown(unknown)}): category "
                        f"unknown, prompts taken from samples.jsonl (use --problems PATH to load them)")
    rates = problem_rates(programs, problems)
    warnings += comparability_warnings(runs, rates)
    perplexity = {}
    for run_dir, label in zip(run_dirs, labels):
        try:
            found = read_perplexity(Path(run_dir))
        except RunDirError as e:
            warnings.append(f"{label}: {e}")
            continue
        if found is not None:
            perplexity[label] = found
    return Comparison(tuple(runs), programs, rates, problems, examples, tuple(warnings), perplexity)


def problem_rates(programs, problems: dict):
    """One row per (run, problem): rate (percent), programs, category, n_turns, difficulty."""
    rates = (programs.groupby(["run", "problem_id"], observed=True)["passed"]
             .agg(rate="sum", programs="size").reset_index())
    rates["rate"] = problem_rate(rates["programs"], rates["rate"])  # from the count of passed programs
    rates["category"] = rates["problem_id"].map(lambda p: problems[p].category)
    rates["n_turns"] = rates["problem_id"].map(lambda p: problems[p].n_turns)
    # Difficulty comes from the compared runs themselves: the mean over the runs that have the problem.
    mean = rates.groupby("problem_id")["rate"].mean()
    rates["difficulty"] = rates["problem_id"].map(mean.map(difficulty_of))
    return rates


def comparability_warnings(runs, rates) -> list[str]:
    """Runs that differ in problems or settings are still compared; the reader is told how."""
    out = []
    for name, attr in (("problems digest", "problems_digest"), ("n", "n"), ("temperature", "temperature"),
                       ("top_p", "top_p"), ("scoring rules", "scoring"),
                       ("harness version", "harness_version")):
        values = {getattr(r, attr) for r in runs}
        if len(values) > 1:
            listed = "; ".join(f"{r.label}: {getattr(r, attr)}" for r in runs)
            out.append(f"the runs differ in {name} ({listed}): their numbers are not strictly comparable")
    covered = {label: set(group["problem_id"]) for label, group in rates.groupby("run", observed=True)}
    everything = set().union(*covered.values()) if covered else set()
    for r in runs:
        have = covered.get(r.label, set())
        if have != everything:
            out.append(f"{r.label} covers {len(have)} of the {len(everything)} problems in this report: "
                       f"its pass rate is over its own problems")
    return out
