"""`mtpb serve` for real over loopback: the API's shapes, the official openai client, batching, errors.

The model and the server come from serve_fixtures.py (shared with test_openai_backend.py).
"""
from __future__ import annotations

import http.client
import json
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from serve_fixtures import NAME, REPO, checkpoint, server  # noqa: F401  (fixtures)

from mtpb.prompts import PREFIX
from mtpb.serve import ApiError, render_chat
from mtpb.serve_batcher import Batcher, Job, finish


def call(server, method, path, body=None, conn=None, headers=None):
    host, port = server.httpd.server_address[:2]
    conn = conn or http.client.HTTPConnection(host, port, timeout=60)
    data = body if isinstance(body, (bytes, type(None))) else json.dumps(body).encode()
    conn.request(method, path, body=data, headers={"Content-Type": "application/json", **(headers or {})})
    response = conn.getresponse()
    payload = response.read()
    return response.status, json.loads(payload) if payload else None


def greedy(server, prompt, max_tokens=12, **extra):
    status, reply = call(server, "POST", "/v1/completions",
                         {"model": NAME, "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, **extra})
    assert status == 200, reply
    return reply


# ------------------------------------------------------------------------------------ the API
def test_models_lists_the_served_name(server):
    status, reply = call(server, "GET", "/v1/models")
    assert status == 200 and [m["id"] for m in reply["data"]] == [NAME]


def test_completions_shapes_lists_n_and_usage(server):
    reply = greedy(server, ["# Print 1.\n", "x = "], max_tokens=5, n=2)
    assert reply["object"] == "text_completion" and reply["model"] == NAME
    choices = reply["choices"]
    assert [c["index"] for c in choices] == [0, 1, 2, 3]
    assert choices[0]["text"] == choices[1]["text"] and choices[2]["text"] == choices[3]["text"]  # greedy
    assert {c["finish_reason"] for c in choices} <= {"stop", "length"}
    assert reply["usage"]["completion_tokens"] <= 20
    assert reply["usage"]["total_tokens"] == reply["usage"]["prompt_tokens"] + reply["usage"]["completion_tokens"]


def test_stop_strings_cut_the_text_and_are_reported(server):
    full = greedy(server, PREFIX, max_tokens=16)["choices"][0]
    text = full["text"]
    assert len(text) > 6
    stop = text[4:7]
    cut = greedy(server, PREFIX, max_tokens=16, stop=[stop, "never-there"])["choices"][0]
    assert cut["text"] == text[:text.find(stop)]
    assert cut["finish_reason"] == "stop" and cut["stop_reason"] == stop


def test_seeded_sampling_is_reproducible(server):
    body = {"model": NAME, "prompt": PREFIX, "max_tokens": 10, "temperature": 1.0, "top_p": 0.95, "seed": 7}
    first = call(server, "POST", "/v1/completions", body)[1]["choices"][0]["text"]
    assert call(server, "POST", "/v1/completions", body)[1]["choices"][0]["text"] == first


def test_chat_renders_mtpb_context_and_fences_the_reply(server):
    messages = [{"role": "system", "content": "ignored"}, {"role": "user", "content": "Set x to 1."}]
    status, reply = call(server, "POST", "/v1/chat/completions",
                         {"model": NAME, "messages": messages, "max_tokens": 8, "temperature": 0})
    assert status == 200, reply
    content = reply["choices"][0]["message"]["content"]
    assert reply["object"] == "chat.completion" and content.startswith("```python\n") and content.endswith("\n```")
    # the same text as a completion of the rendered context, truncated as in mode multi
    from mtpb.prompts import truncate
    raw = greedy(server, PREFIX + "# Set x to 1.\n", max_tokens=8)["choices"][0]["text"]
    assert content == "```python\n" + truncate(raw).strip("\n") + "\n```"


def test_render_chat():
    messages = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Assign 1 to x.\nThen stop."},
                {"role": "assistant", "content": "Sure:\n```python\nx = 1\n```"},
                {"role": "user", "content": [{"type": "text", "text": "Print x."}]}]
    assert render_chat(messages) == PREFIX + "# Assign 1 to x.\n# Then stop.\nx = 1\n\n# Print x.\n"
    with pytest.raises(ApiError):
        render_chat([{"role": "tool", "content": "x"}])


def test_bad_requests_get_clear_errors_and_the_connection_survives(server):
    host, port = server.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    cases = [("POST", "/v1/completions", b"{not json", 400),
             ("POST", "/v1/completions", {"model": NAME}, 400),
             ("POST", "/v1/completions", {"model": NAME, "prompt": "x", "temperature": "hot"}, 400),
             ("POST", "/v1/completions", {"model": NAME, "prompt": "x", "max_tokens": 10 ** 9}, 400),
             ("POST", "/v1/completions", {"model": NAME, "prompt": "x", "logprobs": 5}, 400),
             ("POST", "/v1/completions", {"model": "gpt-9", "prompt": "x"}, 404),
             ("POST", "/v1/chat/completions", {"model": NAME, "messages": []}, 400),
             ("POST", "/v1/embeddings", {"model": NAME, "input": "x"}, 404),
             ("GET", "/v1/completions", None, 405)]
    for method, path, body, want in cases:
        status, reply = call(server, method, path, body, conn=conn)
        assert status == want, (path, body, reply)
        assert reply["error"]["message"]
    assert call(server, "GET", "/v1/models", conn=conn)[0] == 200   # same keep-alive connection


def test_concurrent_requests_share_engine_calls_and_match_serial_answers(server):
    prompts = [PREFIX + f"# Assign {i} to a variable named x{i}.\n" for i in range(16)]
    serial = [greedy(server, p)["choices"][0]["text"] for p in prompts]
    calls_before = server.app.batcher.stats.calls
    gate = threading.Barrier(len(prompts))

    def one(p):
        gate.wait()
        return greedy(server, p)["choices"][0]["text"]
    with ThreadPoolExecutor(len(prompts)) as pool:
        parallel = list(pool.map(one, prompts))
    assert parallel == serial
    assert server.app.batcher.stats.calls - calls_before < len(prompts)
    assert server.app.batcher.stats.largest > 1


# ------------------------------------------------------------------------------------ the official client
def test_official_openai_client(server):
    import openai  # the dev extra installs it: a missing client is a failure, not a skip
    client = openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0)
    assert [m.id for m in client.models.list()] == [NAME]
    done = client.completions.create(model=NAME, prompt=PREFIX, max_tokens=6, temperature=0, seed=1)
    assert done.choices[0].text == greedy(server, PREFIX, max_tokens=6, seed=1)["choices"][0]["text"]
    assert done.usage.completion_tokens <= 6
    chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Print 1."}],
                                          max_tokens=6, temperature=0)
    assert chat.choices[0].message.content.startswith("```python")
    streamed = "".join(c.choices[0].text for c in
                       client.completions.create(model=NAME, prompt=PREFIX, max_tokens=6, temperature=0, stream=True)
                       if c.choices)
    assert streamed == done.choices[0].text
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=NAME, messages=[{"role": "user", "content": "Print 1."}], max_tokens=6, temperature=0, stream=True)]
    assert "".join(pieces) == chat.choices[0].message.content
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="no-such-model", prompt="x", max_tokens=1)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model=NAME, prompt="x", max_tokens=1, temperature=9)


