"""The HTML comparison report over run directories: what it shows, rendered, written to a file.

The report is one self-contained file (inline CSS, JS and SVG, drawn by mtpb.charts) so it can be
mailed or archived and opened offline. jinja2 and pandas are imported inside functions (the CLI
imports this lazily). The terminal's version of the headline table is mtpb.terminal.
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from pathlib import Path

from mtpb import __version__
from mtpb.aggregate import (break_turns, breakdown, mode_pairs, pass_at_k_curve, perplexity_correlations,
                            perplexity_points, perplexity_table, status_counts, summary_table)
from mtpb.charts import (RUN_COLORS, bar_chart, heat_color, legend, line_chart, mode_color, scatter_chart,
                         size_chart)
from mtpb.comparison import Comparison, load_comparison
from mtpb.formatting import fmt_num, fmt_params, fmt_pct, short_model
from mtpb.metrics import DIFFICULTY_BINS
from mtpb.paths import data_path
from mtpb.rundir import RunDirError
from mtpb.scoring import STATUSES

EXAMPLES_PER_PROBLEM = 2  # one passing and the most frequent failure: enough to see why, small files
# One bar chart each, in this order: (column of the per-problem rates, title).
BREAKDOWNS = (("n_turns", "Pass rate by number of turns"), ("category", "Pass rate by category"),
              ("difficulty", "Pass rate by difficulty"))


def build_context(cmp: Comparison) -> dict:
    """Everything the template shows, already formatted: the template only lays it out."""
    summary = summary_table(cmp)
    ks = [c for c in summary.columns if c.startswith("pass@")]
    colors = {r.label: RUN_COLORS[i % len(RUN_COLORS)] for i, r in enumerate(cmp.runs)}
    rows = [_summary_row(rec, ks, colors) for rec in summary.to_dict("records")]
    run_series = [(r.label, colors[r.label]) for r in cmp.runs]
    charts = [*_size_charts(rows), *(_breakdown_chart(cmp, by, title, run_series) for by, title in BREAKDOWNS),
              *_mode_charts(cmp)]
    charts.append(_pass_at_k_chart(cmp, colors))
    return {"title": "mtpb comparison report", "version": __version__,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "runs": cmp.runs, "rows": rows, "ks": ks, "charts": charts,
            "statuses": _status_rows(cmp, colors), "perplexity": _perplexity(cmp, colors),
            "breaks": _breaks(cmp, colors),
            "warnings": cmp.warnings, "heatmap": _heatmap(cmp, colors),
            "problems": _problem_details(cmp, colors), "run_colors": colors}


def _summary_row(rec: dict, ks: list[str], colors: dict) -> dict:
    return {**rec, "color": colors[rec["run"]], "params_text": fmt_params(rec["parameters"]),
            "model_text": short_model(rec["model"]),
            "rate_text": fmt_pct(rec["pass_rate"]),
            "ci_text": f"[{fmt_pct(rec['ci_low'])}, {fmt_pct(rec['ci_high'])}]",
            "ks": [(rec[k], fmt_pct(rec[k])) for k in ks],
            "n_text": fmt_num(rec["n"]), "t_text": fmt_num(rec["temperature"])}


def _size_charts(rows: list[dict]) -> list[dict]:
    """Pass rate against model size, one line per mode; none when no run knows its size."""
    from markupsafe import Markup

    sized = [r for r in rows if r["parameters"] and r["parameters"] > 0]
    if not sized:
        return []
    points = [{"label": r["run"], "x": r["parameters"], "y": r["pass_rate"], "low": r["ci_low"],
               "high": r["ci_high"], "series": r["mode"],
               "color": mode_color(r["mode"])} for r in sized]
    modes = list(dict.fromkeys(r["mode"] for r in sized))
    missing = [r["run"] for r in rows if r not in sized]
    return [{"id": "chart-size", "title": "Pass rate by model size",
             "svg": Markup(size_chart("Pass rate against parameters", points)),
             "legend": legend([(m, mode_color(m)) for m in modes]),
             "note": ("Bars are 95% bootstrap intervals over problems. Not plotted "
                      f"(parameters unknown): {', '.join(missing)}" if missing else
                      "Bars are 95% bootstrap intervals over problems.")}]


def _breakdown_chart(cmp: Comparison, by: str, title: str, run_series: list[tuple[str, str]]) -> dict:
    from markupsafe import Markup

    table = breakdown(cmp, by)
    values = {(g, r): v for r, g, v in zip(table["run"], table[by], table["pass_rate"])}
    # Difficulty levels keep breakdown()'s order (easy to unsolved); other values sort as text.
    groups = list(dict.fromkeys(table[by])) if by == "difficulty" else sorted(set(table[by]), key=str)
    return {"id": f"chart-{by}", "title": title, "legend": legend(run_series),
            "svg": Markup(bar_chart(title, groups, run_series, lambda g, s: values.get((g, s)))),
            "note": _breakdown_note(by, table)}


def _mode_charts(cmp: Comparison) -> list[dict]:
    """Multi-turn against single-turn per model; none when no model was run in both modes."""
    from markupsafe import Markup

    pairs = mode_pairs(cmp)
    if pairs.empty:
        return []
    modes = [("single", mode_color("single")), ("multi", mode_color("multi"))]
    by_model = {short_model(m): rec for m, rec in zip(pairs["model"], pairs.to_dict("records"))}
    return [{"id": "chart-modes", "title": "Multi-turn vs single-turn, per model",
             "legend": legend(modes), "wide": True,
             "svg": Markup(bar_chart("Multi-turn against single-turn pass rate per model",
                                     list(by_model), modes, lambda g, s: by_model[g][s])),
             "note": "Each model's pair is over the problems both modes cover.",
             "pairs": [{**p, "params_text": fmt_params(p["parameters"]), "model_text": short_model(p["model"]),
                        "text": {k: fmt_pct(p[k]) for k in
                                 ("multi", "single", "difference", "ci_low", "ci_high")}}
                       for p in pairs.to_dict("records")]}]


def _pass_at_k_chart(cmp: Comparison, colors: dict) -> dict:
    from markupsafe import Markup

    curve = pass_at_k_curve(cmp)
    series = [(r.label, colors[r.label], {int(k): v for k, v in zip(g["k"], g["pass_at_k"])})
              for r in cmp.runs for _, g in [(r.label, curve[curve["run"] == r.label])] if len(g)]
    ks = sorted(set(curve["k"].tolist())) or [1]
    return {"id": "chart-pass-at-k", "title": "pass@k for k = 1 … n",
            "svg": Markup(line_chart("pass@k against k", ks, series, "k")),
            "legend": legend([(s[0], s[1]) for s in series]),
            "note": "Unbiased estimator per (problem, test case), mean over test cases, then over problems; "
                    "up to the fewest samples of any test case of the run."}


def _status_rows(cmp: Comparison, colors: dict) -> dict:
    from mtpb.scoring import STATUSES

    table = status_counts(cmp)
    columns = [c for c in table.columns if c not in ("run", "programs")]
    rows = [{"run": rec["run"], "color": colors[rec["run"]], "programs": rec["programs"],
             "counts": [(c, int(rec[c]), f"{100 * rec[c] / rec['programs']:.1f}" if rec["programs"] else "—")
                        for c in columns]}
            for rec in table.to_dict("records")]
    return {"columns": columns, "rows": rows, "known": STATUSES}


def _perplexity(cmp: Comparison, colors: dict) -> dict | None:
    """The paper's section 4: prompt perplexity per mode, and how it goes with the pass rate."""
    from markupsafe import Markup

    table = perplexity_table(cmp)
    if table.empty:
        return None
    points = perplexity_points(cmp)
    corr = perplexity_correlations(points)
    num = lambda v, d=2: "—" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.{d}f}"  # noqa: E731
    rows = [{**rec, "model_text": short_model(rec["model"]), "color": colors[rec["run"]],
             "params_text": fmt_params(rec["parameters"]),
             "text": {k: num(rec[k]) for k in ("single", "multi", "difference")}}
            for rec in table.to_dict("records")]
    corr_rows = [{**rec, "text": {k: num(rec[k]) for k in ("pearson", "spearman")}} for rec in corr.to_dict("records")]
    scatter = None
    if not points.empty:
        # colour: the run; filled: multi-turn, hollow: single-turn
        dots = [{"label": f"{r['run']} {r['mode']}, problem {r['problem_id']}", "x": r["perplexity"],
                 "y": r["pass_rate"], "color": colors[r["run"]], "hollow": r["mode"] != "multi"}
                for r in points.to_dict("records")]
        runs = list(dict.fromkeys(points["run"]))
        scatter = {"svg": Markup(scatter_chart("Pass rate against prompt perplexity, per problem", dots,
                                               "prompt perplexity (log scale)")),
                   "legend": legend([(r, colors[r]) for r in runs]),
                   "note": "Filled dots: multi-turn perplexity; hollow: single-turn."}
    return {"rows": rows, "correlations": corr_rows, "scatter": scatter}


