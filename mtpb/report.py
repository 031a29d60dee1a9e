"""HTML comparison report and terminal summary over run directories.

The report is one self-contained file (inline CSS, JS and SVG) so it can be mailed or archived and
opened offline. Charts are SVG drawn here in Python: they need no script to show, and the tests can
find them in the DOM. jinja2 and pandas are imported inside functions (the CLI imports this lazily).
"""
from __future__ import annotations

import math
import time
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Callable

from mtpb import __version__
from mtpb.aggregate import breakdown, mode_pairs, summary_table
from mtpb.comparison import STATUSES, Comparison, RunDataError, load_comparison
from mtpb.paths import data_path

# Tableau 10: distinct hues that stay apart for the common kinds of colour blindness.
RUN_COLORS = ("#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f",
              "#edc948", "#b07aa1", "#ff9da7", "#9c755f", "#bab0ac")
MODE_COLORS = {"multi": "#4e79a7", "single": "#f28e2b", "chat": "#59a14f"}
# Heatmap scale, 0% to 100%: pale to dark, readable without colour vision.
HEAT_STOPS = ((0.0, (255, 247, 236)), (0.5, (116, 169, 207)), (1.0, (8, 48, 107)))
EXAMPLES_PER_PROBLEM = 2  # one passing and the most frequent failure: enough to see why, small files
W, H = 640, 300                # chart viewBox; CSS scales it to the window
PAD_L, PAD_R, PAD_T, PAD_B = 48, 12, 12, 44


# ---------------------------------------------------------------- formatting

def fmt_params(n: int | None) -> str:
    if n is None:
        return "—"
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.3g}{unit}"
    return str(n)


def fmt_pct(x) -> str:
    return "—" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.1f}"


def fmt_num(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "—"
    return f"{x:g}" if isinstance(x, float) else str(x)


def heat_color(rate: float) -> tuple[str, str]:
    """(background, text colour) for a pass rate in percent."""
    t = min(max(rate / 100.0, 0.0), 1.0)
    for (t0, c0), (t1, c1) in zip(HEAT_STOPS, HEAT_STOPS[1:]):
        if t <= t1:
            f = (t - t0) / (t1 - t0)
            rgb = [round(a + (b - a) * f) for a, b in zip(c0, c1)]
            break
    light = 0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2]
    return "#%02x%02x%02x" % tuple(rgb), ("#000" if light > 140 else "#fff")


# ---------------------------------------------------------------- SVG charts

def _svg(title: str, body: list[str]) -> str:
    return (f'<svg class="chart" viewBox="0 0 {W} {H}" role="img" aria-label="{escape(title)}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{"".join(body)}</svg>')


def _y_axis(top: float = 100.0) -> tuple[list[str], Callable[[float], float]]:
    y = lambda v: PAD_T + (H - PAD_T - PAD_B) * (1 - v / top)  # noqa: E731
    out = []
    for tick in (0, 25, 50, 75, 100):
        out.append(f'<line class="grid" x1="{PAD_L}" x2="{W - PAD_R}" y1="{y(tick):.1f}" y2="{y(tick):.1f}"/>'
                   f'<text class="tick" x="{PAD_L - 6}" y="{y(tick) + 4:.1f}" text-anchor="end">{tick}%</text>')
    return out, y


def bar_chart(title: str, groups: list[str], series: list[tuple[str, str]], value) -> str:
    """Grouped bars: one group per x value, one bar per series (label, colour); value(g, s) in % or None."""
    body, y = _y_axis()
    width = (W - PAD_L - PAD_R) / max(len(groups), 1)
    bar = min(width * 0.8 / max(len(series), 1), 56.0)  # few bars: keep them bars, not slabs
    for gi, group in enumerate(groups):
        x0 = PAD_L + gi * width + (width - bar * len(series)) / 2
        for si, (name, color) in enumerate(series):
            v = value(group, name)
            if v is None:
                continue
            top = y(v)
            body.append(f'<rect x="{x0 + si * bar:.1f}" y="{top:.1f}" width="{max(bar - 1, 1):.1f}" '
                        f'height="{max(y(0) - top, 0.5):.1f}" fill="{color}"><title>{escape(name)}, '
                        f'{escape(str(group))}: {v:.1f}%</title></rect>')
        label = str(group) if len(str(group)) <= 14 else str(group)[:13] + "…"
        body.append(f'<text class="tick" x="{PAD_L + (gi + 0.5) * width:.1f}" y="{H - PAD_B + 16}" '
                    f'text-anchor="middle">{escape(label)}</text>')
    return _svg(title, body)


