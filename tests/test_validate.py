"""`mtpb problems validate --execute` fails when it cannot check: turns without a solution, a folder
imported from the original release, nothing executed; and it names problems that read a file no sandbox has."""
import json

from click.testing import CliRunner

from mtpb.cli import main
from mtpb.importer import import_original
from tests.conftest import DEMO, write_problem


def validate(*args):
    return CliRunner().invoke(main, ["problems", "validate", *args])


def release_line(pid: int, **changes) -> str:
    """A problem line in the original release's format (our own text)."""
    return json.dumps({"id": str(pid), "name": f"Echo {pid}", "category": "string", "description": "Echo a word.",
                       "prompts": ['Assign "{w}" to "word".', "Print word."],
                       "inputs": [{"w": f"a{i}"} for i in range(5)], "outputs": [f"a{i}" for i in range(5)],
                       "max_gen_length": 128, **changes})


def test_a_turn_without_solution_fails_naming_file_and_turn(tmp_path):
    good = write_problem(tmp_path, DEMO)
    bad = write_problem(tmp_path, DEMO.replace("id: 1", "id: 2").replace("    solution: print(raw[::-1])\n", ""),
                        name="002-demo.yaml")
    result = validate("--execute", "--sandbox", "process", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert f"{bad}: turn 2 has no solution" in result.output
    assert "5 of 5 test programs pass" in result.output, "the problem sets that have solutions still run"
    assert str(good) not in result.output and "Traceback" not in result.output
    assert validate(str(tmp_path)).exit_code == 0, "without --execute a turn may lack a solution"


def test_nothing_executed_fails(tmp_path):
    write_problem(tmp_path, DEMO.replace("    solution: raw = {text}\n", "")
                  .replace("    solution: print(raw[::-1])\n", ""))
    result = validate("--execute", "--sandbox", "process", str(tmp_path))
    assert result.exit_code == 1, result.output
    assert "001-demo.yaml: turns 1, 2 have no solution" in result.output
    assert "no test program was executed: --execute checked nothing" in result.output


def test_an_imported_folder_says_it_has_no_solutions(tmp_path):
    release, imported = tmp_path / "mtpb.jsonl", tmp_path / "imported"
    release.write_text(release_line(1) + "\n" + release_line(2) + "\n")
    import_original(release, imported)
    result = validate("--execute", "--sandbox", "process", str(imported))
    assert result.exit_code == 1, result.output
    assert (f"{imported}: imported from the original MTPB release (2 problem set(s)): it has no reference solutions, "
            f"nothing to execute; validate without --execute checks the files: mtpb problems validate {imported}"
            ) in result.output
    assert "turn 1 has no solution" not in result.output, "one line for the folder, not one per file"
    assert validate(str(imported)).exit_code == 0


def test_a_problem_reading_a_file_no_sandbox_has_is_named(tmp_path):
    path = write_problem(tmp_path, DEMO.replace("solution: raw = {text}",
                                                "solution: raw = open('words.txt').read() or {text}"))
    result = validate(str(tmp_path))
    assert result.exit_code == 0, result.output
    assert f"{path}: problem 1 reads the file 'words.txt', which no sandbox provides" in result.output
    # a file the program writes itself first is no such file
    write_problem(tmp_path, DEMO.replace("solution: raw = {text}",
                                         "solution: open('w.txt', 'w').write({text}); raw = open('w.txt').read()"))
    assert "reads the file" not in validate(str(tmp_path)).output
