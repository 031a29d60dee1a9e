import subprocess
import sys

from click.testing import CliRunner

from mtpb.cli import main


def test_help_and_problems_list_import_neither_torch_nor_docker():
    code = ("import sys\nfrom click.testing import CliRunner\nfrom mtpb.cli import main\n"
            "for args in (['--help'], ['problems', 'list']):\n"
            "    r = CliRunner().invoke(main, args)\n    assert r.exit_code == 0, r.output\n"
            "heavy = [m for m in ('torch', 'docker', 'transformers') if m in sys.modules]\n"
            "assert not heavy, heavy\n")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_problems_new_then_validate(tmp_path):
    runner = CliRunner()
    result = runner.invoke(main, ["problems", "new", "Reverse words", "--dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    created = list(tmp_path.glob("116-reverse-words.yaml"))   # after the suite's 115: no id collides
    assert created
    result = runner.invoke(main, ["problems", "validate", "--execute", "--sandbox", "process", str(tmp_path)])
    assert result.exit_code == 0 and "5 of 5 test programs pass" in result.output, result.output


def test_validate_reports_errors_with_file_and_line(tmp_path):
    (tmp_path / "001-bad.yaml").write_text("id: 1\nname: x\ncategory: string\nturns: []\ntests: []\nextra: 1\n")
    result = CliRunner().invoke(main, ["problems", "validate", str(tmp_path)])
    assert result.exit_code == 1
    assert "001-bad.yaml:6: unknown key 'extra'" in result.output
    assert "Traceback" not in result.output


def test_show_a_problem():
    result = CliRunner().invoke(main, ["problems", "show", "1"])
    assert result.exit_code == 0 and "turn 1" in result.output


def test_problems_new_keeps_any_name_and_show_prints_brackets(tmp_path):
    runner = CliRunner()
    for name in ("Sum: two lists", "!!! yes", "x # not a comment", 'say "[/] hi"'):
        result = runner.invoke(main, ["problems", "new", name, "--dir", str(tmp_path)])
        assert result.exit_code == 0, result.output
    result = runner.invoke(main, ["problems", "validate", str(tmp_path)])
    assert result.exit_code == 0, result.output
    listed = runner.invoke(main, ["problems", "list", str(tmp_path)])
    assert listed.exit_code == 0, listed.output
    assert "x # not a comment" in listed.output and '"[/] hi"' in listed.output
    shown = runner.invoke(main, ["problems", "show", "119", "--problems", str(tmp_path)])
    assert shown.exit_code == 0 and 'say "[/] hi"' in shown.output, shown.output
    file = tmp_path / "file"
    file.write_text("")
    result = runner.invoke(main, ["problems", "new", "x", "--dir", str(file / "sub")])
    assert result.exit_code == 2 and "cannot create the folder" in result.output


def test_show_keeps_square_brackets_of_the_suite():
    result = CliRunner().invoke(main, ["problems", "show", "17"])
    assert result.exit_code == 0 and "[i" in result.output, result.output
