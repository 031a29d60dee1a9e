"""Hostile programs against both sandboxes: none passes, the host is untouched, nothing is left.

Each attack runs in a one-worker sandbox and is followed by a probe in the same sandbox that looks
for anything the attack left (processes, files, IPC objects) and must pass: so the harness keeps
going and nothing of one program survives into the next. After every attack the host is checked:
canary files unchanged, no file written outside, no process of the sandbox left. An attack that
needs the answer to pass is given an expected output it cannot know (or the secret it tries to
steal), and verdicts use the fixed rules (`mtpb`). An attack that probes many targets (hosts, sockets,
paths) instead prints the list of those it reached and must pass with an empty list: it runs to its
end, and a single target reached fails the test.
"""
from __future__ import annotations

import os
import secrets
import socket
import threading
from dataclasses import dataclass
from pathlib import Path

import pytest

import mtpb.sandboxes.base as sandbox_base
from mtpb.scoring import verdict
from docker_fixtures import docker, open_box, wait_for

TIMEOUT = 5.0
TOKEN = f"answer-{secrets.token_hex(8)}"   # the expected output of attacks that do not steal anything
SECRET = f"secret-{secrets.token_hex(8)}"  # what the host hides from the sandbox

PROBE = r'''
import ctypes, os
me = os.getpid()
seen = {}
for pid in os.listdir("/proc"):
    if not pid.isdigit() or int(pid) == me:
        continue
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode().strip()
        with open(f"/proc/{pid}/status") as f:
            ppid = int([l for l in f if l.startswith("PPid:")][0].split()[1])
    except (OSError, IndexError):
        continue
    seen[int(pid)] = (ppid, cmd)
executors = {pid for pid, (ppid, cmd) in seen.items() if ppid in (0, 1) and "executor.py" in cmd}
procs = []
for pid, (ppid, cmd) in seen.items():
    if pid == 1 or pid in executors or (ppid in (0, 1) and cmd == "cat"):
        continue  # the sandbox's init, the executor, and the docker container's idle main process
    if ppid in executors and "executor.py" in cmd:
        continue  # the executor's numpy helper
    procs.append(cmd or pid)
files = [n for n in os.listdir("/tmp") if n != "run"] + ["shm/" + n for n in os.listdir("/dev/shm")]
files += ["run/" + n for n in os.listdir(".")]
ipc = []
for kind in ("shm", "sem", "msg"):
    try:
        ipc += open(f"/proc/sysvipc/{kind}").read().splitlines()[1:]
    except OSError:
        pass
libc = ctypes.CDLL(None, use_errno=True)
if libc.shmget(0x4D545042, 0, 0) >= 0:
    ipc.append("shm key MTPB")
if libc.mq_open(b"/mtpb-leak", os.O_RDONLY) >= 0:
    ipc.append("mqueue /mtpb-leak")
print({"procs": procs, "files": sorted(files), "ipc": ipc})
'''
CLEAN = {"procs": [], "files": [], "ipc": []}
REACHED_NOTHING = []                   # what an attack with reports_reach prints when it reached nothing


@dataclass(frozen=True)
class Attack:
    name: str
    program: str                       # str.format fields: token, secret, port, abstract, canary, secret_root, ...
    expected: str = "token"            # which context value is the expected output
    statuses: tuple = ()               # allowed statuses, if narrower than "anything but passed"
    reports_reach: bool = False        # prints the list of what it reached: must print [] and pass


