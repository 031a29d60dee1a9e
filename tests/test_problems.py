import pytest

from mtpb.problems import ProblemError, load_problem, load_problems, parse_ids, parse_problem, render_prompt, select, \
    render_solution
from tests.conftest import DEMO, write_problem


def errors_of(text: str) -> list[str]:
    with pytest.raises(ProblemError) as info:
        parse_problem(text, "p.yaml")
    return info.value.errors


def test_demo_loads_and_renders():
    p = parse_problem(DEMO, "p.yaml")
    assert p.id == 1 and p.max_gen_length == 128 and len(p.turns) == 2 and len(p.tests) == 5
    assert p.prompts(p.tests[0])[0] == 'Assign the string "abc" to a variable named "raw".'
    assert p.solutions(p.tests[4])[0] == "raw = 'héllo'"


def test_rendering_matches_str_format_and_leaves_other_braces():
    inputs = {"a": [1, 2], "s": "x y"}
    for template in ['List {a} and "{s}".', "Dict {{ 'k': 1 }} and {{:.1f}} and {{s}}", "{a}{s}{a}"]:
        assert render_prompt(template, inputs) == template.format(**inputs)
    assert render_prompt("{x: 1} and {not_an_input}", {}) == "{x: 1} and {not_an_input}"
    assert render_solution("v = {s}; f'{other}'", inputs) == "v = 'x y'; f'{other}'"


@pytest.mark.parametrize("edit, message, line", [
    (("description:", "colour: red\ndescription:"), "unknown key 'colour'", 4),
    (("description:", "name: Again\ndescription:"), "duplicate key 'name' (first at line 2)", 4),
    (('"{text}" to', '"{txt}" to'), "placeholder {txt} is not an input variable", 6),
    (("  - inputs: {text: a}\n    output: a\n", ""), "4 tests: a problem set has exactly 5", 11),
    (("id: 1", "id: one"), "'id' must be an integer", 1),
    (("category: string", "category: strings"), "unknown category 'strings'", 3),
    (("{text: abba}", "{text: abba, extra: 1}"), "test 4 has inputs ['extra', 'text']", 17),
    (("turns:\n", "turns:\n  - solution: x = 1\n"), "turn 1 lacks the required key 'prompt'", 6),
    (("  - inputs: {text: a}\n", "  -\n"), "test 2 lacks the required key 'inputs'", 14),
])
def test_each_error_names_line_and_fix(edit, message, line):
    errors = errors_of(DEMO.lstrip().replace(*edit))
    assert any(message in e for e in errors), errors
    assert any(e.startswith(f"p.yaml:{line}:") for e in errors if message in e), errors


def test_unused_input_is_an_error():
    text = DEMO.lstrip().replace("{text: abc}", "{text: abc, n: 1}")
    for i in ("{text: a}", '{text: ""}', "{text: abba}", '{text: "héllo"}'):
        text = text.replace(i, i[:-1] + ", n: 1}")
    errors = errors_of(text)
    assert any("input 'n' is never used in any prompt" in e for e in errors), errors


def test_malformed_yaml_names_line():
    errors = errors_of("id: 1\nname: [unclosed\ncategory: x\n")
    assert len(errors) == 1 and "malformed YAML" in errors[0] and errors[0].startswith("p.yaml:")


def test_duplicate_ids_and_file_names(tmp_path):
    write_problem(tmp_path, DEMO, "001-demo.yaml")
    write_problem(tmp_path, DEMO, "001-other.yaml")
    with pytest.raises(ProblemError) as info:
        load_problems([tmp_path])
    assert any("duplicate id 1" in e for e in info.value.errors)
    bad = write_problem(tmp_path / "..", DEMO, "7-demo.yaml")
    with pytest.raises(ProblemError, match="file name must be NNN-slug.yaml"):
        load_problem(bad)


def test_parse_ids():
    assert [i for r in parse_ids("1,4,7-9") for i in r] == [1, 4, 7, 8, 9]
    assert parse_ids(None) is None
    with pytest.raises(ValueError, match="bad id range"):
        parse_ids("1,x")


