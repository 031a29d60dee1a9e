"""The report's analysis sections (statuses, pass@k curves, perplexity, where programs break) and
`mtpb report --export`, checked in the page (headless Chromium) and against summary.json."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from mtpb.comparison import load_comparison
from mtpb.perplexity import summarize
from mtpb.report import write_report
from tests.fixtures.reports import runs
from tests.test_report import CHROMIUM, DevTools

MODEL = "/ckpts/org/m-350M"
# Per problem (multi, single) prompt perplexity of run A's model, chosen against the fixture's rates:
# A multi P1 90, P2 10, P3 50, P4 0, P5 100 -> lower perplexity, higher rate: Spearman -1.
PERPLEXITY = {1: (2.0, 3.0), 2: (8.0, 10.0), 3: (4.0, 6.0), 4: (16.0, 20.0), 5: (1.5, 2.0)}
# run A's diagnoses: (problem, test, sample) -> (status diagnosed, turn, how); the last is stale
DIAGNOSES = {(2, 0, 1): ("failed", 3, "wrong value"), (2, 0, 3): ("error", 2, "NameError"),
             (2, 1, 3): ("timeout", 1, "timeout"), (2, 0, 2): ("error", 1, "SyntaxError")}


def add_analysis(dirs: list[Path]) -> None:
    """Runs A and B become one model's multi and single runs, A with perplexities and diagnoses."""
    a, b = Path(dirs[0]), Path(dirs[1])
    for run in (a, b):
        manifest = json.loads((run / "run.json").read_text())
        (run / "run.json").write_text(json.dumps({**manifest, "model": MODEL}))
    records = [{"problem_id": pid, "test_index": t, "sample_index": 0, "mode": mode, "perplexity": ppl, "tokens": 10}
               for pid, pair in PERPLEXITY.items() for t in range(2) for mode, ppl in zip(("multi", "single"), pair)]
    (a / "perplexity.json").write_text(json.dumps({"settings": {"model": MODEL, "backend": "codegen"},
                                                   "finished": "2024-01-01T02:00:00Z", **summarize(records)}))
    with open(a / "diagnosis.jsonl", "w") as f:
        for (pid, t, s), (status, turn, how) in DIAGNOSES.items():
            f.write(json.dumps({"problem_id": pid, "test_index": t, "sample_index": s, "status": status,
                                "broke_at_turn": turn, "broke_how": how}) + "\n")


@pytest.fixture
def analysed(tmp_path):
    dirs, problems = runs.write_fixture(tmp_path)
    add_analysis(dirs)
    return dirs, problems


def test_perplexity_correlation_and_breaks_by_turn(analysed):
    from mtpb import aggregate
    dirs, problems = analysed
    cmp = load_comparison(dirs, [str(problems)])
    table = aggregate.perplexity_table(cmp)
    row = table.to_dict("records")[0]
    assert (row["run"], row["single"], row["multi"], row["problems"]) == ("A", 8.2, 6.3, 5)   # means over problems
    corr = aggregate.perplexity_correlations(aggregate.perplexity_points(cmp)).set_index("mode")
    assert corr.loc["multi", "spearman"] == pytest.approx(-1.0) and corr.loc["multi", "rate_from"] == "A"
    assert corr.loc["single", "rate_from"] == "B" and corr.loc["single", "spearman"] < -0.9
    breaks = aggregate.break_turns(cmp)
    a = breaks[breaks["run"] == "A"]
    diagnosed = a[a["broke_how"] != "not diagnosed"]
    assert sorted(zip(diagnosed["turn"], diagnosed["broke_how"], diagnosed["programs"])) == \
        [(1, "timeout", 1), (2, "NameError", 1), (3, "wrong value", 1)]   # the stale line is not merged
    assert int(a.loc[a["broke_how"] == "not diagnosed", "programs"].sum()) == 25 - 3
    curve = aggregate.pass_at_k_curve(cmp)
    assert list(curve[curve["run"] == "A"]["k"]) == [1, 2, 3, 4, 5]
    assert curve[(curve["run"] == "A") & (curve["k"] == 5)]["pass_at_k"].item() == pytest.approx(70.0)
    statuses = aggregate.status_counts(cmp).set_index("run")
    assert statuses.loc["A", ["passed", "failed", "error", "timeout", "killed"]].tolist() == [25, 11, 13, 1, 0]