ATTACKS = [
    # ---------------------------------------------------------------- the network
    Attack("network to the host", r'''
import socket
got = "no network"
for host in ("127.0.0.1", "{host_ip}", "10.0.2.2", "172.17.0.1"):
    try:
        s = socket.create_connection((host, {port}), timeout=1)
        got = s.recv(100).decode()
        break
    except OSError:
        pass
print(got)''', expected="secret"),
    Attack("network to the outside and DNS", r'''
import socket, urllib.request
reached = []
for target in (("1.1.1.1", 53), ("8.8.8.8", 443)):
    try:
        socket.create_connection(target, timeout=1).close()
        reached.append("tcp %s:%d" % target)
    except OSError:
        pass
try:
    reached.append("dns pypi.org -> " + socket.gethostbyname("pypi.org"))
except OSError:
    pass
try:
    urllib.request.urlopen("https://pypi.org/simple/", timeout=2).close()
    reached.append("https pypi.org")
except Exception:
    pass
print(reached)''', reports_reach=True),
    Attack("abstract unix socket of the host", r'''
import socket
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.settimeout(1)
s.connect("\0{abstract}")
print(s.recv(100).decode())''', expected="secret", statuses=("error", "failed")),
    Attack("the docker socket", r'''
import socket
reached = []
for path in ("/var/run/docker.sock", "/run/docker.sock", "/run/containerd/containerd.sock"):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1)
    try:
        s.connect(path)
    except OSError:
        continue
    try:
        s.sendall(b"GET /containers/json HTTP/1.0\r\n\r\n")
        reached.append(path + " answered " + repr(s.recv(100)[:40]))
    except OSError:
        reached.append(path)
print(reached)''', reports_reach=True),
    # ---------------------------------------------------------------- the host's files
    Attack("writes outside the sandbox", r'''
import os
wrote = []
for path in ("{canary}", "{canary}.new", "/root/mtpb-pwned", "/usr/mtpb-pwned",
             "/etc/passwd", "/sandbox/executor.py", "{repo_file}"):
    try:
        with open(path, "a") as f:
            f.write("pwned")
        wrote.append(path)
    except OSError:
        pass
# /tmp is the sandbox's own, so this write may succeed and is not reported: the host checks that
# its /tmp did not get the file
try:
    open("{host_tmp_file}", "a").write("pwned")
except OSError:
    pass
print(wrote)''', reports_reach=True),
    Attack("host secrets", r'''
got = "nothing"
for path in ("{secret_root}", "{secret_etc}", "/proc/1/root{secret_root}", "/proc/self/root{secret_root}",
             "/root/.docker/config.json"):
    try:
        got = open(path).read().strip()
        break
    except OSError:
        pass
print(got)''', expected="secret"),
    # ---------------------------------------------------------------- resources
    Attack("fork bomb", r'''
import os
while True:
    try:
        os.fork()
    except OSError:
        pass''', statuses=("timeout", "error", "killed", "failed")),
    Attack("memory bomb", r'''
chunks = []
while True:
    chunks.append(b"x" * (64 << 20))''', statuses=("killed", "error")),
    Attack("memory spread over processes", r'''
import os, time
r, w = os.pipe()
kids = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        block = b"\1" * (700 << 20)  # touched, not lazily mapped
        os.write(w, b"+")
        time.sleep(30)
        os._exit(0)
    kids.append(pid)
os.close(w)
held, deadline = 0, time.time() + 4.5
while held < 3 and time.time() < deadline:
    import select
    if select.select([r], [], [], 0.2)[0]:
        data = os.read(r, 4)
        if not data:
            break
        held += len(data)
# the OOM killer may take a child after it signalled: count those still alive once all three did
print(sum(os.waitpid(k, os.WNOHANG)[0] == 0 for k in kids) if held == 3 else held)'''),
    Attack("infinite loop", "while True:\n    pass", statuses=("timeout",)),
    Attack("CPU-spinning threads", r'''
import threading
def spin():
    while True:
        pass
for _ in range(8):
    threading.Thread(target=spin, daemon=True).start()
spin()''', statuses=("timeout", "error")),  # error: the nproc limit stopped a thread from starting
    Attack("output flood", r'''
import sys
while True:
    sys.stdout.write("{token}" * 1000)
    sys.stderr.write("x" * 10000)''', statuses=("timeout",)),
    Attack("huge file", r'''
with open("big", "wb") as f:
    while True:
        f.write(b"x" * (1 << 20))''', statuses=("killed", "error")),
    Attack("filling the sandbox's disk", r'''
import os
n = 0
try:
    while True:
        with open(f"/tmp/fill{{n}}", "wb") as f:
            f.write(b"x" * (15 << 20))
        n += 1
except OSError as e:
    print("full after", n, e)''', statuses=("failed",)),
    # ---------------------------------------------------------------- the executor and init
    Attack("killing the parent", "import os, signal\nos.kill(os.getppid(), signal.SIGKILL)\nprint('{token}x')"),
    Attack("killing pid 1", r'''
import os, signal, time
for sig in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
    try:
        os.kill(1, sig)
    except OSError:
        pass
time.sleep(0.5)
print("still here")'''),
    Attack("killing every process it may", "import os, signal\nos.kill(-1, signal.SIGKILL)\nprint('x')"),
    Attack("stopping its own process group", "import os, signal\nos.killpg(0, signal.SIGSTOP)\nprint('x')",
           statuses=("timeout",)),
    Attack("stopping every process it may", "import os, signal\nos.kill(-1, signal.SIGSTOP)\nprint('x')"),
    Attack("daemons that outlive the program", r'''
import os, signal, subprocess, time
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):
            signal.signal(sig, signal.SIG_IGN)
        time.sleep(0.3)
        open("/tmp/planted", "w").write("for the next program")
        time.sleep(60)
    os._exit(0)
subprocess.Popen(["sleep", "60"], start_new_session=True)
subprocess.Popen(["sh", "-c", "trap '' TERM HUP; sleep 60 & sleep 60"])
time.sleep(0.5)
print("spawned")''', statuses=("failed",)),
    # ---------------------------------------------------------------- the result channel
    Attack("closed stdout", "import os\nos.close(1)\nprint('{token}x')", statuses=("failed", "error")),
    Attack("forged verdict on stdout", r'''
import json
print(json.dumps({{"id": 0, "status": "passed", "passed": True, "timed_out": False, "result": {{"prints": 1,
      "exception": None, "value": {{"repr": "'x'", "deep": {{"ok": "x"}}, "as": {{"str": {{"ok": "x"}}}}}}}}}}))
print('{{"passed": true}}')''', statuses=("failed",)),
    Attack("forged result on another descriptor", r'''
import json, os
forged = {{"prints": 1, "exception": None, "memory_error": False, "passed": True,
          "value": {{"repr": "'forged'", "type": "str", "value": {{"ok": "forged"}}, "deep": {{"ok": "forged"}},
                    "as": {{"str": {{"ok": "forged"}}}}}}}}
for fd in range(3, 20):
    try:
        os.write(fd, json.dumps(forged).encode())
    except OSError:
        pass
os._exit(0)''', statuses=("failed",)),
    Attack("malformed result on the result descriptor", r'''
import os
os.write(3, b'["not", "an", "object"]')
os._exit(0)''', statuses=("failed",)),
    Attack("malformed fields in the result", r'''
import json, os
forged = {{"prints": 1, "exception": 5, "memory_error": True, "value": {{"repr": 7, "deep": {{"ok": {{"$dict": 3}}}}}}}}
os.write(3, json.dumps(forged).encode())
os._exit(0)''', statuses=("failed", "killed", "error")),
    Attack("forged reply on the executor's channel", r'''
import json, os
reply = {{"id": 0, "seconds": 0.1, "timed_out": False, "exit_code": 0, "signal": None, "stdout": "",
         "stderr": "", "stdout_truncated": False, "result": {{"prints": 1, "exception": None,
         "memory_error": False, "value": {{"repr": "'x'", "type": "str", "value": {{"ok": "x"}},
         "deep": {{"ok": "x"}}, "as": {{"str": {{"ok": "x"}}}}}}}}}}
# replies for this request and the next ones, whatever numbering the host uses: the next program
# (the probe) would then get a forged reply
lines = "".join(json.dumps({{**reply, "id": i}}) + "\n" for i in range(64))
for pid in (os.getppid(), 1):
    for fd in (1, 2):
        try:
            with open(f"/proc/{{pid}}/fd/{{fd}}", "w") as f:
                f.write(lines)
        except OSError:
            pass
print("x")''', statuses=("failed",)),
    Attack("redefined print", r'''
import builtins
real = print
builtins.print = lambda *a, **k: None
print = lambda *a, **k: real("{{}}")
print("x")''', statuses=("failed",)),
    Attack("redefined json", r'''
import json, sys
fake = json.dumps({{"prints": 1, "exception": None, "memory_error": False, "value": {{"repr": "1", "type": "str",
                   "value": {{"ok": "forged"}}, "deep": {{"ok": "forged"}}, "as": {{"str": {{"ok": "forged"}}}}}}}})
json.dumps = lambda *a, **k: fake
for name, mod in list(sys.modules.items()):
    if hasattr(mod, "reduce_value"):
        mod.reduce_value = lambda args: {{"passed": True}}
print("x")''', statuses=("failed",)),
    Attack("os._exit after a fake print", "import os\nprint('fake')\nos._exit(0)", statuses=("failed",)),
    Attack("sys.exit after a fake print", "import sys\nprint('fake')\nsys.exit(0)", statuses=("failed",)),
    Attack("blocking on stdin", r'''
import os, sys
data = sys.stdin.read() + os.read(0, 100).decode()
try:
    data += open("/proc/%d/fd/0" % os.getppid()).readline()
except OSError:
    pass
print(input())''', statuses=("error", "timeout")),
    # ---------------------------------------------------------------- leftovers for the next program
    Attack("files left for the next program", r'''
import os
for path in ("/tmp/left", "/dev/shm/left", "left", "/tmp/.hidden"):
    open(path, "w").write("from the previous program")
os.makedirs("/tmp/locked/deep")
open("/tmp/locked/deep/f", "w").write("x")
os.chmod("/tmp/locked/deep", 0)
os.chmod("/tmp/locked", 0)
os.mkfifo("/tmp/fifo")
os.symlink("/etc/passwd", "/tmp/link")
os.chmod(".", 0o500)
print("left")''', statuses=("failed",)),
    Attack("IPC objects left for the next program", r'''
import ctypes, os
libc = ctypes.CDLL(None, use_errno=True)
made = []
if libc.shmget(0x4D545042, 4096, 0o1666) >= 0:
    made.append("shm")
if libc.mq_open(b"/mtpb-leak", os.O_CREAT | os.O_RDWR, 0o666, None) >= 0:
    made.append("mqueue")
print(made)''', statuses=("failed",)),
]


