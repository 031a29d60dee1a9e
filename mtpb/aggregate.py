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




def status_counts(cmp: Comparison):
    """Programs per status, one row per run, every status a column (0 where none)."""
    import pandas as pd

    from mtpb.scoring import STATUSES
    counts = cmp.programs.groupby(["run", "status"], observed=True).size().unstack("status", fill_value=0)
    counts = counts.reindex(index=[r.label for r in cmp.runs], fill_value=0)
    extra = [c for c in counts.columns if c not in STATUSES]
    counts = counts.reindex(columns=[*STATUSES, *extra], fill_value=0).fillna(0).astype(int)
    counts.columns = [str(c) for c in counts.columns]
    frame = counts.reset_index().rename(columns={"index": "run"})
    frame["programs"] = frame[[*STATUSES, *extra]].sum(axis=1)
    return pd.DataFrame(frame)


def pass_at_k_curve(cmp: Comparison):
    """pass@k (percent) for every k = 1..n per run, n the fewest samples of any of its (problem, test)
    cells; long form: run, k, pass_at_k."""
    import pandas as pd

    from mtpb.metrics import pass_at_k as estimate
    cells = (cmp.programs.groupby(["run", "problem_id", "test_index"], observed=True)["passed"]
             .agg(n="size", c="sum").reset_index())
    rows = []
    for run, group in cells.groupby("run", observed=True):
        n_min = int(group["n"].min())
        for k in range(1, n_min + 1):
            group_k = group.assign(p=[estimate(int(n), int(c), k) for n, c in zip(group["n"], group["c"])])
            rate = 100.0 * group_k.groupby("problem_id")["p"].mean().mean()
            rows.append({"run": str(run), "k": k, "pass_at_k": float(rate)})
    return pd.DataFrame(rows, columns=["run", "k", "pass_at_k"])


def perplexity_table(cmp: Comparison):
    """Per run with a perplexity.json: the model's mean prompt perplexity per mode and the difference."""
    import pandas as pd

    rows = []
    for run in cmp.runs:
        found = cmp.perplexity.get(run.label)
        if not found:
            continue
        modes = found.get("modes", {})
        multi = (modes.get("multi") or {}).get("perplexity")
        single = (modes.get("single") or {}).get("perplexity")
        scored = (found.get("settings") or {}).get("model") or run.model   # --model may name another checkpoint
        rows.append({"run": run.label, "model": scored,
                     "parameters": run.parameters if scored == run.model else None,
                     "scored_with": (found.get("settings") or {}).get("backend"),
                     "single": single, "multi": multi,
                     "difference": (multi - single) if multi is not None and single is not None else None,
                     "problems": max((m.get("n_problems", 0) for m in modes.values()), default=0)})
    frame = pd.DataFrame(rows, columns=["run", "model", "parameters", "scored_with", "single", "multi",
                                        "difference", "problems"])
    return _keep_ints(frame, rows, ("parameters",))


def perplexity_points(cmp: Comparison):
    """The paper's per-problem pairs: (perplexity of a problem's prompts in a mode, its pass rate in
    that mode) for each run with a perplexity.json. The pass rate is the run's own when its mode is
    the mode scored, else that of a run of the same model in that mode, when the report has one."""
    import pandas as pd

    rates = {(r, int(p)): v for r, p, v in zip(cmp.rates["run"], cmp.rates["problem_id"], cmp.rates["rate"])}
    rows = []
    for run in cmp.runs:
        found = cmp.perplexity.get(run.label)
        if not found:
            continue
        for mode in found.get("modes", {}):
            source = run if run.mode == mode else next(
                (r for r in cmp.runs if r.model == run.model and r.mode == mode), None)
            if source is None:
                continue
            for pid, per_mode in found.get("problems", {}).items():
                rate = rates.get((source.label, int(pid)))
                if rate is not None and per_mode.get(mode) is not None:
                    rows.append({"run": run.label, "mode": mode, "rate_from": source.label, "problem_id": int(pid),
                                 "perplexity": float(per_mode[mode]), "pass_rate": float(rate)})
    return pd.DataFrame(rows, columns=["run", "mode", "rate_from", "problem_id", "perplexity", "pass_rate"])


def perplexity_correlations(points):
    """Per (run, mode): Pearson and Spearman correlation of a problem's perplexity with its pass rate
    (NaN where either is constant or fewer than 3 problems)."""
    import pandas as pd

    rows = []
    for (run, mode), group in points.groupby(["run", "mode"], sort=False):
        constant = group["perplexity"].nunique() < 2 or group["pass_rate"].nunique() < 2
        enough = len(group) >= 3 and not constant
        rows.append({"run": run, "mode": mode, "rate_from": group["rate_from"].iloc[0], "problems": len(group),
                     "pearson": float(group["perplexity"].corr(group["pass_rate"])) if enough else math.nan,
                     "spearman": float(group["perplexity"].corr(group["pass_rate"], method="spearman"))
                     if enough else math.nan})
    return pd.DataFrame(rows, columns=["run", "mode", "rate_from", "problems", "pearson", "spearman"])


def break_turns(cmp: Comparison):
    """Failed programs by the turn where they broke (from `mtpb diagnose`), per run: long form run,
    mode, turn, broke_how, programs; programs not diagnosed yet are counted as turn None."""
    import pandas as pd

    failed = cmp.programs[~cmp.programs["passed"] & (cmp.programs["status"] != "sandbox_error")]
    mode = {r.label: r.mode for r in cmp.runs}
    if failed.empty:
        return pd.DataFrame(columns=["run", "mode", "turn", "broke_how", "programs"])
    table = (failed.assign(turn=failed["broke_at_turn"].astype("object"),
                           broke_how=failed["broke_how"].fillna("not diagnosed"))
             .groupby(["run", "turn", "broke_how"], observed=True, dropna=False).size()
             .reset_index(name="programs"))
    table = table[table["programs"] > 0]
    table.insert(1, "mode", table["run"].map(lambda r: mode[str(r)]).astype(str))
    table["run"] = table["run"].astype(str)
    return table.reset_index(drop=True)