def size_chart(title: str, points: list[dict]) -> str:
    """Pass rate against parameters on a log axis; points with label, x, y, low, high, series, color.
    Points of one series are joined in size order (one line per mode)."""
    body, y = _y_axis()
    xs = [p["x"] for p in points]
    lo, hi = math.floor(math.log10(min(xs))), math.ceil(math.log10(max(xs)))
    if hi == lo:  # all sizes an exact power of ten: widen so the points sit inside the axis
        lo, hi = lo - 1, hi + 1
    x = lambda v: PAD_L + 10 + (W - PAD_L - PAD_R - 20) * (math.log10(v) - lo) / (hi - lo)  # noqa: E731
    for e in range(lo, hi + 1):
        body.append(f'<line class="grid" x1="{x(10 ** e):.1f}" x2="{x(10 ** e):.1f}" y1="{PAD_T}" '
                    f'y2="{H - PAD_B}"/><text class="tick" x="{x(10 ** e):.1f}" y="{H - PAD_B + 16}" '
                    f'text-anchor="middle">{fmt_params(10 ** e)}</text>')
    body.append(f'<text class="tick" x="{(W + PAD_L) / 2}" y="{H - 8}" text-anchor="middle">'
                f'parameters (log scale)</text>')
    order = list(dict.fromkeys(p["series"] for p in points))
    shift = {s: (i - (len(order) - 1) / 2) * 6 for i, s in enumerate(order)}
    for series in order:
        line = sorted((p for p in points if p["series"] == series), key=lambda p: p["x"])
        if len(line) > 1:
            path = " ".join(f'{x(p["x"]) + shift[series]:.1f},{y(p["y"]):.1f}' for p in line)
            body.append(f'<polyline class="series" points="{path}" stroke="{line[0]["color"]}"/>')
    for p in points:
        # Each series is nudged sideways so two modes of one model size do not hide each other.
        cx = x(p["x"]) + shift[p["series"]]
        if not math.isnan(p["low"]):
            body.append(f'<line class="err" x1="{cx:.1f}" x2="{cx:.1f}" y1="{y(p["low"]):.1f}" '
                        f'y2="{y(p["high"]):.1f}" stroke="{p["color"]}"/>')
        body.append(f'<circle cx="{cx:.1f}" cy="{y(p["y"]):.1f}" r="5" fill="{p["color"]}">'
                    f'<title>{escape(p["label"])}: {p["y"]:.1f}% [{p["low"]:.1f}, {p["high"]:.1f}]'
                    f'</title></circle>')
    return _svg(title, body)


# ---------------------------------------------------------------- the page

def _legend(series: list[tuple[str, str]]) -> list[dict]:
    return [{"label": name, "color": color} for name, color in series]


