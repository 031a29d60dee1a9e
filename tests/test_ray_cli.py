"""`--ray` at the command line without a cluster: ray stays unimported unless asked for, and bad
requests end in one line (the cluster tests are in test_ray.py)."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from click.testing import CliRunner

from mtpb.cli import main

REPO = Path(__file__).resolve().parent.parent


def test_a_local_run_and_the_ray_modules_import_no_ray(tmp_path):
    code = ("import sys\nfrom click.testing import CliRunner\nfrom mtpb.cli import main\n"
            "import mtpb.ray_actors, mtpb.ray_cluster, mtpb.ray_runner\n"
            f"r = CliRunner().invoke(main, ['run', '--backend', 'reference', '--ids', '1', '--sandbox', 'process', "
            f"'--out', {str(tmp_path / 'run')!r}])\n"
            "assert r.exit_code == 0, r.output\n"
            "assert 'ray' not in sys.modules, 'ray imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def test_replicas_without_ray_is_refused_in_one_line(tmp_path):
    result = CliRunner().invoke(main, ["run", "--backend", "reference", "-B", "replicas=2", "--out", str(tmp_path / "r")])
    assert result.exit_code == 2 and "replicas is an option of --ray runs" in result.output
    assert not (tmp_path / "r").exists()


def test_an_address_where_nothing_listens_is_one_line_not_a_wait(tmp_path):
    # in a network namespace of its own: nothing of the test reaches past loopback
    done = subprocess.run(["unshare", "-n", sys.executable, "-m", "mtpb", "run", "--backend", "reference", "--ids", "1",
                           "--out", str(tmp_path / "r"), "--ray", "127.0.0.1:9"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "--ray 127.0.0.1:9: nothing answers there" in done.stderr and "Traceback" not in done.stderr
    assert not (tmp_path / "r" / "run.json").exists()
