"""README command 1 as a user runs it: a plain install whose files the sandbox's uid cannot read."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from install_fixtures import run_installed
from mtpb.scoring import verdict

pytestmark = pytest.mark.slow


def test_installed_package_runs_the_whole_suite_in_the_process_sandbox(installed_mtpb, tmp_path):
    done = run_installed(installed_mtpb, "run", "--backend", "reference", "--sandbox", "process",
                         "--out", "runs/demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "sandbox: process (bubblewrap; programs run as uid 65534 with /usr/bin/python3" in done.stderr
    assert "pass rate 100.00% over 115 problems, 575 programs" in done.stdout
    summary = json.loads((tmp_path / "runs/demo/summary.json").read_text())
    assert summary["n_passed"] == summary["n_programs"] == 575


def test_installed_package_validates_and_checks_its_sandbox(installed_mtpb, tmp_path):
    validated = run_installed(installed_mtpb, "problems", "validate", "--execute", "--sandbox", "process",
                              cwd=tmp_path)
    assert validated.returncode == 0, validated.stdout + validated.stderr
    assert "575 of 575 test programs pass" in validated.stdout
    checked = run_installed(installed_mtpb, "sandbox", "check", "--sandbox", "process", cwd=tmp_path)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert "NO" not in checked.stdout


def test_a_resumed_run_says_how_much_was_done(installed_mtpb, tmp_path):
    first = run_installed(installed_mtpb, "run", "--backend", "reference", "--sandbox", "process", "--ids", "1-2",
                          "--out", "run", cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    assert "resuming" not in first.stderr
    more = run_installed(installed_mtpb, "run", "--backend", "reference", "--sandbox", "process", "--ids", "1-4",
                         "--out", "run", cwd=tmp_path)
    assert more.returncode == 0, more.stderr
    assert "resuming: 10 of 20 programs done" in more.stderr


def test_an_unreadable_sandbox_interpreter_is_named_with_its_fix(installed_mtpb, tmp_path):
    """The sandbox's uid cannot run the Python of the install: the error says so and how to fix it."""
    done = run_installed(installed_mtpb, "sandbox", "check", "--sandbox", "process", cwd=tmp_path,
                         env={"MTPB_SANDBOX_PYTHON": str(installed_mtpb.parent / "python")})
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert "Permission denied" in done.stderr and "fix:" in done.stderr and "python3-numpy" in done.stderr


@pytest.fixture
def debian_venv(request):
    """A venv made from Debian's Python in a folder every uid can read, under the given top folder."""
    home = Path(tempfile.mkdtemp(prefix="mtpb-venv-", dir=request.param))
    os.chmod(home, 0o755)
    subprocess.run(["/usr/bin/python3", "-m", "venv", "--without-pip", "--system-site-packages",
                    str(home / "venv")], check=True)
    yield home / "venv"
    shutil.rmtree(home)


# not pytest's tmp_path (mode 0700), nor /tmp, which the sandbox makes its own
@pytest.mark.parametrize("debian_venv", ["/var/tmp"], indirect=True)
def test_a_venv_whose_python_links_into_usr_runs_in_the_sandbox(debian_venv, monkeypatch):
    """Its bin/python is a symlink into /usr and its packages are beside it: the sandbox binds the venv
    itself, not only where the link points."""
    from mtpb.sandboxes.process import ProcessSandbox
    assert os.path.islink(debian_venv / "bin/python")
    monkeypatch.setenv("MTPB_SANDBOX_PYTHON", str(debian_venv / "bin/python"))
    box = ProcessSandbox(workers=1)
    try:
        reply = box.run(["import sys\nprint(sys.prefix)"])[0]
    finally:
        box.close()
    assert verdict(reply, str(debian_venv), "mtpb").passed, reply


@pytest.mark.parametrize("debian_venv", ["/tmp"], indirect=True)
def test_a_sandbox_python_under_tmp_is_refused_with_the_reason(debian_venv, monkeypatch):
    from mtpb.sandboxes.base import SandboxUnavailable
    from mtpb.sandboxes.process import ProcessSandbox
    monkeypatch.setenv("MTPB_SANDBOX_PYTHON", str(debian_venv / "bin/python"))
    with pytest.raises(SandboxUnavailable, match="under tmp/, which the sandbox replaces with a private one"):
        ProcessSandbox(workers=1)