def _breaks(cmp: Comparison, colors: dict) -> dict | None:
    """Failed programs by the turn where they broke, per run (columns: turn 1 … the most turns)."""
    table = break_turns(cmp)
    if table.empty:
        return None
    diagnosed = table[table["broke_how"] != "not diagnosed"]
    turns = sorted({int(t) for t in diagnosed["turn"].dropna()})
    rows = []
    for run in cmp.runs:
        mine = table[table["run"] == run.label]
        if mine.empty:
            continue
        per_turn = {t: int(mine.loc[mine["turn"].apply(lambda v, t=t: v is not None and v == v and int(v) == t),
                                    "programs"].sum()) for t in turns}
        kinds = (mine[mine["broke_how"] != "not diagnosed"].groupby("broke_how")["programs"].sum()
                 .sort_values(ascending=False))
        rows.append({"run": run.label, "mode": run.mode, "color": colors[run.label],
                     "turns": [per_turn[t] for t in turns],
                     "pending": int(mine.loc[mine["broke_how"] == "not diagnosed", "programs"].sum()),
                     "kinds": ", ".join(f"{k} {v}" for k, v in kinds.head(4).items())})
    return {"turns": turns, "rows": rows}


def _breakdown_note(by: str, table) -> str:
    if by == "difficulty":
        counts = table.groupby("difficulty")["problems"].max()
        return (f"Problems binned by their mean pass rate over the compared runs: {difficulty_levels_text()}. "
                "Problems per level: " + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    return "Mean over problems of the per-problem pass rate."


def difficulty_levels_text(bins=DIFFICULTY_BINS) -> str:
    """The bins in words ("easy ≥ 70%, medium 30–70%, ..."), written from the bins themselves so the
    note cannot disagree with how problems were binned."""
    parts, upper = [], None
    for name, lowest in bins:
        if upper is None:
            parts.append(f"{name} ≥ {lowest:.0f}%")
        elif lowest == -math.inf:  # the bin under every positive rate: 0% in every run
            parts.append(f"{name} 0% in every run")
        elif round(lowest) == 0:   # a bound just above zero: any rate that is not 0
            parts.append(f"{name} below {upper:.0f}%")
        else:
            parts.append(f"{name} {lowest:.0f}–{upper:.0f}%")
        upper = lowest
    return ", ".join(parts)


def _heatmap(cmp: Comparison, colors: dict) -> dict:
    wide = cmp.rates.pivot(index="problem_id", columns="run", values="rate")
    labels = [r.label for r in cmp.runs]
    rows = []
    for pid in wide.index:
        info = cmp.problems[pid]
        cells = []
        for label in labels:
            v = wide.at[pid, label] if label in wide.columns else math.nan
            if math.isnan(v):   # no run of this problem: a dot, unlike a measured 0
                cells.append({"v": "", "text": "·", "bg": "transparent", "fg": "#9aa3b2", "title": "no run"})
            else:
                bg, fg = heat_color(v)
                cells.append({"v": round(v, 3), "text": f"{v:.0f}", "bg": bg, "fg": fg})
        mean = wide.loc[pid].mean()
        rows.append({"id": pid, "name": info.name, "category": info.category, "turns": info.n_turns,
                     "mean": round(float(mean), 3), "mean_text": f"{mean:.0f}", "cells": cells})
    return {"labels": labels, "rows": rows}


def _problem_details(cmp: Comparison, colors: dict) -> list[dict]:
    statuses: dict = {}
    sizes = cmp.programs.groupby(["run", "problem_id", "status"], observed=True).size()
    for (run, pid, status), count in sizes.items():
        if count:
            statuses.setdefault((run, pid), {})[status] = int(count)
    rate = {(r, p): v for r, p, v in zip(cmp.rates["run"], cmp.rates["problem_id"], cmp.rates["rate"])}
    out = []
    for pid, info in cmp.problems.items():
        per_run = []
        for run in cmp.runs:
            if (run.label, pid) not in rate:
                continue
            counts = statuses.get((run.label, pid), {})
            per_run.append({"run": run.label, "color": colors[run.label],
                            "rate": fmt_pct(rate[(run.label, pid)]),
                            "counts": ", ".join(f"{k} {v}" for k, v in sorted(
                                counts.items(), key=lambda kv: _status_order(kv[0]))),
                            "examples": cmp.examples.get((run.label, pid), ())})
        out.append({"info": info, "runs": per_run})
    return out


def _status_order(status: str) -> tuple[int, str]:
    """The same status order in every run, so rows can be compared by eye."""
    return (STATUSES.index(status) if status in STATUSES else len(STATUSES), status)


def render_html(cmp: Comparison, benchmark_tables: dict | None = None) -> str:
    import jinja2

    folder = data_path("reports")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("report.html.j2")
    return template.render(**build_context(cmp), benchmarks=benchmark_tables,
                           css=(folder / "report.css").read_text(encoding="utf-8"),
                           js=(folder / "report.js").read_text(encoding="utf-8"))


def write_report(run_dirs: list[str], out: str, problems_paths: list[str] | None = None,
                 export_dir: str | None = None) -> dict:
    """Write the HTML report (and, with export_dir, its tables as CSV and LaTeX); returns path, bytes,
    seconds, the warnings it shows and the exported files."""
    start = time.perf_counter()
    path = Path(out)
    check_output(path)
    from mtpb import benchmarks
    compared, runs = benchmarks.split(run_dirs)  # HumanEval beside MTPB: the per-problem parts show MTPB
    cmp = load_comparison(compared, problems_paths, examples_per_problem=EXAMPLES_PER_PROBLEM)
    exported = []
    if export_dir is not None:
        from mtpb.export import export
        exported = [str(p) for p in export(cmp, export_dir)]
    data = render_html(cmp, benchmarks.tables(runs)).encode("utf-8")
    # Write then rename: a reader never sees half a report.
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        if tmp.is_file():
            tmp.unlink()
        raise RunDirError(f"-o {path}: cannot write the report ({e.strerror or e}): choose another path") from None
    return {"path": str(path), "bytes": len(data), "seconds": time.perf_counter() - start,
            "warnings": list(cmp.warnings), "exported": exported}


def check_output(path: Path) -> None:
    """Refuse an output that would overwrite anything but an earlier report (a run's run.json, a device)."""
    if not path.name or path.name in (".", ".."):
        raise RunDirError(f"-o {str(path)!r}: give a file name, e.g. -o report.html")
    if path.exists() and not (path.is_file() and _is_html(path)):
        raise RunDirError(f"-o {path}: exists and is not an HTML report: choose another path, or remove it")


def _is_html(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(64).lstrip().lower().startswith(b"<!doctype html")