def build_context(cmp: Comparison) -> dict:
    """Everything the template shows, already formatted: the template only lays it out."""
    from markupsafe import Markup

    summary = summary_table(cmp)
    ks = [c for c in summary.columns if c.startswith("pass@")]
    colors = {r.label: RUN_COLORS[i % len(RUN_COLORS)] for i, r in enumerate(cmp.runs)}
    run_series = [(r.label, colors[r.label]) for r in cmp.runs]
    rows = []
    for rec in summary.to_dict("records"):
        rows.append({**rec, "color": colors[rec["run"]], "params_text": fmt_params(rec["parameters"]),
                     "rate_text": fmt_pct(rec["pass_rate"]),
                     "ci_text": f"[{fmt_pct(rec['ci_low'])}, {fmt_pct(rec['ci_high'])}]",
                     "ks": [(rec[k], fmt_pct(rec[k])) for k in ks],
                     "n_text": fmt_num(rec["n"]), "t_text": fmt_num(rec["temperature"])})

    charts = []
    sized = [r for r in rows if r["parameters"] and r["parameters"] > 0]
    if sized:
        points = [{"label": r["run"], "x": r["parameters"], "y": r["pass_rate"], "low": r["ci_low"],
                   "high": r["ci_high"], "series": r["mode"],
                   "color": MODE_COLORS.get(r["mode"], "#777")} for r in sized]
        modes = list(dict.fromkeys(r["mode"] for r in sized))
        missing = [r["run"] for r in rows if r not in sized]
        charts.append({"id": "chart-size", "title": "Pass rate by model size",
                       "svg": Markup(size_chart("Pass rate against parameters", points)),
                       "legend": _legend([(m, MODE_COLORS.get(m, "#777")) for m in modes]),
                       "note": ("Bars are 95% bootstrap intervals over problems. Not plotted "
                                f"(parameters unknown): {', '.join(missing)}" if missing else
                                "Bars are 95% bootstrap intervals over problems.")})
    for by, title in (("n_turns", "Pass rate by number of turns"), ("category", "Pass rate by category"),
                      ("difficulty", "Pass rate by difficulty")):
        table = breakdown(cmp, by)
        values = {(g, r): v for r, g, v in zip(table["run"], table[by], table["pass_rate"])}
        groups = list(dict.fromkeys(table[by])) if by == "difficulty" else sorted(set(table[by]), key=str)
        charts.append({"id": f"chart-{by}", "title": title, "legend": _legend(run_series),
                       "svg": Markup(bar_chart(title, groups, run_series,
                                               lambda g, s: values.get((g, s)))),
                       "note": _breakdown_note(by, table)})
    pairs = mode_pairs(cmp)
    if not pairs.empty:
        modes = [("single", MODE_COLORS["single"]), ("multi", MODE_COLORS["multi"])]
        by_model = {m: rec for m, rec in zip(pairs["model"], pairs.to_dict("records"))}
        charts.append({"id": "chart-modes", "title": "Multi-turn vs single-turn, per model",
                       "legend": _legend(modes),
                       "svg": Markup(bar_chart("Multi-turn against single-turn pass rate per model",
                                               list(by_model), modes, lambda g, s: by_model[g][s])),
                       "note": "Each model's pair is over the problems both modes cover.",
                       "pairs": [{**p, "params_text": fmt_params(p["parameters"]),
                                  "text": {k: fmt_pct(p[k]) for k in
                                           ("multi", "single", "difference", "ci_low", "ci_high")}}
                                 for p in pairs.to_dict("records")]})

    return {"title": "mtpb comparison report", "version": __version__,
            "generated": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
            "runs": cmp.runs, "rows": rows, "ks": ks, "charts": charts,
            "warnings": cmp.warnings, "heatmap": _heatmap(cmp, colors),
            "problems": _problem_details(cmp, colors), "run_colors": colors}


def _breakdown_note(by: str, table) -> str:
    if by == "difficulty":
        counts = table.groupby("difficulty")["problems"].max()
        return ("Problems binned by their mean pass rate over the compared runs: easy ≥ 70%, "
                "medium 30–70%, hard below 30%, unsolved 0% in every run. Problems per level: "
                + ", ".join(f"{k} {v}" for k, v in counts.items()) + ".")
    return "Mean over problems of the per-problem pass rate."


def _heatmap(cmp: Comparison, colors: dict) -> dict:
    wide = cmp.rates.pivot(index="problem_id", columns="run", values="rate")
    labels = [r.label for r in cmp.runs]
    rows = []
    for pid in wide.index:
        info = cmp.problems[pid]
        cells = []
        for label in labels:
            v = wide.at[pid, label] if label in wide.columns else math.nan
            if math.isnan(v):
                cells.append({"v": "", "text": "", "bg": "transparent", "fg": "inherit"})
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


