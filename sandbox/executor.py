"""The in-sandbox executor: a fork server that runs untrusted programs and reports JSON only.

Runs inside the docker and process sandboxes alike; stdlib, numpy and pandas only, and nothing from
mtpb. Protocol: one JSON request a line on stdin ({"id", "program", "timeout"}, and "check" for
check mode: executor_check.py), one JSON reply a line on stdout. Each program runs in a forked child
under rlimits, in its own session, with a private working folder. Forking costs in proportion to
what the forking process has mapped: ~0.5 ms from a bare interpreter, ~4 ms once numpy and pandas
are imported. So this executor imports neither, and forks the programs that do not name them; a
program that names numpy or a library built on it goes to the numpy helper, a copy of this executor
(its child, forked on first need) with numpy imported, and one that names pandas to the pandas
helper, with both imported, so that those programs get them for free. (MTPB's prompts start with
`import numpy as np`: most programs need numpy, few pandas, which doubles the cost of a fork.) The child reduces the last printed value to canonical
JSON (executor_value.py) so no untrusted object and no expected output ever crosses the boundary.
The wall timeout is kept by the forking parent, outside the program's process group, and after each
program every process and file it left is removed.
"""
import ctypes
import gc
import json
import os
import resource
import select
import shutil
import signal
import sys
import time

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import executor_value  # noqa: E402  (the reducer; imported after the thread settings above)
import executor_check  # noqa: E402  (check mode: HumanEval-style programs judged by their tests)

try:
    LIBC = ctypes.CDLL(None, use_errno=True)  # loaded once: every child and every cleanup uses it
except OSError:
    LIBC = None

PR_SET_CHILD_SUBREAPER = 36
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
IPC_RMID = 0
# Signals a program could send its executor (same uid) whose default is to end it; ignored by the
# executor and restored in each child. SIGKILL and SIGSTOP cannot be; the host retries those.
SHIELDED = [s for s in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1,
                        signal.SIGUSR2, signal.SIGALRM, signal.SIGVTALRM, signal.SIGPROF, signal.SIGIO,
                        signal.SIGPWR, signal.SIGTRAP, signal.SIGSYS, signal.SIGXCPU)]
UNPRIVILEGED = 65534
# A program that names pandas runs in the pandas helper (numpy and pandas imported), one that names
# another of these in the numpy helper. One that reaches numpy another way runs here and imports it
# itself: the same answer, only slower.
SCIENTIFIC = ("numpy", "pandas", "sklearn", "scipy", "matplotlib", "seaborn", "statsmodels")
HELPERS = {"numpy": ("numpy",), "pandas": ("numpy", "pandas")}  # what each helper imports
LIMITS = {  # defaults; the host overrides them per executor in the "limits" of its JSON argument
    "memory_mb": 1024,     # address space on top of what the executor itself maps
    "nproc": 64,           # processes of the sandbox user on top of those alive at start
    "fsize_mb": 16,
    "nofile": 256,
    "stdout_bytes": 65536,
    "stderr_bytes": 16384,
    "result_bytes": 4 << 20,
}


def _prctl(option, arg):
    try:
        LIBC.prctl(option, arg, 0, 0, 0)
    except (OSError, AttributeError):
        pass


def _vm_size() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmSize:"):
                return int(line.split()[1]) * 1024
    return 0


def _my_processes() -> int:
    uid, count = os.getuid(), 0
    for name in os.listdir("/proc"):
        if name.isdigit():
            try:
                count += os.stat(f"/proc/{name}").st_uid == uid
            except OSError:
                pass
    return count