@pytest.mark.skipif(not os.path.exists(CHROMIUM), reason="needs /usr/bin/chromium (CI installs it)")
def test_new_sections_render_in_chromium_at_1280_without_errors(tmp_path, analysed):
    dirs, problems = analysed
    out = tmp_path / "report.html"
    write_report(dirs, str(out), [str(problems)])
    html = out.read_text()
    assert "test 0," not in html and "test 1, sample 1" in html
    browser = DevTools(tmp_path)
    try:
        browser.open_page()
        browser.viewport(1280, 900)
        browser.send("Page.navigate", url=out.resolve().as_uri())
        browser.wait_for("Page.loadEventFired")
        page = json.loads(browser.evaluate("""JSON.stringify({
          sections: ['status-table', 'perplexity-table', 'perplexity-correlation-table', 'break-table',
                     'chart-perplexity', 'chart-pass-at-k'].filter(function (id) { return document.getElementById(id); }),
          dots: document.querySelectorAll('#chart-perplexity circle').length,
          curve: document.querySelectorAll('#chart-pass-at-k polyline').length,
          hidden: Array.from(document.querySelectorAll('.scroll')).filter(function (s) {
            return s.offsetParent && s.scrollWidth > s.clientWidth + 1; }).map(function (s) {
            return s.querySelector('table').id || s.parentNode.id; }),
          model: (function (c) { return [c.textContent.trim(), c.title]; })(
            document.querySelector('#summary-table tbody tr td:nth-child(2)')),
          noRun: document.querySelectorAll('#chart-category .no-run').length,
          zero: document.querySelectorAll('#chart-category rect.zero').length,
          breakRow: Array.from(document.querySelector('#break-table tbody tr').cells).map(function (c) {
            return c.textContent.trim(); }).join(' ')
        })"""))
        assert page["sections"] == ["status-table", "perplexity-table", "perplexity-correlation-table",
                                    "break-table", "chart-perplexity", "chart-pass-at-k"]
        assert page["dots"] == 10 and page["curve"] == 3
        assert page["hidden"] == []                       # every table fits at 1280 px or wraps
        assert page["model"] == ["m-350M", MODEL]
        assert page["noRun"] == 1 and page["zero"] == 4   # C has no unknown problem; 0%: array x3, B string
        assert page["breakRow"] == "A multi 1 1 1 22 NameError 1, timeout 1, wrong value 1"
        browser.screenshot(tmp_path / "analysis.png")
        assert browser.errors() == []
    finally:
        browser.close()
    assert (tmp_path / "analysis.png").stat().st_size > 5000


def test_export_round_trips_to_summary_json(tmp_path):
    import pandas as pd
    run = lambda *a: subprocess.run([sys.executable, "-m", "mtpb", *a], capture_output=True, text=True)  # noqa: E731
    ref, tiny = tmp_path / "ref", tmp_path / "tiny"
    assert run("run", "--backend", "reference", "--ids", "1-4", "--sandbox", "process", "--out", str(ref)).returncode == 0
    # the tiny checkpoint fails everything, quickly: statuses other than passed
    assert run("run", "--backend", "codegen", "--ids", "1", "--max-gen-length", "4", "--sandbox", "process",
               "--out", str(tiny)).returncode == 0
    done = run("report", str(ref), str(tiny), "-o", str(tmp_path / "r.html"), "--export", str(tmp_path / "exp"))
    assert done.returncode == 0, done.stderr
    exp = tmp_path / "exp"
    summary = pd.read_csv(exp / "summary.csv").set_index("run")
    statuses = pd.read_csv(exp / "statuses.csv").set_index("run")
    problems = pd.read_csv(exp / "problems.csv")
    curve = pd.read_csv(exp / "pass_at_k.csv")
    for folder in (ref, tiny):
        truth = json.loads((folder / "summary.json").read_text())
        label = folder.name
        assert summary.loc[label, "pass_rate"] == pytest.approx(truth["pass_rate"], abs=1e-4)
        assert summary.loc[label, "programs"] == truth["n_programs"]
        for k, v in truth["pass_at_k"].items():
            assert curve[(curve["run"] == label) & (curve["k"] == int(k[5:]))]["pass_at_k"].item() == \
                pytest.approx(v, abs=1e-4)
        counted = statuses.loc[label].drop("programs")
        assert {s: int(c) for s, c in counted.items() if c} == truth["statuses"]
        mine = problems[problems["run"] == label].set_index("problem_id")["rate"]
        assert {str(p): round(r, 4) for p, r in mine.items()} == pytest.approx(truth["breakdowns"]["problem"])
    tex = (exp / "headline.tex").read_text()
    assert tex.startswith("\\begin{tabular}") and "\\midrule" in tex and "tiny-codegen" in tex
    assert {p.name for p in exp.iterdir()} >= {"summary.csv", "statuses.csv", "pass_at_k.csv", "perplexity.csv",
                                                "breaks.csv", "by_category.csv", "modes.csv", "headline.tex"}
