"""Problem authoring outside the checkout (`suite` and $MTPB_PROBLEMS as sources, `problems new` ids and
folders) and run directories that describe their own problems (problems.jsonl, used by reports)."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from click.testing import CliRunner

from install_fixtures import run_installed
from mtpb.cli import main
from mtpb.comparison import load_comparison
from mtpb.problems import default_problems_dir
from mtpb.report import write_report

# An author's problem: its own name, category, turn count (4) and max_gen_length. "{id}" is filled in.
COUNT_VOWELS = """\
id: {id}
name: Count vowels
category: dict
description: Count each vowel of a text and report the most frequent one.
max_gen_length: 96
turns:
  - prompt: Assign the string "{text}" to a variable named "text".
    solution: text = {text}
  - prompt: Make a dict "counts" that maps each vowel (a, e, i, o, u) to how often it occurs in "text".
    solution: 'counts = {{v: text.count(v) for v in "aeiou"}}'
  - prompt: Find the vowel with the highest count, the first in alphabetical order on a tie, as "top".
    solution: "top = max(sorted(counts), key=lambda v: counts[v])"
  - prompt: Print "top".
    solution: print(top)
tests:
  - inputs: {text: banana}
    output: a
  - inputs: {text: education}
    output: a
  - inputs: {text: "hello world"}
    output: o
  - inputs: {text: queue}
    output: e
  - inputs: {text: xyz}
    output: a
