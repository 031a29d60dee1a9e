"""What a comparison shows: pass rates, pass@k, bootstrap CIs, breakdowns (mtpb.comparison loads the runs).

The metrics themselves (the paper's pass rate, pass@k, difficulty levels, CIs) are mtpb.metrics; here
they are grouped into pandas frames, one row per run or per (run, group). All rates are percentages.

numpy and pandas are imported inside the functions that need them, so importing this module is cheap.
"""
from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mtpb.metrics import DIFFICULTY_BINS, bootstrap_ci, pass_at_ks

if TYPE_CHECKING:
    from mtpb.comparison import Comparison


def pass_at_k(programs):
    """DataFrame run x k (percent), with mtpb.metrics' estimator and k values (so the report agrees
    with summary.json): k only where every (problem, test) cell of the run has n >= k."""
    import pandas as pd

    cells = (programs.groupby(["run", "problem_id", "test_index"], observed=True)["passed"]
             .agg(n="size", c="sum").reset_index())
    out = {}
    for run, group in cells.groupby("run", observed=True):
        keys = zip(group["problem_id"].tolist(), group["test_index"].tolist())
        out[run] = pass_at_ks(dict(zip(keys, zip(group["n"].tolist(), group["c"].tolist()))))
    ks = sorted({k for row in out.values() for k in row})
    return pd.DataFrame.from_dict(out, orient="index").reindex(columns=ks)


def summary_table(cmp: Comparison):
    """One row per run: settings, pass rate with its 95% CI, pass@k, counts."""
    import pandas as pd

    at_k = pass_at_k(cmp.programs)
    rows = []
    for run in cmp.runs:
        rates = cmp.rates.loc[cmp.rates["run"] == run.label, "rate"].to_numpy()
        low, high = bootstrap_ci(rates)
        row = {"run": run.label, "model": run.model, "parameters": run.parameters, "mode": run.mode,
               "n": run.n, "temperature": run.temperature,
               "pass_rate": float(rates.mean()) if rates.size else math.nan,
               "ci_low": low, "ci_high": high, "problems": int(rates.size),
               "programs": int((cmp.programs["run"] == run.label).sum())}
        for k in at_k.columns:
            value = at_k.loc[run.label, k] if run.label in at_k.index else math.nan
            row[f"pass@{k}"] = float(value)
        rows.append(row)
    return _keep_ints(pd.DataFrame(rows), rows, ("parameters", "n"))


def _keep_ints(frame, rows, columns):
    """pandas turns an int column with a None into floats; these stay ints with None."""
    for column in columns:
        if column in frame:
            frame[column] = _object_series([row[column] for row in rows])
    return frame


def _object_series(values):
    import pandas as pd
    return pd.Series(values, dtype=object)


def breakdown(cmp: Comparison, by: str):
    """Pass rate per (run, value of `by`): category, n_turns or difficulty."""
    table = (cmp.rates.groupby(["run", by], observed=True)["rate"]
             .agg(pass_rate="mean", problems="size").reset_index())
    if by == "difficulty":
        order = {name: i for i, (name, _) in enumerate(DIFFICULTY_BINS)}
        table = table.sort_values(["run", by], key=lambda s: s.map(order) if s.name == by else s)
    return table.reset_index(drop=True)


def by_mode(cmp: Comparison):
    """Pass rate per (model, mode), pooling the runs of one model and mode problem by problem."""
    meta = {r.label: (r.model, r.mode) for r in cmp.runs}
    rates = cmp.rates.assign(model=cmp.rates["run"].map(lambda r: meta[r][0]),
                             mode=cmp.rates["run"].map(lambda r: meta[r][1]))
    per_problem = rates.groupby(["model", "mode", "problem_id"])["rate"].mean().reset_index()
    return (per_problem.groupby(["model", "mode"])["rate"]
            .agg(pass_rate="mean", problems="size").reset_index())


def mode_pairs(cmp: Comparison, mode: str = "multi", baseline: str = "single"):
    """Per model with both modes: pass rates on the problems both cover, the paired difference
    and its bootstrap CI (resampling problems keeps each problem's pair together)."""
    import pandas as pd

    meta = {r.label: r for r in cmp.runs}
    rates = cmp.rates.assign(model=cmp.rates["run"].map(lambda r: meta[r].model),
                             mode=cmp.rates["run"].map(lambda r: meta[r].mode))
    rows = []
    for model, group in rates.groupby("model", sort=False):
        wide = group.groupby(["problem_id", "mode"])["rate"].mean().unstack("mode")
        if mode not in wide or baseline not in wide:
            continue
        both = wide[[mode, baseline]].dropna()
        diff = (both[mode] - both[baseline]).to_numpy()
        low, high = bootstrap_ci(diff)
        params = next(r.parameters for r in cmp.runs if r.model == model)
        rows.append({"model": model, "parameters": params, mode: float(both[mode].mean()),
                     baseline: float(both[baseline].mean()), "difference": float(diff.mean()),
                     "ci_low": low, "ci_high": high, "problems": int(len(both))})
    frame = pd.DataFrame(rows, columns=["model", "parameters", mode, baseline, "difference",
                                        "ci_low", "ci_high", "problems"])
    return _keep_ints(frame, rows, ("parameters",))


