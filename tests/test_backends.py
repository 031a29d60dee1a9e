"""The registry: built-ins by name, third parties through the `mtpb.backends` entry-point group."""
import subprocess
import sys
import textwrap

import pytest

from mtpb.backends import BackendError, create_backend


def test_builtin_options_are_checked():
    with pytest.raises(BackendError, match="has no option colour"):
        create_backend("reference", None, {"colour": "red"})
    with pytest.raises(BackendError, match="needs -B samples=PATH"):
        create_backend("replay")


def test_a_plugin_backend_is_found_through_its_entry_point(tmp_path):
    (tmp_path / "echo_plugin.py").write_text(textwrap.dedent("""
        class EchoBackend:
            preferred_batch_size = 8
            def __init__(self, model=None, text="x = 1"):
                self.text = text
            def generate(self, requests, params):
                return [self.text for _ in requests]
            def describe(self):
                return {"model": "echo"}
    """))
    dist = tmp_path / "echo_plugin-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: echo-plugin\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text("[mtpb.backends]\necho = echo_plugin:EchoBackend\n")
    code = ("from mtpb.backends import create_backend, available_backends\n"
            "assert 'echo' in available_backends()\n"
            "b = create_backend('echo', None, {'text': 'print(3)'})\n"
            "print(b.generate([object()], None)[0])\n")
    out = subprocess.run([sys.executable, "-c", code], env={"PYTHONPATH": str(tmp_path), "PATH": "/usr/bin:/bin"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "print(3)"
