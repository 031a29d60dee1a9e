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
    release = threading.Event()

    def run(jobs, is_finished):
        release.wait(5)
        calls.append([j.prompt for j in jobs])
        if any(j.prompt == "boom" for j in jobs):
            raise RuntimeError("engine failed")
        return [FakeCompletion(j.prompt + " then\n# next") for j in jobs]

    batcher = Batcher(run, max_batch=8)
    try:
        first = batcher.submit([Job("warm", 4)])     # occupies the engine while the rest queue up
        time.sleep(0.1)
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
