"""Shared fixtures: the process sandbox (real bubblewrap where present), small problem files, report runs."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
from install_fixtures import installed_mtpb  # noqa: F401  (the fixture, for every test module)

REPO = Path(__file__).resolve().parent.parent
ORIGINAL = REPO.parent / "shared" / "mtpb-original" / "mtpb.jsonl"


@pytest.fixture(autouse=True)
def _no_user_problem_folders(monkeypatch):
    """$MTPB_PROBLEMS in the shell that runs the tests would add its folders to every default source."""
    monkeypatch.delenv("MTPB_PROBLEMS", raising=False)


@pytest.fixture
def report_runs(tmp_path):
    """(run folders, problems folder) of the hand-computed report fixture (tests/fixtures/reports/runs.py)."""
    from tests.fixtures.reports import runs
    return runs.write_fixture(tmp_path)


@pytest.fixture
def cmp(report_runs):
    from mtpb.comparison import load_comparison
    dirs, problems = report_runs
    return load_comparison(dirs, [str(problems)])


@pytest.fixture(scope="session")
def process_sandbox():
    from mtpb.sandboxes.base import Limits
    from mtpb.sandboxes.process import ProcessSandbox
    box = ProcessSandbox(workers=2, limits=Limits(timeout=5))
    yield box
    box.close()


def write_problem(folder: Path, text: str, name: str = "001-demo.yaml") -> Path:
    path = folder / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


DEMO = """
id: 1
name: Demo
category: string
description: Reverse a string.
turns:
  - prompt: Assign the string "{text}" to a variable named "raw".
    solution: raw = {text}
  - prompt: Print "raw" reversed.
    solution: print(raw[::-1])
tests:
  - inputs: {text: abc}
    output: cba
  - inputs: {text: a}
    output: a
  - inputs: {text: ""}
    output: ""
  - inputs: {text: abba}
    output: abba
  - inputs: {text: "héllo"}
    output: "olléh"
"""
