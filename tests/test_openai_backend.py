"""The `openai` backend for real over loopback: against `mtpb serve` (same greedy programs as the
codegen backend), and against a misbehaving server written here (429, 500, malformed JSON, slow
replies, dropped connections, 401) through `mtpb run`: nothing lost, nothing done twice.
"""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from click.testing import CliRunner
from serve_fixtures import NAME, checkpoint, server  # noqa: F401  (fixtures)

from mtpb.backends.base import BackendError, Request, SamplingParams
from mtpb.backends.openai import OpenAIBackend, choose_stops
from mtpb.cli import main
from mtpb.prompts import PREFIX, STOP_STRINGS, extract_code, wrap_prompt

IDS = "1-3"


def run_cli(*args, expect=0):
    result = CliRunner().invoke(main, ["run", "--sandbox", "process", "--ids", IDS, *args])
    assert result.exit_code == expect, result.output + repr(result.exception)
    return result


def samples(run: Path) -> dict:
    records = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    return {(r["problem_id"], r["test_index"], r["sample_index"]): r for r in records}


def key_counts(path: Path) -> Counter:
    records = map(json.loads, path.read_text().splitlines())
    return Counter((r["problem_id"], r["test_index"], r["sample_index"]) for r in records)


# ------------------------------------------------------------------------------------ against mtpb serve
# Sampling too: both sides draw with the engine from the same per-request seed, and sampled text
# reaches the stop strings (the server stops there, the codegen backend at truncation).
@pytest.mark.slow
@pytest.mark.parametrize("mode,temperature", [("multi", "0"), ("single", "0"), ("multi", "1.0")])
def test_same_greedy_programs_as_the_codegen_backend(tmp_path, checkpoint, server, mode, temperature):  # noqa: F811
    common = ["--mode", mode, "--max-gen-length", "24", "--temperature", temperature, "--seed", "1"]
    run_cli("--backend", "codegen", "--model", str(checkpoint), "-B", "device=cpu", *common,
            "--out", str(tmp_path / "codegen"))
    run_cli("--backend", "openai", "--model", NAME, "-B", f"base_url={server.url}", "-B", "max_concurrency=8",
            *common, "--out", str(tmp_path / "openai"))
    engine, served = samples(tmp_path / "codegen"), samples(tmp_path / "openai")
    assert len(engine) == 15 and engine.keys() == served.keys()
    for key, record in engine.items():
        assert [t["completion"] for t in served[key]["turns"]] == [t["completion"] for t in record["turns"]], key
        assert served[key]["program"] == record["program"], key


def test_chat_mode_against_mtpb_serve_builds_programs_from_fenced_code(tmp_path, server):  # noqa: F811
    run_cli("--backend", "openai", "--model", NAME, "-B", f"base_url={server.url}", "--mode", "chat",
            "--max-gen-length", "16", "--out", str(tmp_path / "chat"))
    records = samples(tmp_path / "chat")
    assert len(records) == 15
    for record in records.values():
        assert all(t["raw"].startswith("```python\n") for t in record["turns"])
        assert record["program"] == PREFIX + "".join(extract_code(t["raw"]) + "\n\n" for t in record["turns"])
    assert len((tmp_path / "chat" / "results.jsonl").read_text().splitlines()) == 15


def test_wrong_model_name_is_a_clear_error_at_once(tmp_path, server):  # noqa: F811
    result = run_cli("--backend", "openai", "--model", "no-such-model", "-B", f"base_url={server.url}",
                     "--out", str(tmp_path / "run"), expect=2)
    assert "HTTP 404" in result.output and "--model no-such-model" in result.output and "base_url" in result.output


# ------------------------------------------------------------------------------------ a misbehaving server
def answer(prompt: str) -> str:
    """What the fake model writes: a line that names the exact context it was given."""
    return f"v_{hashlib.sha1(prompt.encode()).hexdigest()[:8]} = {len(prompt)}\n"