# ---------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module", autouse=True)
def short_grace():
    """A wedged executor is declared dead this long after the timeout (10 s in production)."""
    saved = sandbox_base.GRACE_SECONDS
    sandbox_base.GRACE_SECONDS = 4.0
    yield
    sandbox_base.GRACE_SECONDS = saved


@pytest.fixture(scope="module")
def host():
    """Canaries and secrets on the host, and servers a sandboxed program must not reach."""
    tag = secrets.token_hex(6)
    repo_file = Path(__file__).resolve().parent / f".mtpb-canary-{tag}"
    ctx = {"token": TOKEN, "secret": SECRET, "canary": f"/etc/mtpb-canary-{tag}",
           "secret_root": f"/root/mtpb-secret-{tag}", "secret_etc": f"/etc/mtpb-secret-{tag}",
           "host_tmp_file": f"/tmp/mtpb-pwned-{tag}", "repo_file": str(repo_file),
           "abstract": f"mtpb-{tag}", "host_ip": _host_ip()}
    files = {ctx["canary"]: ("canary", 0o644), ctx["secret_root"]: (SECRET, 0o600),
             ctx["secret_etc"]: (SECRET, 0o600), str(repo_file): ("canary", 0o644)}
    for path, (text, mode) in files.items():
        try:
            Path(path).write_text(text)
            os.chmod(path, mode)
        except OSError:
            pass  # not root: the attack then targets paths we could not plant, which is fine
    tcp = socket.create_server(("0.0.0.0", 0))
    unix = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    unix.bind("\0" + ctx["abstract"])
    unix.listen()
    ctx["port"] = tcp.getsockname()[1]
    stop = threading.Event()
    for server in (tcp, unix):
        threading.Thread(target=_serve, args=(server, stop), daemon=True).start()
    ctx["files"] = files
    yield ctx
    stop.set()
    tcp.close()
    unix.close()
    for path in list(files) + [ctx["canary"] + ".new", ctx["host_tmp_file"]]:
        try:
            os.unlink(path)
        except OSError:
            pass