class Executor:
    def __init__(self, tmp_root: str, limits: dict, clean: list):
        self.tmp_root = tmp_root
        self.clean_roots = clean  # folders emptied after every program (the sandbox's private ones)
        self.limits = {**LIMITS, **limits}
        self.address_space = _vm_size() + (self.limits["memory_mb"] << 20)
        self.nproc = _my_processes() + self.limits["nproc"]
        _prctl(PR_SET_CHILD_SUBREAPER, 1)  # orphans of a program are reparented to us, not to init
        # Not dumpable: a program (same uid) can then neither open /proc/<us>/fd/* (write forged
        # replies to our stdout, read requests from our stdin) nor ptrace us. Children inherit it.
        _prctl(PR_SET_DUMPABLE, 0)
        self.dispositions = {sig: signal.signal(sig, signal.SIG_IGN) for sig in SHIELDED}
        self.scientific = False   # True in a helper: a copy that serves the programs naming numpy or pandas
        self.helpers = {}         # here: kind -> (pid, its stdin, its stdout), each forked on first need
        self.workdir = os.path.join(tmp_root, "run")  # each program's, made afresh and removed after it
        # set here once for every child (each would pay for the update of os.environ and the C environ)
        os.environ.update(HOME=self.workdir, TMPDIR=self.workdir)

    # ------------------------------------------------------------------ child side
    def _child(self, program: str, timeout: float, out_w: int, err_w: int, res_w: int, check: dict | None):
        try:
            os.setsid()
            for sig, disposition in self.dispositions.items():
                signal.signal(sig, disposition)
            _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
            os.makedirs(self.workdir, exist_ok=True)
            os.chdir(self.workdir)
            if os.getuid() == 0:  # never run a program as root, whatever started us
                os.setgroups([])
                os.setgid(UNPRIVILEGED)
                os.setuid(UNPRIVILEGED)
            cpu = int(timeout) + 1
            lim = self.limits
            for res, value in ((resource.RLIMIT_CPU, (cpu, cpu + 1)),
                               (resource.RLIMIT_AS, (self.address_space,) * 2),
                               (resource.RLIMIT_NPROC, (self.nproc,) * 2),
                               (resource.RLIMIT_FSIZE, (lim["fsize_mb"] << 20,) * 2),
                               (resource.RLIMIT_NOFILE, (lim["nofile"],) * 2),
                               (resource.RLIMIT_CORE, (0, 0))):
                try:
                    resource.setrlimit(res, value)
                except (ValueError, OSError):
                    pass
            null = os.open(os.devnull, os.O_RDONLY)
            os.dup2(null, 0)
            os.dup2(out_w, 1)
            os.dup2(err_w, 2)
            res_fd = os.dup2(res_w, 3)
            os.closerange(4, 1 << 16)
            sys.stdin = open(0, "r", closefd=False)
            sys.stdout = open(1, "w", closefd=False)
            sys.stderr = open(2, "w", closefd=False)
            if check is None:
                reply = executor_value.run_program(program)
            else:  # check mode: the request's {"alarm", "nonce"} (executor_check.py)
                reply = executor_check.run_check(program, float(check["alarm"]), str(check["nonce"]))
            data = json.dumps(reply, allow_nan=True).encode()
            for i in range(0, len(data), 65536):
                os.write(res_fd, data[i:i + 65536])
        finally:
            os._exit(0)

    # ------------------------------------------------------------------ parent side
    def serve(self, requests, replies):
        """Answer each request line with one reply line, in order. A helper first says it took the
        request, with an empty line."""
        for line in requests:
            if line.strip():
                if self.scientific:
                    replies.write("\n")
                    replies.flush()
                replies.write(self.answer(line) + "\n")
                replies.flush()

    def answer(self, line: str) -> str:
        request = {}
        try:
            request = json.loads(line)
            program = request["program"]
            if not self.scientific and any(name in program for name in SCIENTIFIC):
                return self.ask_helper("pandas" if "pandas" in program else "numpy", line)
            reply = self.run(program, float(request.get("timeout", 10)), request.get("check"))
        except HelperDied:
            raise
        except Exception as e:  # a bad request must not take the server down
            reply = {"internal_error": f"{type(e).__name__}: {e}"}
        reply["id"] = request.get("id")
        return json.dumps(reply, allow_nan=True)

    def import_libraries(self, names: tuple[str, ...]):
        """numpy (~0.1 s) and pandas (~0.3 s) are imported once, in a helper, so that its children get
        them for free (a program that reaches them otherwise imports them in its own child)."""
        for name in names:
            try:
                __import__(name)
            except ImportError:  # the reducer and programs then simply lack it
                pass
        gc.freeze()
        # the program's allowance stays on top of what the executor maps, the library now included
        self.address_space = _vm_size() + (self.limits["memory_mb"] << 20)

    def ask_helper(self, kind: str, line: str) -> str:
        """The helper's reply to one request line. A helper that died before it took the request (a
        program may kill it) is started afresh and asked again; one that dies while it holds a program
        takes this executor with it, so the host sees what it sees when a program kills the executor,
        and retries the program once."""
        for _attempt in range(2):
            if kind not in self.helpers:
                self.start_helper(kind)
            _, to_helper, from_helper = self.helpers[kind]
            try:
                to_helper.write(line if line.endswith("\n") else line + "\n")
                to_helper.flush()
                taken = from_helper.readline()
            except OSError:
                taken = ""
            if taken == "\n":
                break
            self.stop_helper(kind)
        else:
            raise HelperDied("the executor's numpy helper died twice before it took a program")
        try:
            reply = from_helper.readline()
        except OSError:
            reply = ""
        if not reply.endswith("\n"):
            raise HelperDied("the executor's numpy helper died while it ran a program")
        return reply[:-1]

    def start_helper(self, kind: str):
        to_read, to_write = os.pipe()
        from_read, from_write = os.pipe()
        sys.stdout.flush()
        pid = os.fork()
        if pid == 0:
            try:
                _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)  # this executor is single-threaded: no early fire
                _prctl(PR_SET_CHILD_SUBREAPER, 1)          # not inherited: the programs' orphans come here
                os.dup2(to_read, 0)   # the host's pipes are out of reach: its requests come from us
                os.dup2(from_write, 1)
                for fd in (to_read, to_write, from_read, from_write):
                    os.close(fd)
                for other in list(self.helpers):  # another helper's pipes are not this one's to hold
                    self.stop_helper(other, kill=False)
                self.scientific = True
                self.import_libraries(HELPERS[kind])
                self.serve(open(0, "r", closefd=False), open(1, "w", closefd=False))
            finally:
                os._exit(0)
        os.close(to_read)
        os.close(from_write)
        self.helpers[kind] = (pid, open(to_write, "w"), open(from_read, "r"))

    def stop_helper(self, kind: str, kill: bool = True):
        pid, to_helper, from_helper = self.helpers.pop(kind)
        for f in (to_helper, from_helper):
            try:
                f.close()
            except OSError:
                pass
        if not kill:
            return
        try:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass

    def run(self, program: str, timeout: float, check: dict | None = None) -> dict:
        pipes = [os.pipe() for _ in range(3)]
        sys.stdout.flush()
        start = time.monotonic()
        start_wall = int(time.time())
        pid = os.fork()
        if pid == 0:
            for r, _ in pipes:
                os.close(r)
            self._child(program, timeout, *(w for _, w in pipes), check)
        for _, w in pipes:
            os.close(w)
        caps = (self.limits["stdout_bytes"], self.limits["stderr_bytes"], self.limits["result_bytes"])
        bufs, sizes = [bytearray(), bytearray(), bytearray()], [0, 0, 0]
        open_fds = {r: i for i, (r, _) in enumerate(pipes)}
        pidfd = os.pidfd_open(pid)
        status, timed_out = None, False
        deadline = start + timeout
        while status is None:
            left = deadline - time.monotonic()
            if left <= 0:
                timed_out = True
                self._kill_group(pid)
                _, status = os.waitpid(pid, 0)
                break
            ready, _, _ = select.select(list(open_fds) + [pidfd], [], [], left)
            for fd in ready:
                if fd == pidfd:
                    _, status = os.waitpid(pid, 0)
                else:
                    self._read(fd, open_fds, bufs, sizes, caps)
        os.close(pidfd)
        seconds = time.monotonic() - start
        self._kill_group(pid)
        self._kill_leftovers()
        while open_fds:  # every writer is gone now, so these reach EOF
            for fd in list(open_fds):
                self._read(fd, open_fds, bufs, sizes, caps)
        self._clean_files()
        self._clean_ipc(start_wall)
        reply = {"seconds": round(seconds, 4), "timed_out": timed_out,
                 "exit_code": os.WEXITSTATUS(status) if os.WIFEXITED(status) else None,
                 "signal": os.WTERMSIG(status) if os.WIFSIGNALED(status) else None,
                 "stdout": bufs[0].decode("utf-8", "replace"), "stderr": bufs[1].decode("utf-8", "replace"),
                 "stdout_truncated": sizes[0] > caps[0], "result": None}
        if sizes[2] > caps[2]:
            reply["result_error"] = "the printed value is too large to report"
        elif bufs[2]:
            try:
                reply["result"] = json.loads(bytes(bufs[2]))
            except ValueError:
                reply["result_error"] = "the result channel held something that is not one JSON value"
        return reply

    @staticmethod
    def _read(fd, open_fds, bufs, sizes, caps):
        try:
            chunk = os.read(fd, 65536)
        except BlockingIOError:
            return
        i = open_fds[fd]
        if not chunk:
            os.close(fd)
            del open_fds[fd]
            return
        sizes[i] += len(chunk)
        room = caps[i] + 1 - len(bufs[i])  # keep one byte past the cap to know it overflowed
        if room > 0:
            bufs[i] += chunk[:room]

    @staticmethod
    def _kill_group(pid):
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass

    def _kill_leftovers(self):
        """Kill every descendant left (daemons, stopped or setsid'd ones): as subreaper we adopt them.
        The helpers are ours to keep."""
        me, keep = os.getpid(), {pid for pid, _, _ in self.helpers.values()}
        for _ in range(1000):
            try:
                with open(f"/proc/{me}/task/{me}/children") as f:
                    kids = [int(x) for x in f.read().split() if int(x) not in keep]
            except OSError:
                kids = []
            if not kids:
                return
            for kid in kids:
                try:
                    os.kill(kid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for kid in kids:
                try:
                    os.waitpid(kid, 0)
                except ChildProcessError:
                    pass

    def _clean_files(self):
        for root in self.clean_roots:
            try:
                entries = list(os.scandir(root))
            except OSError:
                continue
            for entry in entries:
                try:
                    if entry.is_dir(follow_symlinks=False):
                        try:
                            os.rmdir(entry.path)  # the common case: the working folder, left empty
                        except OSError:
                            _open_up(entry.path)
                            shutil.rmtree(entry.path, ignore_errors=True)
                    else:
                        os.unlink(entry.path)
                except OSError:
                    pass

    @staticmethod
    def _clean_ipc(since: int):
        """SysV IPC objects outlive their creator: remove those of our uid made since the program began."""
        uid, libc = os.getuid(), LIBC
        if libc is None:
            return
        removers = {"shm": ("shmid", lambda i: libc.shmctl(i, IPC_RMID, None)),
                    "sem": ("semid", lambda i: libc.semctl(i, 0, IPC_RMID)),
                    "msg": ("msqid", lambda i: libc.msgctl(i, IPC_RMID, None))}
        for kind, (id_column, remove) in removers.items():
            try:
                with open(f"/proc/sysvipc/{kind}") as f:
                    header, *rows = f.read().splitlines()
            except (OSError, ValueError):
                continue
            columns = header.split()
            for row in rows:
                fields = dict(zip(columns, row.split()))
                if int(fields.get("uid", -1)) == uid and int(fields.get("ctime", 0)) >= since - 1:
                    remove(int(fields[id_column]))


class HelperDied(Exception):
    pass


def _open_up(top: str):
    """A program may leave folders it made unreadable (chmod 000): open them, top down, before removing."""
    try:
        os.chmod(top, 0o700)
    except OSError:
        return
    for folder, subfolders, _ in os.walk(top):
        for name in subfolders:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                try:
                    os.chmod(path, 0o700)
                except OSError:
                    pass


def main():
    args = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    tmp_root = args.get("tmp_root") or "/tmp"
    os.makedirs(tmp_root, exist_ok=True)
    executor = Executor(tmp_root, args.get("limits", {}), args.get("clean", [tmp_root]))
    # Everything imported so far is shared with every child: frozen, the collector never walks it,
    # so a child's collections write none of those pages (no copy-on-write faults for them).
    gc.freeze()
    sys.stdout.write(json.dumps({"ready": True, "pid": os.getpid(), "uid": os.getuid(),
                                 "python": sys.version.split()[0]}) + "\n")
    sys.stdout.flush()
    try:
        executor.serve(sys.stdin, sys.stdout)
    except HelperDied as e:
        sys.exit(str(e))
    for pid, to_helper, _ in executor.helpers.values():  # end of input: the helpers' too, waited for
        to_helper.close()
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