class FakeServer:
    """An OpenAI-compatible /v1/completions whose behaviour per request comes from `plan(body, attempt)`."""

    def __init__(self, plan, timeout_sleep: float = 1.5):
        self.plan, self.sleep = plan, timeout_sleep
        self.attempts: Counter = Counter()     # per (prompt, seed)
        self.seen: Counter = Counter()         # per behaviour
        self.bodies: list[dict] = []
        self.headers: list[dict] = []
        self.lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with fake.lock:
                    key = (body.get("prompt"), body.get("seed"))
                    attempt = fake.attempts[key]
                    fake.attempts[key] += 1
                    fake.bodies.append(body)
                    fake.headers.append(dict(self.headers))
                    behaviour = fake.plan(body, attempt)
                    fake.seen[behaviour] += 1
                fake.act(self, behaviour, body)

            def log_message(self, *args):
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.httpd.request_queue_size = 128
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def act(self, h: BaseHTTPRequestHandler, behaviour: str, body: dict):
        def send(status, data: bytes, **headers):
            h.send_response(status)
            for k, v in {"Content-Type": "application/json", "Content-Length": str(len(data)), **headers}.items():
                h.send_header(k, v)
            h.end_headers()
            h.wfile.write(data)
        ok = json.dumps({"object": "text_completion", "choices": [
            {"index": 0, "text": answer(body["prompt"]), "finish_reason": "stop"}]}).encode()
        try:
            if behaviour == "ok":
                send(200, ok)
            elif behaviour == "slow ok":
                time.sleep(0.2)
                send(200, ok)
            elif behaviour == "429":
                send(429, b'{"error": {"message": "slow down"}}', **{"Retry-After": "1"})
            elif behaviour == "500":
                send(500, b'{"error": {"message": "internal"}}')
            elif behaviour == "503 html":
                send(503, b"<html>bad gateway</html>", **{"Content-Type": "text/html"})
            elif behaviour == "malformed":
                send(200, b'{"choices": [{"text": "trunc')
            elif behaviour == "no choices":
                send(200, b'{"object": "text_completion"}')
            elif behaviour == "slow":
                time.sleep(self.sleep)          # past the client's timeout
                send(200, ok)
            elif behaviour == "drop":
                h.close_connection = True       # the socket closes with no answer at all
            elif behaviour == "401":
                send(401, b'{"error": {"message": "Incorrect API key provided"}}')
        except (BrokenPipeError, ConnectionResetError):
            pass

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


TROUBLE = ["429", "500", "503 html", "malformed", "no choices", "slow", "drop"]