def test_api_key_is_required_when_set(checkpoint):
    from mtpb.serve import start_server
    with start_server(str(checkpoint), port=0, served_model_name=NAME, api_key="sekrit", device="cpu").start() as s:
        assert call(s, "GET", "/v1/models")[0] == 401
        assert call(s, "GET", "/v1/models", headers={"Authorization": "Bearer sekrit"})[0] == 200


def test_serve_command_starts_on_a_free_port(checkpoint):
    proc = subprocess.Popen([sys.executable, "-m", "mtpb.serve", "--model", str(checkpoint), "--port", "0",
                             "--served-model-name", NAME, "--device", "cpu"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO)
    try:
        line = proc.stdout.readline()
        assert "http://127.0.0.1:" in line, line + proc.stderr.read()
        url = line.split(" at ")[1].split()[0]
        host, port = url.removeprefix("http://").removesuffix("/v1").split(":")
        conn = http.client.HTTPConnection(host, int(port), timeout=30)
        conn.request("GET", "/v1/models")
        assert json.loads(conn.getresponse().read())["data"][0]["id"] == NAME
    finally:
        proc.terminate()
        proc.wait(10)


def test_serve_names_its_own_flags_in_option_errors(checkpoint):
    from click.testing import CliRunner

    from mtpb.serve import serve_command
    result = CliRunner().invoke(serve_command, ["--model", str(checkpoint), "--device", "cpu", "--decode", "graphs"])
    assert result.exit_code == 1
    assert "--decode graphs: needs a CUDA device" in result.output and "-B" not in result.output


def test_importing_serve_and_the_backend_does_not_import_torch():
    code = ("import sys, mtpb.serve, mtpb.backends.openai\n"
            "assert 'torch' not in sys.modules and 'openai' not in sys.modules, 'heavy import'\n"
            "assert mtpb.serve.serve_command.name == 'serve'\n")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


# ------------------------------------------------------------------------------------ the batcher alone
class FakeCompletion:
    def __init__(self, text, finish="length"):
        self.text, self.finish, self.token_ids, self.prompt_tokens = text, finish, (1,) * len(text), 1


def test_batcher_groups_by_stop_rule_and_survives_a_failing_call():
    calls = []
    running, release = threading.Event(), threading.Event()

    def run(jobs, is_finished):
        running.set()
        assert release.wait(30)
        calls.append([j.prompt for j in jobs])
        if any(j.prompt == "boom" for j in jobs):
            raise RuntimeError("engine failed")
        return [FakeCompletion(j.prompt + " then\n# next") for j in jobs]

    batcher = Batcher(run, max_batch=8)
    try:
        first = batcher.submit([Job("warm", 4)])     # occupies the engine while the rest queue up
        assert running.wait(30)                       # the engine thread holds "warm": the rest must wait
        futures = batcher.submit([Job("a", 4, stop=("\n#",)), Job("b", 4), Job("c", 4, stop=("\n#",))])
        release.set()
        assert first[0].result(5).text == "warm then\n# next"
        assert [f.result(5).text for f in futures] == ["a then", "b then\n# next", "c then"]
        assert futures[0].result().stop_reason == "\n#" and futures[1].result().finish_reason == "length"
        assert calls[1:] == [["a", "c"], ["b"]]
        bad = batcher.submit([Job("boom", 4)])
        with pytest.raises(RuntimeError):
            bad[0].result(5)
        assert batcher.submit([Job("after", 4)])[0].result(5).text.startswith("after")
    finally:
        batcher.close()


def test_finish_applies_truncation_for_chat_jobs():
    job = Job("p", 10, truncation="multi")
    assert finish(job, "x = 1\nprint(x)\nprint(2)\n", "stop") == ("x = 1\nprint(x)\n", "stop", None)
    assert finish(job, "x = 1", "eos") == ("x = 1", "stop", None)
    assert finish(Job("p", 10), "abc", "length") == ("abc", "length", None)


# ------------------------------------------------------------------------------------ hostile or careless clients
# A server of its own with small limits, so each limit is reached quickly. Every loop below is bounded
# in count and time, and every socket goes to 127.0.0.1.
LIMITS = dict(max_sequences=16, max_request_tokens=4096, max_body=1 << 20, max_drain=8 << 20, max_connections=8,
              request_timeout=1.0)


@pytest.fixture(scope="module")
def strict(checkpoint):
    from mtpb.serve import start_server
    from mtpb.serve_http import Limits
    with start_server(str(checkpoint), port=0, batch_size=4, served_model_name=NAME, device="cpu",
                      limits=Limits(**LIMITS)).start() as s:
        yield s


def raw_socket(server, timeout=10):
    import socket
    host, port = server.httpd.server_address[:2]
    return socket.create_connection((host, port), timeout=timeout)


def closed_by_server(sock, within: float) -> bool:
    """True when the server closes `sock` within `within` seconds (whatever it sent before)."""
    import socket
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        sock.settimeout(max(deadline - time.monotonic(), 0.01))
        try:
            if sock.recv(65536) == b"":
                return True
        except socket.timeout:
            return False
        except OSError:
            return True
    return False


def openai_client(server):
    import openai
    return openai.OpenAI(base_url=server.url, api_key="unused", max_retries=0, timeout=60)


def test_limits_per_request_are_400s_that_name_the_limit(strict):
    import openai
    client = openai_client(strict)
    with pytest.raises(openai.BadRequestError, match=r"64000 sequences .*1000 prompts x n=64.*limit is 16"):
        client.completions.create(model=NAME, prompt=["x"] * 1000, n=64, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match=r"more than the model's context of \d+ tokens"):
        client.completions.create(model=NAME, prompt="x = 1\n" * 3000, max_tokens=4)
    with pytest.raises(openai.BadRequestError, match=r"needs \d+ tokens .*limit is 4096 tokens per request"):
        client.completions.create(model=NAME, prompt=[PREFIX] * 8, max_tokens=1000)
    with pytest.raises(openai.BadRequestError, match="max_output_tokens|max_tokens"):
        client.responses.create(model=NAME, input="Print 1.", max_output_tokens=10 ** 6)
    assert client.completions.create(model=NAME, prompt=PREFIX, max_tokens=2, temperature=0).choices


@pytest.mark.parametrize("body", [b'{"model": "tiny", "prompt": "x", "max_tokens": 1e400}',
                                  b'{"model": "tiny", "prompt": "x", "max_tokens": NaN}',
                                  b'{"model": "tiny", "prompt": "x", "temperature": -Infinity}',
                                  b'{"model": "tiny", "prompt": "x", "max_tokens": ' + b"9" * 5000 + b"}",
                                  b"[" * 100_000 + b"]" * 100_000,
                                  b'{"model": "tiny", "prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}"])
def test_malformed_numbers_and_deep_json_are_400s(strict, body):
    host, port = strict.httpd.server_address[:2]
    conn = http.client.HTTPConnection(host, port, timeout=30)
    status, reply = call(strict, "POST", "/v1/completions", body, conn=conn)
    assert status == 400 and reply["error"]["message"], reply
    assert call(strict, "GET", "/v1/models", conn=conn)[0] == 200      # the connection is still in step


def test_oversized_body_gets_a_413_every_client_can_read(strict):
    import openai
    big = {"model": NAME, "prompt": "x" * (3 << 20), "max_tokens": 1}
    status, reply = call(strict, "POST", "/v1/completions", big)     # http.client: no BrokenPipeError
    assert status == 413 and "limit is 1048576 bytes" in reply["error"]["message"]
    with pytest.raises(openai.APIStatusError) as caught:
        openai_client(strict).completions.create(model=NAME, prompt="x" * (3 << 20), max_tokens=1)
    assert caught.value.status_code == 413 and "1048576" in str(caught.value)


def test_idle_and_slow_header_connections_are_closed(strict):
    idle = raw_socket(strict)
    assert closed_by_server(idle, within=10)
    slow = raw_socket(strict)
    slow.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
    started = time.monotonic()
    closed = False
    for i in range(100):                      # a header byte every 0.1 s: each recv is quick, the whole is not
        try:
            slow.sendall(b"X" if i else b"X-Slow: ")
        except OSError:
            closed = True
            break
        if closed_by_server(slow, within=0.1):
            closed = True
            break
    assert closed and time.monotonic() - started < 10
    kept = http.client.HTTPConnection(*strict.httpd.server_address[:2], timeout=10)   # keep-alive, then idle
    assert call(strict, "GET", "/v1/models", conn=kept)[0] == 200
    assert closed_by_server(kept.sock, within=10)


def test_open_connections_are_capped_and_threads_bounded(strict):
    threads_before = threading.active_count()
    socks = []
    try:
        for _ in range(3 * LIMITS["max_connections"]):         # slow-loris: a request line, then nothing
            socks.append(raw_socket(strict))
            socks[-1].sendall(b"POST /v1/completions HTTP/1.1\r\n")
        assert call(strict, "GET", "/v1/models")[0] == 200      # a newcomer still gets served
        assert strict.httpd.open_connections <= LIMITS["max_connections"]
        assert threading.active_count() <= threads_before + LIMITS["max_connections"]
        closed = sum(closed_by_server(s, within=0.2) for s in socks[:2 * LIMITS["max_connections"]])
        assert closed >= 2 * LIMITS["max_connections"] - 1      # the oldest made room (or timed out)
    finally:
        for s in socks:
            s.close()
    for _ in range(100):                     # the rest time out; then nothing is held
        if strict.httpd.open_connections == 0:
            break
        time.sleep(0.1)
    assert strict.httpd.open_connections == 0


def test_connections_past_the_cap_get_503_when_every_slot_runs_a_request(checkpoint):
    from mtpb.serve import start_server
    from mtpb.serve_http import Limits
    with start_server(str(checkpoint), port=0, batch_size=1, served_model_name=NAME, device="cpu",
                      limits=Limits(max_connections=1)).start() as s:
        body = json.dumps({"model": NAME, "prompt": PREFIX, "max_tokens": 1900, "temperature": 0}).encode()
        busy = raw_socket(s)
        busy.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body))
        for _ in range(1000):                 # until the engine runs it (it is no longer being read)
            if s.app.batcher.stats.calls:
                break
            time.sleep(0.01)
        try:
            status, reply = call(s, "GET", "/v1/models")
            assert status == 503 and "limit is 1" in reply["error"]["message"]
        finally:
            busy.close()


def test_work_for_a_client_that_left_is_dropped(strict):
    stats = strict.app.batcher.stats
    cancelled = stats.cancelled
    body = json.dumps({"model": NAME, "prompt": [PREFIX, PREFIX + "x"], "max_tokens": 1900, "temperature": 0}).encode()
    sock = raw_socket(strict)
    sock.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
    calls = stats.calls
    for _ in range(300):                     # until the engine has taken it
        if stats.calls > calls or strict.app.batcher.waiting() == 0:
            break
        time.sleep(0.01)
    sock.close()
    for _ in range(600):                     # greedy from PREFIX runs 1900 tokens when nothing stops it
        if stats.cancelled >= cancelled + 2:
            break
        time.sleep(0.05)
    assert stats.cancelled == cancelled + 2
    assert greedy(strict, PREFIX, max_tokens=2)["choices"]


def test_fair_batches_let_small_requests_through_a_large_one():
    calls = []
    running, release = threading.Event(), threading.Event()

    def run(jobs, is_finished):
        calls.append([j.prompt for j in jobs])
        running.set()
        assert release.wait(30)
        return [FakeCompletion(j.prompt) for j in jobs]

    batcher = Batcher(run, max_batch=4)
    try:
        large = batcher.submit([Job(f"big{i}", 4) for i in range(16)])
        assert running.wait(30)               # the first batch of the large request is in the engine
        small = batcher.submit([Job("small", 4)])
        release.set()
        assert small[0].result(30).text == "small"
        assert [f.result(30).text for f in large] == [f"big{i}" for i in range(16)]
        assert calls[0] == ["big0", "big1", "big2", "big3"]
        assert "small" in calls[1]            # the very next batch, not after the other 12 sequences
    finally:
        batcher.close()


def test_a_cancelled_ticket_stops_waiting_and_running_jobs():
    from mtpb.serve_batcher import Ticket
    steps = []

    def run(jobs, is_finished):               # a fake engine: asks on_token after every token, as the real one
        out = []
        for job in jobs:
            tokens = []
            for t in range(100):
                tokens.append(t)
                steps.append(job.prompt)
                if job.on_token(tokens):
                    break
            out.append(FakeCompletion("x" * len(tokens), "cancelled" if len(tokens) < 100 else "length"))
        return out

    ticket = Ticket()
    ticket.cancel()
    batcher = Batcher(run, max_batch=2)
    try:
        futures = batcher.submit([Job(f"p{i}", 100, ticket=ticket, slot=i) for i in range(6)])
        for f in futures:
            with pytest.raises(Exception):
                f.result(30)
        assert len(steps) <= 2                # at most the batch already taken, one token each
    finally:
        batcher.close()


def test_memory_returns_after_large_requests(strict):
    def rss_mb():
        with open("/proc/self/status") as f:
            return int(next(line for line in f if line.startswith("VmRSS")).split()[1]) / 1024
    def large():                              # just under the body limit, refused after tokenising
        status, _ = call(strict, "POST", "/v1/completions", {"model": NAME, "prompt": "ab " * 330_000, "max_tokens": 1})
        assert status == 400
    greedy(strict, PREFIX, max_tokens=2)
    large()                                   # the first one may grow pools that then stay (the steady level)
    before = rss_mb()
    for _ in range(5):
        large()
    # the old server kept each large request's memory (1.4 GB for a 30 MB prompt); this process also
    # hosts other tests' leftovers, so allow it noise, not growth per request
    assert rss_mb() - before < 200


# ------------------------------------------------------------------------------------ clients as they come
def test_responses_api_with_the_official_client(server):
    client = openai_client(server)
    chat = client.chat.completions.create(model=NAME, messages=[{"role": "user", "content": "Print 1."}],
                                          max_tokens=8, temperature=0)
    reply = client.responses.create(model=NAME, input="Print 1.", instructions="Be brief.", max_output_tokens=8,
                                    temperature=0, top_p=1)
    assert reply.output_text == chat.choices[0].message.content
    assert reply.usage.input_tokens == chat.usage.prompt_tokens
    assert reply.usage.output_tokens == chat.usage.completion_tokens
    listed = client.responses.create(model=NAME, max_output_tokens=8, temperature=0,
                                     input=[{"role": "user", "content": [{"type": "input_text", "text": "Print 1."}]}])
    assert listed.output_text == reply.output_text
    import openai
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model=NAME, input=[{"type": "function_call_output", "call_id": "x", "output": "1"}])