def _host_ip() -> str:
    probe = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        probe.connect(("192.0.2.1", 9))  # no packet is sent: this only picks the outgoing address
        return probe.getsockname()[0]
    except OSError:
        return "127.0.0.1"
    finally:
        probe.close()


def _serve(server: socket.socket, stop: threading.Event):
    server.settimeout(0.5)
    while not stop.is_set():
        try:
            conn, _ = server.accept()
        except OSError:
            continue
        with conn:
            conn.sendall(SECRET.encode())


@pytest.fixture(scope="module", params=["process", pytest.param("docker", marks=pytest.mark.docker)])
def box(request):
    sandbox = open_box(request.param, workers=1, timeout=TIMEOUT)
    yield sandbox
    sandbox.close()
    if request.param == "docker":
        assert sandbox.containers() == [], "containers left after close"


# ---------------------------------------------------------------------------- host-side checks

def _children(pid: int) -> list[int]:
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    kids = []
    for tid in tasks:
        try:
            kids += [int(k) for k in Path(f"/proc/{pid}/task/{tid}/children").read_text().split()]
        except OSError:
            pass
    return kids


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode().strip()
    except OSError:
        return ""


def _executor_pids(sandbox) -> list[int]:
    """Host pids of the executors: below bwrap for the process sandbox, in the container for docker."""
    found = []
    if sandbox.name == "docker":
        ids = [docker("inspect", "--format", "{{.Id}}", c.transport.name, check=False).strip()
               for c in sandbox.clients if c.transport.sock is not None]
        for pid in (int(p) for p in os.listdir("/proc") if p.isdigit()):
            try:
                cgroup, stat = Path(f"/proc/{pid}/cgroup").read_text(), Path(f"/proc/{pid}/stat").read_text()
            except OSError:
                continue
            parent = int(stat.rsplit(")", 1)[1].split()[1])
            if any(i and i in cgroup for i in ids) and _is_executor(pid) and not _is_executor(parent):
                found.append(pid)
        return found
    todo = [c.transport.proc.pid for c in sandbox.pool.clients if c.transport.proc is not None]
    while todo:
        pid = todo.pop()
        if _is_executor(pid):
            found.append(pid)
        else:
            todo += _children(pid)
    return found