def flaky(body, attempt):
    """Every request misbehaves at first, some twice; the third attempt always answers."""
    h = int(hashlib.sha1(f"{body['prompt']}/{body['seed']}".encode()).hexdigest(), 16)
    if attempt == 0:
        return (TROUBLE + ["slow ok"])[h % (len(TROUBLE) + 1)]
    if attempt == 1 and h % 3 == 0:
        return TROUBLE[(h // 7) % len(TROUBLE)]
    return "ok"


def check_completions(record: dict):
    """Each turn's completion answers exactly the context that turn had: nothing crossed between requests."""
    context = PREFIX
    for turn in record["turns"]:
        context += wrap_prompt(turn["prompt"])
        assert turn["raw"] == answer(context)
        context += turn["completion"] + "\n\n"
    assert record["program"] == context


@pytest.fixture
def fake_key(monkeypatch):
    monkeypatch.setenv("MTPB_TEST_KEY", "sk-test")
    return ["-B", "api_key_env=MTPB_TEST_KEY"]


@pytest.mark.slow
def test_a_misbehaving_server_is_survived_with_nothing_lost(tmp_path, fake_key):
    fake = FakeServer(flaky)
    try:
        out = tmp_path / "run"
        run_cli("--backend", "openai", "--model", "fake", "-B", f"base_url={fake.url}", *fake_key,
                "-B", "max_concurrency=16", "-B", "timeout=0.5", "-B", "backoff=0.02", "--n", "2",
                "--seed", "3", "--max-gen-length", "32", "--out", str(out))
    finally:
        fake.close()
    assert set(TROUBLE) | {"ok", "slow ok"} <= set(fake.seen)
    for name in ("samples.jsonl", "results.jsonl"):
        counts = key_counts(out / name)
        assert len(counts) == 30 and set(counts.values()) == {1}, name
    for record in samples(out).values():
        check_completions(record)
    body = fake.bodies[0]
    assert body["model"] == "fake" and body["max_tokens"] == 32 and body["temperature"] == 0
    assert body["stop"] == ["\n#", "\n\n\n", '\n"""', "\n'''"]
    assert all(h.get("Authorization") == "Bearer sk-test" for h in fake.headers)


@pytest.mark.slow
def test_a_run_cut_short_by_a_dead_server_resumes_without_repeats(tmp_path):
    served = Counter()
    healthy = threading.Event()

    def dies_after_40(body, attempt):
        served["n"] += 1
        return "ok" if healthy.is_set() or served["n"] <= 40 else "500"
    fake = FakeServer(dies_after_40)
    out = str(tmp_path / "run")
    args = ["--backend", "openai", "--model", "fake", "-B", f"base_url={fake.url}", "-B", "max_concurrency=4",
            "-B", "max_retries=2", "-B", "backoff=0.01", "--n", "2", "--max-gen-length", "32", "--out", out]
    try:
        result = run_cli(*args, expect=2)
        assert "gave up after 3 attempts" in result.output and "HTTP 500" in result.output
        partial = key_counts(tmp_path / "run" / "samples.jsonl")
        assert 0 < len(partial) < 30
        healthy.set()
        run_cli(*args)
    finally:
        fake.close()
    for name in ("samples.jsonl", "results.jsonl"):
        counts = key_counts(tmp_path / "run" / name)
        assert len(counts) == 30 and set(counts.values()) == {1}, name
    for record in samples(tmp_path / "run").values():
        check_completions(record)


def test_401_stops_at_once_and_says_what_to_check(tmp_path, fake_key):
    fake = FakeServer(lambda body, attempt: "401")
    try:
        started = time.monotonic()
        result = run_cli("--backend", "openai", "--model", "fake", "-B", f"base_url={fake.url}", *fake_key,
                         "-B", "max_concurrency=1", "--out", str(tmp_path / "run"), expect=2)
        assert time.monotonic() - started < 10
    finally:
        fake.close()
    assert sum(fake.seen.values()) == 1
    assert "HTTP 401" in result.output and "MTPB_TEST_KEY" in result.output and "Incorrect API key" in result.output


# ------------------------------------------------------------------------------------ the backend alone
def request(context="# Print 1.\n", seed=0) -> Request:
    return Request(context=context, max_tokens=16, seed=seed)


PARAMS = SamplingParams(temperature=0.0, top_p=0.95, mode="multi", stop=STOP_STRINGS)


def test_retry_after_is_honoured():
    fake = FakeServer(lambda body, attempt: "429" if attempt == 0 else "ok")
    try:
        backend = OpenAIBackend(model="fake", base_url=fake.url, backoff="0.01")
        started = time.monotonic()
        assert backend.generate([request()], PARAMS) == [answer("# Print 1.\n")]
        assert time.monotonic() - started >= 1.0
    finally:
        fake.close()


def test_malformed_json_is_retried_then_reported():
    fake = FakeServer(lambda body, attempt: "malformed")
    try:
        backend = OpenAIBackend(model="fake", base_url=fake.url, max_retries="2", backoff="0.01")
        with pytest.raises(BackendError, match="gave up after 3 attempts.*malformed"):
            backend.generate([request(seed=s) for s in range(3)], PARAMS)
    finally:
        fake.close()
    assert sum(fake.seen.values()) <= 9


def test_nothing_listening_is_reported_without_retries():
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    backend = OpenAIBackend(model="fake", base_url=f"http://127.0.0.1:{port}/v1", backoff="0.01")
    posts = []
    real_post = backend._post

    def counting_post(path, payload):
        posts.append(path)
        return real_post(path, payload)
    backend._post = counting_post
    with pytest.raises(BackendError, match="nothing answers"):
        backend.generate([request()], PARAMS)
    assert posts == ["/v1/completions"], "a refused connection before any success is not retried"


def test_the_reported_stop_string_is_put_back_for_truncation():
    class StopReason(FakeServer):
        def act(self, h, behaviour, body):
            data = json.dumps({"choices": [{"index": 0, "text": "x = 1\n", "finish_reason": "stop",
                                            "stop_reason": "\n#"}]}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
    fake = StopReason(lambda body, attempt: "ok")
    try:
        raw = OpenAIBackend(model="fake", base_url=fake.url).generate([request()], PARAMS)[0]
    finally:
        fake.close()
    from mtpb.prompts import truncate
    assert raw == "x = 1\n\n#" and truncate(raw) == "x = 1\n\n"


def test_chat_requests_carry_the_system_prompt_and_the_conversation():
    class Chat(FakeServer):
        def act(self, h, behaviour, body):
            data = json.dumps({"choices": [{"index": 0, "message": {"role": "assistant",
                                                                     "content": "```python\nx = 1\n```"},
                                            "finish_reason": "stop"}]}).encode()
            h.send_response(200)
            h.send_header("Content-Length", str(len(data)))
            h.end_headers()
            h.wfile.write(data)
    fake = Chat(lambda body, attempt: "ok")
    messages = ({"role": "user", "content": "Assign 1 to x."},)
    try:
        backend = OpenAIBackend(model="fake", base_url=fake.url)
        chat = SamplingParams(mode="chat", stop=STOP_STRINGS)
        assert backend.generate([Request(context=PREFIX, max_tokens=64, seed=5, messages=messages)], chat) \
            == ["```python\nx = 1\n```"]
        OpenAIBackend(model="fake", base_url=fake.url, system_prompt="").generate(
            [Request(context=PREFIX, max_tokens=64, seed=5, messages=messages)], chat)
    finally:
        fake.close()
    first, second = fake.bodies
    assert first["messages"][0]["role"] == "system" and "```python" in first["messages"][0]["content"]
    assert first["messages"][1:] == list(messages) and "stop" not in first and first["seed"] == 5
    assert second["messages"] == list(messages)


def test_choose_stops_and_option_errors():
    assert choose_stops(STOP_STRINGS, 4) == ("\n#", "\n\n\n", '\n"""', "\n'''")
    assert choose_stops(STOP_STRINGS, 0) == ()
    assert choose_stops(("END",) + STOP_STRINGS, 9)[-1] == "END"
    with pytest.raises(BackendError, match="--model"):
        OpenAIBackend()
    with pytest.raises(BackendError, match="max_concurrency"):
        OpenAIBackend(model="m", base_url="http://127.0.0.1:1/v1", max_concurrency="lots")
    with pytest.raises(BackendError, match="base_url"):
        OpenAIBackend(model="m", base_url="127.0.0.1:8000")
    assert OpenAIBackend(model="m", base_url="http://h/v1", max_concurrency="12").preferred_batch_size == 12