"""
SUITE_2 = "Record-breaking values"   # the bundled suite's problem 2


@pytest.fixture(autouse=True)
def no_user_problem_folders(monkeypatch):
    monkeypatch.delenv("MTPB_PROBLEMS", raising=False)


def write_author_problem(folder: Path, pid: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{pid:03d}-count-vowels.yaml"
    path.write_text(COUNT_VOWELS.replace("{id}", str(pid), 1), encoding="utf-8")
    return path


def cli(*args, code: int = 0):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    return result.output


def run(out: Path, *sources, ids: str):
    sources = [x for s in sources for x in ("--problems", s)]
    return cli("run", "--backend", "reference", "--sandbox", "process", *sources, "--ids", ids, "--out", out)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """suite: a run of the suite's problem 2; author: a run of an author's own problem 2 (another problem)."""
    base = tmp_path_factory.mktemp("authoring")
    folder = base / "author-problems"
    write_author_problem(folder, 2)
    run(base / "suite", ids="2")                    # the default sources: the suite
    run(base / "author", folder, ids="2")
    return {"suite": base / "suite", "author": base / "author", "folder": folder}


# ---------------------------------------------------------------- sources

def test_suite_names_the_bundled_suite_and_dot_suite_a_folder(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_author_problem(tmp_path / "suite", 116)
    bundled = cli("problems", "list", "suite")
    assert "Same group check" in bundled and "Count vowels" not in bundled
    folder = cli("problems", "list", "./suite")
    assert "Count vowels" in folder and "Same group check" not in folder
    both = cli("problems", "list", "suite", "./suite")
    assert "Same group check" in both and "Count vowels" in both
    assert "Count vowels" in cli("problems", "show", "116", "--problems", "suite", "--problems", "./suite")


def test_mtpb_problems_joins_the_default_sources(tmp_path, monkeypatch):
    mine, more = tmp_path / "mine", tmp_path / "more"
    write_author_problem(mine, 116)
    more.mkdir()                      # a folder without a problem yet is fine
    monkeypatch.setenv("MTPB_PROBLEMS", f"{mine}:{more}")
    listed = cli("problems", "list")
    assert "Count vowels" in listed and "Same group check" in listed
    assert "Count vowels" in cli("problems", "show", "116")
    assert "5 of 5 test programs pass" in cli("problems", "validate", "--execute", "--sandbox", "process", mine)
    monkeypatch.setenv("MTPB_PROBLEMS", str(tmp_path / "typo"))
    out = cli("problems", "list", code=2)
    assert f"{tmp_path / 'typo'}: no such folder (named in $MTPB_PROBLEMS)" in " ".join(out.split())


def test_duplicate_id_across_the_suite_and_a_folder_names_both_files(tmp_path):
    mine = write_author_problem(tmp_path / "mine", 2)
    out = " ".join(cli("run", "--backend", "reference", "--sandbox", "process", "--problems", "suite",
                       "--problems", tmp_path / "mine", "--ids", "2", "--out", tmp_path / "run", code=2).split())
    assert f"{mine}:1: duplicate id 2" in out
    assert str(next(default_problems_dir().glob("002-*.yaml"))) in out
    assert not (tmp_path / "run" / "run.json").exists()


# ---------------------------------------------------------------- problems new

def test_problems_new_takes_an_id_that_no_source_has(tmp_path, monkeypatch):
    out = cli("problems", "new", "First", "--dir", tmp_path / "a")
    assert (tmp_path / "a" / "116-first.yaml").exists(), out       # the suite ends at 115
    assert "export MTPB_PROBLEMS=" in " ".join(out.split())
    write_author_problem(tmp_path / "env", 120)
    monkeypatch.setenv("MTPB_PROBLEMS", str(tmp_path / "env"))
    cli("problems", "new", "Second", "--dir", tmp_path / "a")
    assert (tmp_path / "a" / "121-second.yaml").exists()
    out = cli("problems", "new", "Third")                             # no --dir: the first MTPB_PROBLEMS folder
    assert (tmp_path / "env" / "121-third.yaml").exists(), out      # (folder a is no source here)
    assert "export" not in out                                        # already visible: no hint
    assert "Third" in cli("problems", "list")


def test_problems_new_never_writes_into_an_installed_package(tmp_path):
    target = tmp_path / "lib" / "python3.11" / "site-packages" / "mtpb" / "data" / "problems"
    out = cli("problems", "new", "X", "--dir", target, code=2)
    assert "inside an installed package" in out and not target.exists()
    from mtpb.paths import data_path, in_installed_package
    from mtpb.problems import authoring_dir
    # without --dir and MTPB_PROBLEMS, this checkout's own suite (the one this mtpb reads) is the place
    if not in_installed_package(data_path("problems")):
        assert authoring_dir() == default_problems_dir()


# ---------------------------------------------------------------- run directories describe their problems

def test_a_run_records_its_problems_and_reports_label_from_them(runs, tmp_path):
    records = [json.loads(line) for line in (runs["author"] / "problems.jsonl").read_text().splitlines()]
    assert len(records) == 1
    record = records[0]
    assert {k: record[k] for k in ("id", "name", "category", "max_gen_length")} == \
        {"id": 2, "name": "Count vowels", "category": "dict", "max_gen_length": 96}
    assert len(record["turns"]) == 4 and record["turns"][0]["prompt"].startswith("Assign the string")
    assert record["tests"][0] == {"inputs": {"text": "banana"}, "output": "a"}
    manifest = json.loads((runs["author"] / "run.json").read_text())
    assert record["digest"] == manifest["problem_digests"]["2"]
    summary = json.loads((runs["author"] / "summary.json").read_text())
    assert summary["breakdowns"]["category"] == {"dict": 100.0} and summary["breakdowns"]["turns"] == {"4": 100.0}

    cmp = load_comparison([str(runs["author"])])           # no --problems: the suite is never read
    info = cmp.problems[2]
    assert (info.name, info.category, info.n_turns) == ("Count vowels", "dict", 4)
    assert cmp.warnings == ()
    html = tmp_path / "r.html"
    write_report([str(runs["author"])], str(html))
    text = html.read_text(encoding="utf-8")
    assert "Count vowels" in text and SUITE_2 not in text and '<span class="tag">4 turns</span>' in text


def test_runs_that_disagree_about_an_id_are_warned(runs):
    cmp = load_comparison([str(runs["suite"]), str(runs["author"])])
    warning = next(w for w in cmp.warnings if "problem 2 is not the same in all runs" in w)
    assert f"suite: '{SUITE_2}'" in warning and "author: 'Count vowels'" in warning
    assert cmp.problems[2].name == SUITE_2                 # the first run's description labels it


def test_a_run_without_problems_jsonl_falls_back_with_a_warning(runs, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(runs["author"], old)
    (old / "problems.jsonl").unlink()                       # as a run made before this change
    cmp = load_comparison([str(old)])
    assert cmp.problems[2].name == SUITE_2
    text = "\n".join(cmp.warnings)
    assert "old: no problems.jsonl" in text and "labelled from the bundled suite" in text
    # run.json's problem_digests tell that the run ran another problem 2 than the suite's
    assert "old: problem(s) 2 are labelled from the bundled suite and $MTPB_PROBLEMS, but the run ran other" in text
    cmp = load_comparison([str(old)], [str(runs["folder"])])
    assert cmp.problems[2].name == "Count vowels" and "ran other" not in "\n".join(cmp.warnings)
    # --problems overrides a run's own record, and says so when it is another problem
    cmp = load_comparison([str(runs["author"])], ["suite"])
    assert cmp.problems[2].name == SUITE_2
    assert any("problem(s) 2 are labelled from --problems, but the run ran other" in w for w in cmp.warnings)


def test_a_resume_over_other_ids_keeps_every_problem_described(tmp_path):
    folder = tmp_path / "mine"
    write_author_problem(folder, 116)
    run(tmp_path / "run", ids="1")
    run(tmp_path / "run", default_problems_dir(), folder, ids="116")
    records = [json.loads(line) for line in (tmp_path / "run" / "problems.jsonl").read_text().splitlines()]
    assert [r["id"] for r in records] == [1, 116]
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert "unknown" not in summary["breakdowns"]["category"] and "dict" in summary["breakdowns"]["category"]
    assert load_comparison([str(tmp_path / "run")]).problems[116].name == "Count vowels"
    with open(tmp_path / "run" / "problems.jsonl", "a") as f:
        f.write('{"id": 7}\n')                                  # not a record mtpb wrote: named, nothing changed
    manifest = (tmp_path / "run" / "run.json").read_bytes()
    out = cli("run", "--backend", "reference", "--sandbox", "process", "--ids", "1", "--out", tmp_path / "run", code=2)
    assert "problems.jsonl:3: not a problem record" in " ".join(out.split())
    assert (tmp_path / "run" / "run.json").read_bytes() == manifest


# ---------------------------------------------------------------- after a plain install

@pytest.mark.slow
def test_authoring_flow_after_a_plain_install(installed_mtpb, tmp_path):
    """`pip install .` (not editable), then an author's folder next to the installed suite."""
    mtpb = lambda *args, env=None: run_installed(installed_mtpb, *map(str, args), cwd=tmp_path, env=env)  # noqa: E731
    where = subprocess.run([str(installed_mtpb.parent / "python"), "-c", "from mtpb.paths import data_path; "
                            "print(data_path('problems'))"], capture_output=True, text=True, check=True,
                           cwd=tmp_path)
    installed_suite = Path(where.stdout.strip())
    assert "site-packages" in installed_suite.parts
    before = sorted(p.name for p in installed_suite.iterdir())

    done = mtpb("problems", "new", "Count vowels", "--dir", "my-problems")
    assert done.returncode == 0, done.stderr
    created = tmp_path / "my-problems" / "116-count-vowels.yaml"
    assert created.exists()
    write_author_problem(tmp_path / "my-problems", 116)   # the author fills in the template
    done = mtpb("problems", "validate", "--execute", "--sandbox", "process", "my-problems")
    assert done.returncode == 0 and "5 of 5 test programs pass" in done.stdout, done.stdout + done.stderr

    done = mtpb("run", "--backend", "reference", "--problems", "suite", "--problems", "my-problems",
                "--ids", "1,2,116", "--sandbox", "process", "--out", "runs/mine")
    assert done.returncode == 0, done.stderr
    assert "pass rate 100.00% over 3 problems, 15 programs" in done.stdout
    done = mtpb("report", "runs/mine", "-o", "report.html")
    assert done.returncode == 0 and "warning" not in done.stderr, done.stderr
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    row = html[html.index('<a href="#p-116">'):]
    row = row[:row.index("</tr>")]
    assert "Count vowels" in row and ">dict<" in row and ">4<" in row
    assert '<span class="pid">#116</span> Count vowels <span class="tag">dict</span> <span class="tag">4 turns' in html

    # a duplicate id across the suite and the folder is refused, naming both files
    shutil.copy(created, tmp_path / "my-problems" / "002-count-vowels.yaml")
    (tmp_path / "my-problems" / "002-count-vowels.yaml").write_text(created.read_text().replace("id: 116", "id: 2"))
    done = mtpb("problems", "list", "suite", "my-problems")
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "my-problems/002-count-vowels.yaml:1: duplicate id 2" in done.stderr
    assert str(installed_suite / "002-record-breaking-values.yaml") in done.stderr
    (tmp_path / "my-problems" / "002-count-vowels.yaml").unlink()

    # without --dir: refused, nothing written into the installed package or a ./problems folder
    done = mtpb("problems", "new", "Another")
    assert done.returncode == 2 and "part of the installed package" in done.stderr, done.stderr
    assert "--dir my-problems" in done.stderr and "export MTPB_PROBLEMS=" in done.stderr
    assert sorted(p.name for p in installed_suite.iterdir()) == before and not (tmp_path / "problems").exists()
    done = mtpb("problems", "new", "Another", "--dir", installed_suite)
    assert done.returncode == 2 and "inside an installed package" in done.stderr
    assert sorted(p.name for p in installed_suite.iterdir()) == before

    # MTPB_PROBLEMS: the same shell sees the author's problems, and `new` writes there
    env = {"MTPB_PROBLEMS": str(tmp_path / "my-problems")}
    done = mtpb("problems", "list", env=env)
    assert done.returncode == 0 and "Count vowels" in done.stdout and "Same group check" in done.stdout
    done = mtpb("problems", "new", "Another", env=env)
    assert done.returncode == 0 and (tmp_path / "my-problems" / "117-another.yaml").exists(), done.stderr
