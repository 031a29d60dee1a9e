"""The run directory: file names, the one JSONL reader (strict and lenient), tail repair, atomic writes."""
from __future__ import annotations

import json

import pytest

from mtpb.rundir import (JsonlWriter, RunDir, RunDirError, chunks, read_jsonl, repair_tail, write_json_atomic,
                         write_jsonl_atomic)

TORN = b'{"a": 1}\n{"b": 2}\n{"c": 3, "d\n{"e": 5}\n'   # line 3 torn by a killed writer


def test_the_file_names_are_the_contract(tmp_path):
    run = RunDir(tmp_path / "run")
    assert [p.name for p in (run.manifest, run.samples, run.results, run.problems, run.summary)] == [
        "run.json", "samples.jsonl", "results.jsonl", "problems.jsonl", "summary.json"]
    assert all(p.parent == tmp_path / "run" for p in (run.manifest, run.results))


def test_strict_reading_names_the_bad_line_and_the_fix(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(TORN)
    read = []
    with pytest.raises(RunDirError, match=r"results\.jsonl:3: not a JSON line \(.*\): fix or delete that line"):
        read.extend(read_jsonl(path))
    assert read == [(1, {"a": 1}), (2, {"b": 2})], "the lines before it are read"
    path.write_bytes(b'{"a": 1}\n\n[1, 2]\n')
    with pytest.raises(RunDirError, match=r"results\.jsonl:3: not a JSON object: fix or delete that line"):
        list(read_jsonl(path))
    path.write_bytes(b'{"a": "\xff"}\n')
    with pytest.raises(RunDirError, match=r"results\.jsonl:1: not a JSON line"):
        list(read_jsonl(path))


def test_lenient_reading_skips_counts_and_warns_once(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(TORN + b"[1]\n" + b'{"f": "\xff"}\n')
    warnings = []
    assert list(read_jsonl(path, warnings)) == [(1, {"a": 1}), (2, {"b": 2}), (4, {"e": 5}), (6, {"f": "\ufffd"})]
    assert len(warnings) == 1
    assert warnings[0].startswith(f"{path}:3: not a JSON line") and "2 malformed line(s)" in warnings[0]
    assert "fix or delete them" in warnings[0]
    clean = []
    path.write_bytes(b'{"a": 1}\n')
    assert list(read_jsonl(path, clean)) == [(1, {"a": 1})] and clean == []


def test_a_file_not_written_yet_has_no_lines(tmp_path):
    assert list(read_jsonl(tmp_path / "absent.jsonl")) == []
    assert list(read_jsonl(tmp_path / "absent.jsonl", [])) == []


def test_repair_cuts_only_a_torn_last_line(tmp_path):
    path = tmp_path / "samples.jsonl"
    path.write_bytes(b'{"a": 1}\n{"b": 2}\n{"c": 3, "d')
    assert repair_tail(path) == len(b'{"c": 3, "d')
    assert path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    assert repair_tail(path) == 0 and path.read_bytes() == b'{"a": 1}\n{"b": 2}\n'
    path.write_bytes(b'{"only": "torn' * 10000)   # longer than one step of the backward walk
    repair_tail(path)
    assert path.read_bytes() == b""
    assert repair_tail(tmp_path / "absent.jsonl") == 0


def test_the_writer_repairs_then_appends_whole_lines(tmp_path):
    path = tmp_path / "results.jsonl"
    path.write_bytes(b'{"a": 1}\n{"torn')
    writer = JsonlWriter(path)
    writer.write({"b": "ü"})
    writer.checkpoint()
    writer.close()
    assert list(read_jsonl(path)) == [(1, {"a": 1}), (2, {"b": "ü"})]


def test_atomic_rewrite_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "problems.jsonl"
    write_jsonl_atomic(path, [{"id": 1}, {"id": 2}])
    assert path.read_text() == '{"id": 1}\n{"id": 2}\n'
    write_jsonl_atomic(path, ({"id": i} for i in (3,)))   # any iterable
    assert path.read_text() == '{"id": 3}\n'
    with pytest.raises(TypeError):
        write_jsonl_atomic(path, [{"id": 4}, {"id": object()}])   # fails half way through
    assert path.read_text() == '{"id": 3}\n', "a failed rewrite leaves the old file"
    write_json_atomic(tmp_path / "run.json", {"n": 1, "model": "ü"})
    assert json.loads((tmp_path / "run.json").read_text()) == {"n": 1, "model": "ü"}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["problems.jsonl", "run.json"]


def test_manifest_reading_and_its_errors(tmp_path):
    run = RunDir(tmp_path)
    assert run.read_manifest() is None
    run.write_manifest({"n": 2})
    assert run.read_manifest() == {"n": 2}
    run.manifest.write_text("{not json")
    with pytest.raises(RunDirError, match=r"run\.json:1: not readable JSON .*restore it or start a new run"):
        run.read_manifest()
    run.manifest.write_text("[]")
    with pytest.raises(RunDirError, match=r"run\.json:1: not a JSON object"):
        run.read_manifest()


def test_create_says_why_it_cannot(tmp_path):
    (tmp_path / "file").write_text("")
    with pytest.raises(RunDirError, match="cannot create the folder.*give a folder path you can write to"):
        RunDir(tmp_path / "file" / "run").create()
    RunDir(tmp_path / "a" / "b").create()
    assert (tmp_path / "a" / "b").is_dir()


def test_discard_if_unused_keeps_any_run_with_work(tmp_path):
    run = RunDir(tmp_path)
    run.write_manifest({})
    run.write_problems([{"id": 1}])
    run.results.write_text("")
    run.discard_if_unused()
    assert list(tmp_path.iterdir()) == []
    run.write_manifest({})
    run.samples.write_text('{"problem_id": 1}\n')
    run.discard_if_unused()
    assert run.manifest.exists() and run.samples.exists()


def test_chunks():
    assert list(chunks(range(5), 2)) == [[0, 1], [2, 3], [4]]
    assert list(chunks(iter([]), 3)) == []