def _is_executor(pid: int) -> bool:
    # bwrap's and docker-init's command lines name executor.py too; the executor is the python
    command = _cmdline(pid).split(" ")
    return "executor.py" in " ".join(command) and os.path.basename(command[0]).startswith("python")


def stray_processes(sandbox) -> list[str]:
    """Anything still running below an executor once its program is over (its numpy helper, a copy of
    it, is its own: what runs below that is not)."""
    strays, todo = [], [k for pid in _executor_pids(sandbox) for k in _children(pid)]
    while todo:
        pid = todo.pop()
        if not (_is_executor(pid) and _is_executor(_parent(pid))):
            strays.append(f"{pid} {_cmdline(pid)}")
        todo += _children(pid)
    return strays


def _parent(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def assert_host_untouched(ctx: dict):
    for path, (text, _) in ctx["files"].items():
        if Path(path).exists():
            assert Path(path).read_text() == text, f"{path} was changed"
    for path in (ctx["canary"] + ".new", ctx["host_tmp_file"], "/root/mtpb-pwned", "/usr/mtpb-pwned"):
        assert not Path(path).exists(), f"{path} was written from the sandbox"


# ---------------------------------------------------------------------------- the tests

def assert_reached_nothing(reply: dict):
    """The attack ran to its end and printed an empty list of what it reached."""
    result = verdict(reply, REACHED_NOTHING, "mtpb")
    assert result.status == "passed" and result.printed == repr(REACHED_NOTHING), (
        f"the attack reached {result.printed} ({result.status}: {result.error}; stderr "
        f"{(reply.get('stderr') or '')[-300:]!r})")


# A program that names numpy or pandas runs in the executor's numpy helper, a child of the executor
# that forks it from an interpreter with them imported: every attack is tried from there too.
WHERE = {"executor": "", "numpy helper": "# numpy\n"}


@pytest.mark.parametrize("where", WHERE)
@pytest.mark.parametrize("attack", ATTACKS, ids=[a.name for a in ATTACKS])
def test_attack(box, host, attack, where):
    program = WHERE[where] + attack.program.format(**host)
    reply, probe = box.run([program, PROBE])
    if attack.reports_reach:
        assert_reached_nothing(reply)
        result = verdict(reply, REACHED_NOTHING, "mtpb")
    else:
        result = verdict(reply, host[attack.expected], "mtpb")
        assert not result.passed, f"the attack passed: {reply}"
    if attack.statuses:
        assert result.status in attack.statuses, (result, {k: reply.get(k) for k in ("stdout", "stderr", "result")})
    if result.status == "timeout":
        assert reply["seconds"] < TIMEOUT + 1.5, "the timeout did not hold"
    assert len(reply.get("stdout") or "") <= sandbox_base.Limits().stdout_bytes + 1
    if attack.name == "memory spread over processes" and result.status == "failed":
        assert int(result.printed) < 3, "three live processes held 700 MB each at once"
    probed = verdict(probe, CLEAN, "mtpb")
    assert probed.passed, f"the next program found leftovers or failed: {probe.get('stdout') or probe}"
    assert_host_untouched(host)
    assert wait_for(lambda: not stray_processes(box), 10), stray_processes(box)
    if box.name == "docker":  # a replaced container is removed in the background, but soon
        assert wait_for(lambda: len(box.containers()) <= len(box.clients), 30), box.containers()


@pytest.mark.parametrize("printed", ["['/var/run/docker.sock']", "['tcp 1.1.1.1:53']", "'offline'", None])
def test_a_reach_report_fails_unless_it_is_an_empty_list(box, printed):
    """The check of the attacks above rejects anything reached, and an attack that did not get to
    print its list (a crash is not a pass)."""
    program = f"print({printed})" if printed else "raise OSError('the attack broke')"
    reply = box.run([program])[0]
    with pytest.raises(AssertionError, match="the attack reached"):
        assert_reached_nothing(reply)
    assert_reached_nothing(box.run(["print([])"])[0])


def test_programs_run_unprivileged(box):
    reply = box.run(["import os\nprint([os.getuid(), os.geteuid(), os.getgid(), os.getegid()])"])[0]
    ids = verdict(reply, None, "mtpb").printed
    assert ids and "0" not in ids.strip("[]").replace(" ", "").split(","), ids


def test_a_normal_program_still_passes_after_everything(box):
    program = "import numpy as np\nimport pandas as pd\nprint(int(np.arange(5).sum() + pd.Series([1]).sum()))"
    reply = box.run([program])[0]
    assert verdict(reply, 11, "mtpb").passed, reply


def test_programs_naming_numpy_run_in_the_helper_and_a_killed_helper_is_started_afresh(box):
    where = ("import os, sys\nparent = open(f'/proc/{os.getppid()}/cmdline', 'rb').read()\n"
             "print(['num' + 'py' in sys.modules, b'executor.py' in parent, os.getppid()])")  # names it only with the prefix
    # kills every child of its executor but itself: the helper
    kill_helper = r'''
import os, signal
killed = 0
for pid in os.listdir("/proc"):
    try:
        stat = open(f"/proc/{pid}/stat").read()
    except OSError:
        continue
    if pid.isdigit() and int(pid) != os.getpid() and int(stat.rsplit(")", 1)[1].split()[1]) == os.getppid():
        os.kill(int(pid), signal.SIGKILL)
        killed += 1
print(killed)'''
    replies = box.run([where, "# numpy\n" + where, kill_helper, "import numpy as np\nprint(int(np.arange(4).sum()))",
                       "# numpy\n" + where])
    lean, helper, killed, after, helper_again = [verdict(r, None, "mtpb").printed for r in replies]
    lean, helper, helper_again = (eval(v) for v in (lean, helper, helper_again))
    assert lean[:2] == [False, True] and helper[:2] == [True, True], (lean, helper)
    assert helper[2] != lean[2], "a program naming numpy ran in the executor itself"
    assert int(killed) >= 1 and after == "6", replies  # the numpy helper, and the pandas one if it runs
    assert helper_again[:2] == [True, True] and helper_again[2] != helper[2], ("the helper was not started afresh", replies)