def test_streaming_is_token_by_token(server):
    client = openai_client(server)
    messages = [{"role": "user", "content": "Assign 1 to x."}]
    whole = client.chat.completions.create(model=NAME, messages=messages, max_tokens=40, temperature=0)
    pieces = [c.choices[0].delta.content or "" for c in client.chat.completions.create(
        model=NAME, messages=messages, max_tokens=40, temperature=0, stream=True) if c.choices]
    assert "".join(pieces) == whole.choices[0].message.content
    assert len([p for p in pieces if p]) > 3, pieces                # not one chunk
    text = greedy(server, PREFIX, max_tokens=30)["choices"][0]["text"]
    chunks = [c.choices[0].text for c in client.completions.create(model=NAME, prompt=PREFIX, max_tokens=30,
                                                                   temperature=0, stream=True) if c.choices]
    assert "".join(chunks) == text and len([c for c in chunks if c]) > 3, chunks


INSPECT_TASK = r'''
import sys
from inspect_ai import Task, eval
from inspect_ai.dataset import Sample
from inspect_ai.scorer import includes
from inspect_ai.solver import generate

task = Task(dataset=[Sample(input="Print 1.", target="```python")], solver=generate(), scorer=includes())
log = eval(task, model="openai/tiny", log_dir=sys.argv[1], display="none")[0]
assert log.status == "success", log.error
output = log.samples[0].output
print("FENCED", output.completion.startswith("```python\n") and output.completion.endswith("\n```"))
print("ACCURACY", log.results.scores[0].metrics["accuracy"].value)
'''


