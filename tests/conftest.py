"""Shared fixtures: the process sandbox (real bubblewrap where present) and small problem files."""
from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
ORIGINAL = REPO.parent / "shared" / "mtpb-original" / "mtpb.jsonl"


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
