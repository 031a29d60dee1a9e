"""`mtpb report --export DIR`: every table of the report as CSV, the headline table as a LaTeX tabular.

Figures are written unrounded (percent where the report shows percent), so a paper's numbers come
from the same values the report rounds for display.
"""
from __future__ import annotations

from pathlib import Path

from mtpb.aggregate import (break_turns, breakdown, mode_pairs, pass_at_k_curve, perplexity_correlations,
                            perplexity_points, perplexity_table, status_counts, summary_table)
from mtpb.comparison import Comparison
from mtpb.formatting import fmt_params, fmt_pct, short_model
from mtpb.rundir import RunDirError

LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def tables(cmp: Comparison) -> dict:
    """File stem -> DataFrame, one per table of the report."""
    points = perplexity_points(cmp)
    out = {"summary": summary_table(cmp), "statuses": status_counts(cmp), "pass_at_k": pass_at_k_curve(cmp),
           "problems": cmp.rates.assign(run=cmp.rates["run"].astype(str)),
           "modes": mode_pairs(cmp), "perplexity": perplexity_table(cmp),
           "perplexity_problems": points, "perplexity_correlations": perplexity_correlations(points),
           "breaks": break_turns(cmp)}
    for by in ("n_turns", "category", "difficulty"):
        table = breakdown(cmp, by)
        out[f"by_{by}"] = table.assign(run=table["run"].astype(str))
    return out


def latex_escape(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in str(text))


def headline_latex(summary) -> str:
    """The headline table as a booktabs tabular (\\usepackage{booktabs}), pass rates in percent."""
    ks = [c for c in summary.columns if c.startswith("pass@")]
    head = ["Run", "Model", "Params", "Mode", "Pass rate (\\%)", "95\\% CI", *(latex_escape(k) for k in ks)]
    lines = ["\\begin{tabular}{llrl" + "r" * (2 + len(ks)) + "}", "\\toprule", " & ".join(head) + " \\\\", "\\midrule"]
    for r in summary.to_dict("records"):
        cells = [latex_escape(r["run"]), latex_escape(short_model(r["model"])), latex_escape(fmt_params(r["parameters"])),
                 latex_escape(r["mode"]), fmt_pct(r["pass_rate"]),
                 f"[{fmt_pct(r['ci_low'])}, {fmt_pct(r['ci_high'])}]", *(fmt_pct(r[k]) for k in ks)]
        lines.append(" & ".join(c.replace("—", "--") for c in cells) + " \\\\")
    lines += ["\\bottomrule", "\\end{tabular}", ""]
    return "\n".join(lines)


def export(cmp: Comparison, folder: str | Path) -> list[Path]:
    """Write the CSV files and headline.tex into folder; returns the paths written."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        written = []
        all_tables = tables(cmp)
        for stem, frame in all_tables.items():
            path = folder / f"{stem}.csv"
            frame.to_csv(path, index=False)
            written.append(path)
        tex = folder / "headline.tex"
        tex.write_text(headline_latex(all_tables["summary"]), encoding="utf-8")
        return written + [tex]
    except OSError as e:
        raise RunDirError(f"--export {folder}: cannot write there ({e.strerror or e}): choose another folder") from None