def test_inspect_ai_openai_provider_with_no_extra_options(server, tmp_path):
    import importlib.util
    assert importlib.util.find_spec("inspect_ai"), "the dev extra installs inspect-ai"
    env = {**__import__("os").environ, "OPENAI_BASE_URL": server.url, "OPENAI_API_KEY": "unused",
           "INSPECT_LOG_DIR": str(tmp_path)}
    responses = server.app.served["response"]
    done = subprocess.run([sys.executable, "-c", INSPECT_TASK, str(tmp_path)], env=env, capture_output=True,
                          text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "FENCED True" in done.stdout and "ACCURACY 1.0" in done.stdout, done.stdout
    assert server.app.served["response"] > responses            # through /v1/responses, its default


def test_a_sequence_is_answered_when_it_ends_not_when_its_batch_does():
    from mtpb.serve_batcher import Ticket
    release = threading.Event()

    def run(jobs, is_finished):               # job 0 ends at its first token; job 1 runs until released
        jobs[0].on_token([7], "length")
        assert release.wait(30)
        jobs[1].on_token([8, 9], "length")
        return [FakeCompletion("a"), FakeCompletion("bc")]

    batcher = Batcher(run, max_batch=4, decode=lambda ids: "".join(chr(ord("a") + i - 7) for i in ids))
    try:
        ticket = Ticket()
        first, second = batcher.submit([Job("p", 1, prompt_ids=(1, 2), ticket=ticket, slot=0),
                                        Job("q", 2, prompt_ids=(3,), ticket=ticket, slot=1)])
        out = first.result(30)                # while the other sequence of the call still runs
        assert not second.done() and (out.text, out.prompt_tokens, out.completion_tokens) == ("a", 2, 1)
        release.set()
        assert second.result(30).text == "bc"
    finally:
        release.set()
        batcher.close()
