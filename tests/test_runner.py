"""The runner end to end on the bundled suite: reference scores 100%, resume, kill -9, replay."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
from click.testing import CliRunner

from mtpb.cli import main


def keys(path):
    return Counter((r["problem_id"], r["test_index"], r["sample_index"]) for r in map(json.loads, open(path)))


def run_cli(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 0, result.output
    return result


def test_reference_backend_scores_everything_and_resume_does_nothing_twice(tmp_path):
    out = str(tmp_path / "run")
    run_cli("run", "--backend", "reference", "--ids", "1-3", "--sandbox", "process", "--out", out)
    run_cli("run", "--backend", "reference", "--ids", "1-6", "--sandbox", "process", "--out", out)
    summary = json.load(open(f"{out}/summary.json"))
    assert summary["pass_rate"] == 100.0 and summary["n_problems"] == 6 and summary["n_programs"] == 30
    for name in ("samples.jsonl", "results.jsonl"):
        counts = keys(f"{out}/{name}")
        assert len(counts) == 30 and set(counts.values()) == {1}
    manifest = json.load(open(f"{out}/run.json"))
    assert manifest["problem_ids"] == [1, 2, 3, 4, 5, 6] and manifest["scoring"] == "mtpb"


def test_changed_settings_are_refused_with_a_clear_error(tmp_path):
    out = str(tmp_path / "run")
    run_cli("run", "--backend", "reference", "--ids", "1", "--sandbox", "process", "--out", out)
    result = CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1", "--mode", "single",
                                       "--sandbox", "process", "--out", out])
    assert result.exit_code == 2 and "holds a run with mode='multi'" in result.output


def test_kill_9_loses_nothing_and_repeats_nothing(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mtpb", "run", "--backend", "reference", "--ids", "1-30", "--n", "6",
           "--batch-size", "20", "--sandbox", "process", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while time.time() < deadline:
        results = out / "results.jsonl"
        if results.exists() and results.stat().st_size > 20000:
            break
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    partial = sum(1 for _ in open(out / "results.jsonl"))
    assert 0 < partial < 900, "the kill should land mid-run"
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for name in ("samples.jsonl", "results.jsonl"):
        counts = keys(out / name)
        assert len(counts) == 900 and set(counts.values()) == {1}, name
    assert all(r["passed"] for r in map(json.loads, open(out / "results.jsonl")))


def test_ctrl_c_says_how_to_resume_without_tracebacks(tmp_path):
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "mtpb", "run", "--backend", "reference", "--ids", "1-30", "--n", "6",
           "--batch-size", "20", "--sandbox", "process", "--out", str(out)]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 60
    while time.time() < deadline and not ((out / "results.jsonl").exists()
                                          and (out / "results.jsonl").stat().st_size > 20000):
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)     # what Ctrl-C sends: the whole foreground group
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in err and "Traceback" not in err and "Exception in thread" not in err, err
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    assert set(keys(out / "results.jsonl").values()) == {1} and len(keys(out / "results.jsonl")) == 900


def test_replay_reproduces_programs(tmp_path):
    first, second = str(tmp_path / "a"), str(tmp_path / "b")
    run_cli("run", "--backend", "reference", "--ids", "2,5", "--sandbox", "process", "--out", first)
    run_cli("run", "--backend", "replay", "-B", f"samples={first}/samples.jsonl", "--ids", "2,5",
            "--sandbox", "process", "--out", second)
    programs = lambda d: sorted(r["program"] for r in map(json.loads, open(f"{d}/samples.jsonl")))
    assert programs(first) == programs(second)
    assert json.load(open(f"{second}/summary.json"))["pass_rate"] == 100.0


def test_single_mode_runs_and_builds_one_turn(tmp_path):
    out = str(tmp_path / "single")
    run_cli("run", "--backend", "reference", "--ids", "1-4", "--mode", "single", "--sandbox", "process", "--out", out)
    for r in map(json.loads, open(f"{out}/samples.jsonl")):
        assert len(r["turns"]) == 1 and r["program"].count("\n# ") == 1
    assert json.load(open(f"{out}/summary.json"))["n_programs"] == 20


def test_unknown_backend_and_bad_ids_are_clear(tmp_path):
    result = CliRunner().invoke(main, ["run", "--backend", "nope", "--out", str(tmp_path / "x"), "--sandbox", "process"])
    assert result.exit_code == 2 and "unknown backend 'nope'" in result.output
    result = CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1,x", "--out", str(tmp_path / "y")])
    assert result.exit_code == 2 and "bad id range" in result.output
    result = CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1,9999", "--sandbox", "process",
                                       "--out", str(tmp_path / "z")])
    assert result.exit_code == 0 and "no problem set has id 9999" in result.output, result.output


def _fail(*args):
    result = CliRunner().invoke(main, list(args))
    assert result.exit_code == 2 and "Traceback" not in result.output, result.output
    return result.output


def test_a_changed_problem_is_refused_and_a_refused_resume_changes_nothing(tmp_path):
    import shutil
    from mtpb.paths import data_path
    suite = tmp_path / "suite"
    suite.mkdir()
    original = next(data_path("problems").glob("001-*.yaml"))
    shutil.copy(original, suite / original.name)
    out = str(tmp_path / "run")
    args = ["run", "--backend", "reference", "--problems", str(suite), "--sandbox", "process", "--out", out]
    run_cli(*args)
    manifest = (tmp_path / "run" / "run.json").read_bytes()
    text = (suite / original.name).read_text()
    assert "max_gen_length: 128" in text
    (suite / original.name).write_text(text.replace("max_gen_length: 128", "max_gen_length: 129"))
    assert "problem(s) 1 changed since" in _fail(*args)
    (suite / original.name).write_text(text)
    results = tmp_path / "run" / "results.jsonl"
    lines = results.read_text().splitlines()
    for bad, message in (("{}", "results.jsonl:2: problem_id, test_index or sample_index is missing"),
                         ("[1]", "results.jsonl:2: not a JSON object"),
                         ('{"problem_id": "\xff"}', "results.jsonl:2:")):
        results.write_text("\n".join([lines[0], bad, *lines[2:]]) + "\n")
        assert message in _fail(*args)
        assert (tmp_path / "run" / "run.json").read_bytes() == manifest
    results.write_bytes(b"\n".join([lines[0].encode(), b'{"a": "\xff"}', *(x.encode() for x in lines[2:])]) + b"\n")
    assert "results.jsonl:2: not a JSON line" in _fail(*args)
    (tmp_path / "run" / "run.json").write_text("[]")
    assert "not a JSON object" in _fail(*args)


def test_a_new_run_that_fails_before_its_first_sample_leaves_no_run_behind(tmp_path):
    pytest.importorskip("torch")
    out = tmp_path / "run"
    args = ["run", "--backend", "codegen", "-B", "device=cpu", "--ids", "1", "--sandbox", "process", "--out", str(out)]
    assert "completion model" in _fail(*args, "--mode", "chat")
    assert not (out / "run.json").exists()
    result = CliRunner().invoke(main, [*args, "--max-gen-length", "8"])
    assert result.exit_code == 0, result.output


def test_bad_out_and_non_finite_sampling_settings_are_clear(tmp_path):
    (tmp_path / "file").write_text("")
    assert "cannot create the folder" in _fail("run", "--backend", "reference", "--ids", "1", "--sandbox", "process",
                                               "--out", str(tmp_path / "file" / "run"))
    for option in ("--temperature", "--top-p"):
        for value in ("nan", "inf"):
            result = CliRunner().invoke(main, ["run", "--backend", "reference", option, value,
                                               "--out", str(tmp_path / "x")])
            assert result.exit_code == 2 and ("finite" in result.output or "range" in result.output), result.output
    assert not (tmp_path / "x" / "run.json").exists()