def test_parse_ids_keeps_huge_ranges_as_ranges_and_rejects_open_or_backwards_ones():
    ids = parse_ids("1-1000000000,3")  # a set of a billion ints would take minutes and gigabytes
    problems = [parse_problem(DEMO.replace("id: 1", f"id: {i}")) for i in (3, 999_999_999, 1_000_000_001)]
    assert [p.id for p in select(problems, ids)] == [3, 999_999_999]
    with pytest.raises(ValueError, match="open id range '3-'"):
        parse_ids("3-")
    with pytest.raises(ValueError, match="backwards id range '5-3': write it low to high, 3-5"):
        parse_ids("5-3")


@pytest.mark.parametrize("edit, message, line", [
    (("name: Demo", "name: !foo Demo"), "unsupported YAML tag '!foo': write plain values", 2),
    (("id: 1", "id: !!python/object:os.system ls"), "unsupported YAML tag '!!python/object:os.system'", 1),
    (("{text: abc}", "{1: abc}"), "input name 1 must be an identifier string", 11),
    (("output: cba", "output: 2001-01-01"), "'2001-01-01' is a date in YAML: quote it", 12),
    (("output: cba", "output: !!int abc"), "'abc' is not a valid !!int: remove the tag", 12),
    (("description: Reverse a string.", "description: [a, b]"), "'description' must be a string", 4),
    (("description: Reverse a string.", "description: 12"), "'description' must be a string", 4),
])
def test_odd_values_are_one_clear_error(edit, message, line):
    errors = errors_of(DEMO.lstrip().replace(*edit))  # never a traceback (ConstructorError, TypeError)
    assert len(errors) == 1 and message in errors[0] and errors[0].startswith(f"p.yaml:{line}:"), errors


@pytest.mark.parametrize("edit, error", [
    (("id: 1", 'id: "one"'), "p.yaml:1: 'id' must be an integer, not str"),  # not also "must be positive"
    (("name: Demo", "name: 5"), "p.yaml:2: 'name' must be a string, not int"),  # not also "must not be empty"
])
def test_one_mistake_gives_one_error(edit, error):
    assert errors_of(DEMO.lstrip().replace(*edit)) == [error]


def test_malformed_turns_do_not_claim_inputs_are_unused():
    text = DEMO.lstrip()
    text = text[:text.index("turns:")] + "turns: {a: 1}\n" + text[text.index("tests:"):]
    assert errors_of(text) == ["p.yaml:5: 'turns' must be a list, not dict"]


def test_non_utf8_byte_names_its_line_and_the_fix(tmp_path):
    path = write_problem(tmp_path, DEMO)
    path.write_bytes(path.read_bytes().replace("héllo".encode(), b"h\xe9llo"))
    with pytest.raises(ProblemError) as info:
        load_problem(path)
    assert info.value.errors == [f"{path}:19: byte 0xe9 is not UTF-8 (the file is in another encoding): "
                                 "save the file as UTF-8"]


def test_folder_without_yaml_files_is_an_error(tmp_path):
    (tmp_path / "001-demo.yml").write_text(DEMO, encoding="utf-8")
    with pytest.raises(ProblemError) as info:
        load_problems([tmp_path])
    assert info.value.errors == [f"{tmp_path}: no .yaml problem files (found 1 .yml files: rename them to .yaml)"]


def test_a_file_named_twice_is_loaded_once(tmp_path):
    path = write_problem(tmp_path, DEMO)
    assert [p.id for p in load_problems([tmp_path, path, tmp_path / ".." / tmp_path.name / path.name])] == [1]


def test_yaml_aliases_are_refused_before_they_expand():
    laughs = "".join(f"l{i}: &l{i} [" + ", ".join([f"*l{i - 1}"] * 9) + "]\n" for i in range(1, 10))
    errors = errors_of(DEMO.lstrip() + "l0: &l0 [lol]\n" + laughs)   # 9**9 values if expanded
    assert any("YAML aliases (*name) are not supported" in e for e in errors)
    errors = errors_of(DEMO.lstrip() + "loop: &a [*a]\n")
    assert any("YAML aliases" in e for e in errors)