def render_html(cmp: Comparison) -> str:
    import jinja2

    folder = data_path("reports")
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(folder)),
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = env.get_template("report.html.j2")
    return template.render(**build_context(cmp),
                           css=(folder / "report.css").read_text(encoding="utf-8"),
                           js=(folder / "report.js").read_text(encoding="utf-8"))


def write_report(run_dirs: list[str], out: str, problems_paths: list[str] | None = None) -> dict:
    """Write the HTML report; returns path, bytes, seconds and the warnings it shows."""
    start = time.perf_counter()
    path = Path(out)
    check_output(path)
    cmp = load_comparison(run_dirs, problems_paths, examples_per_problem=EXAMPLES_PER_PROBLEM)
    data = render_html(cmp).encode("utf-8")
    # Write then rename: a reader never sees half a report.
    tmp = path.with_name(path.name + ".tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_bytes(data)
        tmp.replace(path)
    except OSError as e:
        if tmp.is_file():
            tmp.unlink()
        raise RunDataError(f"-o {path}: cannot write the report ({e.strerror or e}): choose another path") from None
    return {"path": str(path), "bytes": len(data), "seconds": time.perf_counter() - start,
            "warnings": list(cmp.warnings)}


def check_output(path: Path) -> None:
    """Refuse an output that would overwrite anything but an earlier report (a run's run.json, a device)."""
    if not path.name or path.name in (".", ".."):
        raise RunDataError(f"-o {str(path)!r}: give a file name, e.g. -o report.html")
    if path.exists() and not (path.is_file() and _is_html(path)):
        raise RunDataError(f"-o {path}: exists and is not an HTML report: choose another path, or remove it")


def _is_html(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(64).lstrip().lower().startswith(b"<!doctype html")


def print_summary(run_dirs: list[str], console, problems_paths=None) -> None:
    """The report's headline table in the terminal."""
    from rich import box
    from rich.table import Table

    cmp = load_comparison(run_dirs, problems_paths, examples_per_problem=0)
    summary = summary_table(cmp)
    ks = [c for c in summary.columns if c.startswith("pass@")]
    rows = [[rec["run"], rec["model"], fmt_params(rec["parameters"]), rec["mode"], fmt_num(rec["n"]),
             fmt_num(rec["temperature"]), fmt_pct(rec["pass_rate"]),
             f"{fmt_pct(rec['ci_low'])}–{fmt_pct(rec['ci_high'])}", *(fmt_pct(rec[k]) for k in ks),
             str(rec["problems"])] for rec in summary.to_dict("records")]
    headers = ["run", "model", "params", "mode", "n", "T", "pass %", "95% CI", *ks, "problems"]
    widths = [max(len(h), *(len(row[i]) for row in rows)) if rows else len(h)
              for i, h in enumerate(headers)]
    widths[0], widths[1] = min(widths[0], 10), min(widths[1], 14)  # names may wrap, figures not
    # Too narrow a terminal: leave out the least telling columns rather than squeeze the figures.
    hidden = []
    for name in ("T", "n", "problems", *reversed(ks[1:]), "params"):
        if sum(widths) + 2 * len(widths) <= console.width:
            break
        i = headers.index(name)
        hidden.append(name)
        del headers[i], widths[i]
        rows = [row[:i] + row[i + 1:] for row in rows]
    caption = "pass rates in %, 95% bootstrap CI over problems"
    if hidden:
        caption += f"; not shown for lack of width: {', '.join(hidden)}"
    table = Table(title="mtpb summary", caption=caption, box=box.SIMPLE_HEAD, show_edge=False,
                  padding=(0, 1, 0, 0))
    for i, (name, width) in enumerate(zip(headers, widths)):
        if i < 2:
            table.add_column(name, overflow="fold", min_width=min(width, 6))
        else:
            table.add_column(name, justify="left" if name == "mode" else "right", no_wrap=True,
                             min_width=width)
    for row in rows:
        table.add_row(*row)
    console.print(table)
    for warning in cmp.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape_markup(warning)}")


def escape_markup(text: str) -> str:
    from rich.markup import escape as rich_escape
    return rich_escape(text)
