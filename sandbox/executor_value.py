"""Inside the sandbox: run one program the original MTPB way and reduce its answer to canonical JSON.

The original harness rewrites the last statement to print its value, runs the program with a
recording `print`, and compares the first argument of the LAST print call with the expected output
(check_equivalence). The comparison happens outside the sandbox, so here we record everything it
could need, as JSON: the value after the original's normalisation steps, and what each of its
coercions to an expected type (int, float, str, list, dict) would give. Encoding keeps Python
equality: tuples, sets and dicts are tagged so they decode to the same types outside.
"""
import ast
import builtins
import sys

MAX_ITEMS = 100_000      # encoded containers larger than this are reported as too large
MAX_TEXT = 1 << 20       # characters of a string value or of a coercion to str
MAX_REPR = 2000


class TooLarge(Exception):
    pass


def rewrite_with_print(code: str) -> str:
    """The original's rewrite_ast_with_print, wrapped as its try_rewrite: any failure keeps the code."""
    try:
        tree = ast.parse(code)
        try:
            last_is_print = tree.body[-1].value.func.id.startswith("print")
        except Exception:
            last_is_print = False
        if last_is_print:
            return code
        last = tree.body[-1]
        last.value = ast.Call(func=ast.Name(id="print", ctx=ast.Load()), args=[last.value], keywords=[])
        ast.fix_missing_locations(last)
        return ast.unparse(tree)
    except Exception:
        return code


def encode(value, budget=None):
    """Equality-preserving JSON: enc(x) decodes outside to y with (y == v) == (x == v) for JSON v."""
    budget = budget if budget is not None else [MAX_ITEMS]
    budget[0] -= 1
    if budget[0] < 0:
        raise TooLarge()
    t = type(value)
    if value is None or t is bool or t is int or t is float:
        return value
    if isinstance(value, str):
        if len(value) > MAX_TEXT:
            raise TooLarge()
        return str(value)
    if t is list:
        return [encode(v, budget) for v in value]
    if t is tuple:
        return {"$tuple": [encode(v, budget) for v in value]}
    if t in (set, frozenset):
        return {"$set": [encode(v, budget) for v in value]}
    if t is dict:
        return {"$dict": [[encode(k, budget), encode(v, budget)] for k, v in value.items()]}
    np = sys.modules.get("numpy")
    if np is not None:
        if isinstance(value, np.bool_):
            return bool(value)
        if isinstance(value, np.integer):
            return int(value)
        if isinstance(value, np.floating):
            return float(value)
        if isinstance(value, np.ndarray):
            if value.size > MAX_ITEMS:
                raise TooLarge()
            return {"$ndarray": encode(value.tolist(), budget)}
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return {"$obj": f"{t.__module__}.{t.__qualname__}", "repr": safe_repr(value)}


def safe_repr(value) -> str:
    try:
        text = repr(value)
    except Exception as e:
        text = f"<unrepresentable {type(value).__name__}: {type(e).__name__}>"
    return text if len(text) <= MAX_REPR else text[:MAX_REPR] + "..."


def _attempt(fn):
    try:
        return {"ok": fn()}
    except TooLarge:
        return {"error": "too large"}
    except BaseException as e:
        return {"error": f"{type(e).__name__}: {str(e)[:200]}"}


def normalise_original(o1):
    """check_equivalence steps (1)-(3), exactly: returns (kind, value). A value of a numpy type means
    numpy is loaded; where it is not, nothing can be one, and importing it would cost a child that
    never used it a tenth of a second."""
    np = sys.modules.get("numpy")
    if str(type(o1)) == "<class 'pandas.core.series.Series'>":
        return "series", o1.to_numpy()
    elif type(o1) == list:
        if len(o1) > 0 and type(o1[0]) == tuple:
            o1 = [list(t) for t in o1]
    elif np is None:
        pass
    elif type(o1) in [np.uint8, np.int16, np.int32, np.int64]:
        o1 = int(o1)
    elif type(o1) in [np.float16, np.float32, np.float64]:
        o1 = float(o1)
    elif type(o1) in [np.bool_]:
        o1 = bool(o1)
    elif type(o1) == np.ndarray:
        o1 = o1.tolist()
    return "value", o1


def reduce_value(args: tuple) -> dict:
    """Everything the verdict needs about the first argument of the last print call."""
    if not args:
        return {"empty_print": True}
    o = args[0]
    out = {"repr": safe_repr(o), "pytype": f"{type(o).__module__}.{type(o).__qualname__}"}
    try:
        kind, o1 = normalise_original(o)
    except BaseException as e:
        out["normalise_error"] = f"{type(e).__name__}: {str(e)[:200]}"
        return out
    if kind == "series":
        out["series"] = _attempt(lambda: encode(o1.tolist()))
        out["deep"] = out["series"]
        return out
    out["type"] = type(o1).__name__ if type(o1) in (str, int, float, bool, list, dict, type(None)) else "other"
    out["value"] = _attempt(lambda: encode(o1))
    out["as"] = {
        "int": _attempt(lambda: encode(int(o1))),
        "float": _attempt(lambda: encode(float(o1))),
        "str": _attempt(lambda: encode(_capped_str(o1))),
        "list": _attempt(lambda: encode(list(o1))),
        "dict": _attempt(lambda: encode(dict(o1))),
    }
    # The raw object, tuples and arrays kept as tagged, for the fixed (`mtpb`) rules.
    out["deep"] = _attempt(lambda: encode(o))
    return out


def _capped_str(o1):
    text = str(o1)
    if len(text) > MAX_TEXT:
        raise TooLarge()
    return text


def run_program(program: str) -> dict:
    """Execute like the original harness and return the JSON-ready record."""
    state = {"count": 0, "args": None}
    real_print = builtins.print

    def print(*args, **kwargs):  # the original overload: record, then really print
        state["count"] += 1
        state["args"] = args
        return real_print(*args, **kwargs)

    code = rewrite_with_print(program)
    namespace = {"__name__": "__main__", "__builtins__": builtins, "print": print}
    exception = None
    try:
        exec(compile(code, "<program>", "exec"), namespace)
    except SystemExit as e:
        if e.code not in (None, 0):
            exception = f"SystemExit: {e.code}"
    except BaseException as e:  # noqa: B902  the program's own failure, reported as data
        exception = f"{type(e).__name__}: {str(e)[:500]}"
    try:
        sys.stdout.flush()
    except BaseException:
        pass
    reply = {"prints": state["count"], "exception": exception,
             "memory_error": bool(exception and exception.startswith("MemoryError"))}
    if state["count"]:
        reply["value"] = reduce_value(state["args"])
    return reply
