"""`mtpb execute` on the original sampler's files and ours: input order, malformed lines named."""
import json

from click.testing import CliRunner

from mtpb.cli import main


def test_original_format_in_input_order_with_a_bad_line(tmp_path):
    samples = tmp_path / "samples.jsonl"
    lines = [
        {"id": "3", "input": {"a": 1}, "gold_output": 7980, "completions": "x = 7980\nprint(x)"},
        {"id": "4", "input": {"a": 2}, "gold_output": {"k": 1}, "completions": "print({'k': 1})"},
        "{broken",
        {"id": "5", "input": {}, "gold_output": 2, "completions": "1 / 0"},
    ]
    samples.write_text("\n".join(l if isinstance(l, str) else json.dumps(l) for l in lines) + "\n")
    result = CliRunner().invoke(main, ["execute", str(samples), "--out", str(tmp_path / "run"), "--sandbox", "process"])
    assert result.exit_code == 1 and "samples.jsonl:3:" in result.output
    results = [json.loads(l) for l in open(tmp_path / "run" / "results.jsonl")]
    assert [r["index"] for r in results] == [0, 1, 2, 3]
    assert [r["id"] for r in results] == ["3", "4", None, "5"]
    assert [r["status"] for r in results] == ["passed", "failed", "failed", "error"]  # original rules: dicts never pass
    assert json.load(open(tmp_path / "run" / "run.json"))["scoring"] == "original"


def test_our_samples_with_fixed_rules(tmp_path):
    run = tmp_path / "ref"
    assert CliRunner().invoke(main, ["run", "--backend", "reference", "--ids", "1-2", "--sandbox", "process",
                                     "--out", str(run)]).exit_code == 0
    result = CliRunner().invoke(main, ["execute", str(run / "samples.jsonl"), "--out", str(tmp_path / "again"),
                                       "--sandbox", "process"])
    assert result.exit_code == 0, result.output
    results = [json.loads(l) for l in open(tmp_path / "again" / "results.jsonl")]
    assert len(results) == 10 and all(r["passed"] for r in results)
