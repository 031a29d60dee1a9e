"""The comparison's headline table in the terminal (`mtpb summary`); the HTML report shows the same rows.

rich is imported inside the function, so importing this module stays cheap for the CLI.
"""
from __future__ import annotations

from mtpb.aggregate import summary_table
from mtpb.comparison import load_comparison
from mtpb.formatting import fmt_num, fmt_params, fmt_pct


def print_summary(run_dirs: list[str], console, problems_paths=None) -> None:
    """The report's headline table in the terminal."""
    from rich import box
    from rich.markup import escape
    from rich.table import Table

    from mtpb import benchmarks
    compared, runs = benchmarks.split(run_dirs)
    cmp = load_comparison(compared, problems_paths, examples_per_problem=0)
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
    found = benchmarks.tables(runs)
    if found:
        benchmarks.print_tables(found, console)
    for warning in cmp.warnings:
        console.print(f"[yellow]warning:[/yellow] {escape(warning)}")
