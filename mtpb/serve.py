"""`mtpb serve`: the bundled CodeGen engine behind an OpenAI-compatible HTTP API.

    mtpb serve --model FOLDER [--host 127.0.0.1] [--port 8000] [--device cuda] [--dtype fp16] [--batch-size 16]

POST /v1/completions, POST /v1/chat/completions, POST /v1/responses, GET /v1/models, GET /health.
Handler threads (stdlib ThreadingHTTPServer, bounded: serve_http.py) parse, validate and tokenise
requests and hand jobs to one engine thread (serve_batcher.Batcher), which fills each generate call
round-robin over the waiting requests. Per-request limits (serve_http.Limits): sequences (prompts
x n), prompt + max_tokens within the model's context, total tokens; each refusal is a 400 naming it.

Fields read: model, prompt (a string or a list of strings), messages, max_tokens (chat also
max_completion_tokens), temperature, top_p, n, stop, seed, stream. Defaults follow the OpenAI API
(temperature 1, top_p 1, n 1, max_tokens 16 for completions). Sampling uses the server's top-k
(--top-k, 50 as transformers and the codegen backend). A prompt longer than the model's context
(plus max_tokens) is refused, as vLLM does. Each choice also carries vLLM's `stop_reason`: the stop string that
ended it, so a client can restore what the model wrote (the openai backend does).

Chat on a base model: the conversation is rendered as the MTPB multi-turn context, PREFIX, then
per user message "# " + each of its lines, per assistant message the code of its fenced block
followed by a blank line; system messages are dropped (a base model cannot follow instructions).
The model continues with code, which ends where MTPB truncation (mode multi) would end it, and
the reply is that code in a ```python fence. stream=true answers with server-sent events, token
by token (text that a stop string or the truncation could still take back is held until it cannot).
A client that disconnects has its sequences dropped within one decode step.

/v1/responses serves the part of the Responses API that evaluation clients (inspect-ai) use: input
as a string or a list of messages, instructions (dropped, as system messages are), max_output_tokens,
temperature, top_p; the reply's output_text and usage. It answers like chat (a fenced reply).
"""
from __future__ import annotations

import json
import math
import secrets
import sys
import threading
import time
from collections import Counter
from concurrent.futures import Future, wait
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from pathlib import Path

import click

from mtpb.paths import tiny_checkpoint
from mtpb.prompts import served_chat_context
from mtpb.serve_batcher import Batcher, Job, Output, Ticket, finish
from mtpb.serve_http import ApiError, HTTPServer, Limits, client_gone, parse_json, release_memory
from mtpb.serve_responses import response_object, responses_messages, responses_sampling

MAX_N = 64
POLL = 0.05       # seconds between looks at a waiting client's socket (does it still listen?)
# Fields whose non-neutral values we cannot honour: refused rather than silently ignored.
UNSUPPORTED = {"logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": (None, False),
               "best_of": (None, 1), "suffix": (None, ""), "logit_bias": (None, {}),
               "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
               "tools": (None, []), "response_format": (None, {"type": "text"})}


class ClientGone(Exception):
    """The client closed its connection while its request ran: nothing to answer."""


@dataclass(frozen=True)
class Sampling:
    max_tokens: int
    temperature: float
    top_p: float
    n: int
    stop: tuple[str, ...]
    seed: int | None
    stream: bool


# ------------------------------------------------------------------------------------ requests
def render_chat(messages) -> str:
    """The MTPB multi-turn context for a conversation (see the module docstring), from checked messages."""
    if not isinstance(messages, list) or not messages:
        raise ApiError(400, "messages must be a non-empty list", "messages")
    turns = []
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or "role" not in message:
            raise ApiError(400, f"messages[{i}] must be an object with a role", "messages")
        role, text = message["role"], _content(message.get("content"), i)
        if role in ("user", "assistant"):
            turns.append((role, text))
        elif role not in ("system", "developer"):   # a base model cannot follow instructions: dropped
            raise ApiError(400, f"messages[{i}]: role {role!r} is not supported (system, user, assistant)",
                           "messages")
    return served_chat_context(turns)


def _content(content, i: int) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):   # [{"type": "text", "text": ...}, ...]
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        if len(parts) == len(content) and all(isinstance(p, str) for p in parts):
            return "".join(parts)
    raise ApiError(400, f"messages[{i}].content must be a string or a list of text parts", "messages")


def _number(body: dict, name: str, default, kind, low, high):
    value = body.get(name)
    if value is None:
        return default
    if isinstance(value, float) and not math.isfinite(value):
        raise ApiError(400, f"{name} must be a finite number", name)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ApiError(400, f"{name} must be {'an integer' if kind is int else 'a number'}", name)
    if not low <= value <= high:
        raise ApiError(400, f"{name} must be between {low} and {high}, got {value}", name)
    return kind(value)


def parse_sampling(body: dict, max_length: int, chat: bool) -> Sampling:
    for name, neutral in UNSUPPORTED.items():
        if body.get(name) not in neutral:
            raise ApiError(400, f"{name} is not supported by mtpb serve", name)
    budget = "max_completion_tokens" if chat and body.get("max_tokens") is None else "max_tokens"
    default_tokens = 256 if chat else 16
    stop = body.get("stop")
    if isinstance(stop, str):
        stop = [stop]
    if stop is None:
        stop = []
    if not isinstance(stop, list) or not all(isinstance(s, str) for s in stop) or len(stop) > 16:
        raise ApiError(400, "stop must be a string or a list of at most 16 strings", "stop")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise ApiError(400, "stream must be true or false", "stream")
    seed = body.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise ApiError(400, "seed must be an integer", "seed")
    return Sampling(max_tokens=_number(body, budget, default_tokens, int, 0, max_length - 1),
                    temperature=_number(body, "temperature", 1.0, float, 0.0, 2.0),
                    top_p=_number(body, "top_p", 1.0, float, 0.0, 1.0),
                    n=_number(body, "n", 1, int, 1, MAX_N),
                    stop=tuple(s for s in stop if s), seed=seed, stream=stream)


def make_jobs(prompts: list[str], s: Sampling, truncation: str | None = None,
              prompt_ids: list[list[int]] | None = None, ticket: Ticket | None = None) -> list[Job]:
    """n jobs per prompt, choice index = prompt index * n + sample; seeds seed, seed+1, ... ."""
    base = s.seed if s.seed is not None else secrets.randbits(31)
    ids = prompt_ids or [None] * len(prompts)
    pairs = [(p, tuple(i) if i else None) for p, i in zip(prompts, ids) for _ in range(s.n)]
    return [Job(prompt=p, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                seed=(base + k) & 0x7FFFFFFFFFFFFFFF, stop=s.stop, truncation=truncation, prompt_ids=i,
                ticket=ticket, slot=k)
            for k, (p, i) in enumerate(pairs)]


def completion_prompts(body: dict) -> list[str]:
    prompt = body.get("prompt")
    if isinstance(prompt, str):
        return [prompt]
    if isinstance(prompt, list) and prompt and all(isinstance(p, str) for p in prompt):
        return prompt
    raise ApiError(400, "prompt must be a string or a non-empty list of strings (token ids are not supported)",
                   "prompt")


def fenced(code: str) -> str:
    return f"```python\n{code.strip(chr(10))}\n```"


# ------------------------------------------------------------------------------------ responses
def usage(outputs: list[Output], n: int) -> dict:
    prompt = sum(o.prompt_tokens for o in outputs[::n])
    done = sum(o.completion_tokens for o in outputs)
    return {"prompt_tokens": prompt, "completion_tokens": done, "total_tokens": prompt + done}


def completion_choice(i: int, o: Output) -> dict:
    return {"index": i, "text": o.text, "logprobs": None, "finish_reason": o.finish_reason,
            "stop_reason": o.stop_reason}


def chat_choice(i: int, o: Output) -> dict:
    return {"index": i, "message": {"role": "assistant", "content": fenced(o.text)}, "logprobs": None,
            "finish_reason": o.finish_reason, "stop_reason": o.stop_reason}


@dataclass
class Plan:
    """A checked request, ready for the engine thread."""
    kind: str                         # completion | chat | response
    jobs: list[Job]
    sampling: Sampling
    ticket: Ticket


class App:
    """What the handlers share: the served name, the tokenizer, the engine thread, the limits."""

    def __init__(self, name: str, batcher: Batcher, max_length: int, api_key: str | None = None,
                 tokenizer=None, limits: Limits = Limits()):
        self.name, self.batcher, self.max_length, self.api_key = name, batcher, max_length, api_key
        self.tokenizer, self.limits = tokenizer, limits
        self.created = int(time.time())
        self.served: Counter[str] = Counter()   # answered requests per kind (completion, chat, response)

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "mtpb", "max_model_len": self.max_length}]}

    def plan(self, body: dict, kind: str) -> Plan:
        """Validate, tokenise (here, on the handler's thread) and check the limits; 400s name them."""
        if body.get("model") not in (self.name, None):
            raise ApiError(404, f"model {body.get('model')!r} does not exist: this server serves {self.name!r}",
                           "model", "not_found_error")
        if kind == "response":
            s = parse_sampling(responses_sampling(body), self.max_length, chat=True)
            prompts, truncation = [render_chat(responses_messages(body))], "multi"
        elif kind == "chat":
            s = parse_sampling(body, self.max_length, chat=True)
            prompts, truncation = [render_chat(body.get("messages"))], "multi"
        else:
            s = parse_sampling(body, self.max_length, chat=False)
            prompts, truncation = completion_prompts(body), None
        limits = self.limits
        if len(prompts) * s.n > limits.max_sequences:
            raise ApiError(400, f"this request asks for {len(prompts) * s.n} sequences ({len(prompts)} prompts x "
                           f"n={s.n}): the limit is {limits.max_sequences} sequences per request", "n")
        ids = self.tokenizer.encode_batch(prompts) if self.tokenizer is not None else None
        if ids is not None:
            for i, p in enumerate(ids):
                if len(p) + s.max_tokens > self.max_length:
                    raise ApiError(400, f"prompt {i} has {len(p)} tokens and max_tokens is {s.max_tokens}: together "
                                   f"more than the model's context of {self.max_length} tokens", "prompt")
            total = sum(len(p) + s.max_tokens for p in ids) * s.n
            if total > limits.max_request_tokens:
                raise ApiError(400, f"this request needs {total} tokens (prompt + max_tokens, summed over its "
                               f"sequences): the limit is {limits.max_request_tokens} tokens per request",
                               "max_tokens")
        ticket = Ticket()
        return Plan(kind, make_jobs(prompts, s, truncation, ids, ticket), s, ticket)

    def reply(self, plan: Plan, outputs: list[Output], body: dict) -> dict:
        if plan.kind == "response":
            s = plan.sampling
            return response_object(self.name, outputs[0], fenced(outputs[0].text), body, s.max_tokens,
                                    s.temperature, s.top_p)
        chat = plan.kind == "chat"
        choice = chat_choice if chat else completion_choice
        return {"id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
                "object": "chat.completion" if chat else "text_completion", "created": int(time.time()),
                "model": self.name, "choices": [choice(i, o) for i, o in enumerate(outputs)],
                "usage": usage(outputs, plan.sampling.n)}


def visible(job: Job, text: str, chat: bool) -> str:
    """The part of a sequence's text so far that no later token can take back (what streams now)."""
    text = text.rstrip("\ufffd")                    # a character whose bytes are not all there yet
    hold = max((len(s) for s in job.stop), default=1) - 1
    cut, reason, _ = finish(job, text, "length")
    if len(cut) < len(text) and job.truncation is None:
        return cut                                  # a stop string matched: this is the final text
    base = text[:len(text) - hold] if hold else text
    if chat:                                        # truncation decides per line: hold the last one
        base = base[:base.rfind("\n") + 1]
    cut = finish(job, base, "length")[0]
    return cut.strip("\n") if chat else cut


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive: clients reuse their connection
    server_version = "mtpb-serve"

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined]

    def setup(self):
        super().setup()
        self.connection.settimeout(self.server.limits.request_timeout)   # type: ignore[attr-defined]
        self._watch = True

    def handle_one_request(self):
        self.server.set_deadline(self.connection)   # type: ignore[attr-defined]  # idle wait + request line + headers + body
        super().handle_one_request()

    def do_GET(self):
        self._handle(self._get)

    def do_POST(self):
        self._handle(self._post)

    def _get(self):
        path = self.path.split("?")[0].rstrip("/")
        if path in ("/v1/models", "/models"):
            return self._json(200, self.app.models())
        if path == "/health":
            return self._json(200, {"status": "ok"})
        if path in ("/v1/completions", "/v1/chat/completions", "/v1/responses"):
            raise ApiError(405, f"{path} takes POST")
        raise ApiError(404, f"no route {path}: try /v1/completions, /v1/chat/completions, /v1/responses, "
                       "/v1/models", kind="not_found_error")

    def _post(self):
        path = self.path.split("?")[0].rstrip("/").removeprefix("/v1")
        kind = {"/completions": "completion", "/chat/completions": "chat", "/responses": "response"}.get(path)
        if kind is None:
            raise ApiError(404, f"no route {self.path}: try /v1/completions, /v1/chat/completions or /v1/responses",
                           kind="not_found_error")
        body = parse_json(self._body)
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        plan = self.app.plan(body, kind)
        futures = self.app.batcher.submit(plan.jobs)
        try:
            if plan.sampling.stream:
                return self._stream(plan, futures)
            outputs = self._wait(futures, plan.ticket)
        except BaseException:
            plan.ticket.cancel()          # whatever went wrong, the engine stops working for it
            raise
        self._json(200, self.app.reply(plan, outputs, body))
        self.app.served[kind] += 1

    def _wait(self, futures: list[Future], ticket: Ticket) -> list[Output]:
        """The outputs, watching the socket meanwhile: a client that hangs up cancels its request."""
        while wait(futures, timeout=POLL if self._watch else None).not_done:
            self._check_client(ticket)
        return [f.result() for f in futures]

    def _check_client(self, ticket: Ticket) -> None:
        if not self._watch:
            return
        gone = client_gone(self.connection)
        if gone:
            ticket.cancel()
            raise ClientGone
        if gone is None:
            self._watch = False           # it sent more (pipelining): its hang-up cannot be seen now

    def _handle(self, route):
        self._body = b""
        try:
            if self.command == "POST":    # read first, whatever the answer: the connection stays in step
                self._body = self._read_body()
            self.server.clear_deadline(self.connection)  # type: ignore[attr-defined]
            key = self.app.api_key
            if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
                raise ApiError(401, "invalid or missing API key (Authorization: Bearer KEY)",
                               kind="authentication_error")
            route()
        except ApiError as e:
            try:
                self._json(e.status, {"error": {"message": e.message, "type": e.kind, "param": e.param,
                                                "code": e.status}})
            except OSError:                       # closed meanwhile (timed out, evicted, hung up)
                self.close_connection = True
                return
            if e.status == 413:
                self._drain()
        except (ClientGone, BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True          # the client went away: nothing to answer
        except Exception as e:                    # a bug or an engine failure: answer, log, keep serving
            print(f"mtpb serve: {type(e).__name__}: {e}", file=sys.stderr)
            try:
                self._json(500, {"error": {"message": f"{type(e).__name__}: {e}", "type": "server_error",
                                           "param": None, "code": 500}})
            except OSError:
                self.close_connection = True
        finally:
            if len(self._body) > (1 << 20):   # a large body leaves freed heap behind: give it back
                self._body = b""
                release_memory()

    def _read_body(self) -> bytes:
        if "chunked" in (self.headers.get("Transfer-Encoding") or "").lower():
            self.close_connection = True
            raise ApiError(411, "send the body with a Content-Length (chunked bodies are not supported)")
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        limit = self.server.limits.max_body  # type: ignore[attr-defined]
        if length > limit:
            self.close_connection = True
            self._unread = length
            raise ApiError(413, f"the request body has {length} bytes: the limit is {limit} bytes")
        if length < 0:
            self.close_connection = True          # the unread body would be taken for the next request
            raise ApiError(400, "bad Content-Length")
        return self.rfile.read(length)

    def _drain(self) -> None:
        """Read and drop an oversized body (up to max_drain, within the request deadline), so the
        client, still sending, gets to read the 413 instead of a broken pipe."""
        left = min(self._unread, self.server.limits.max_drain)  # type: ignore[attr-defined]
        self.server.set_deadline(self.connection)  # type: ignore[attr-defined]
        try:
            while left > 0:
                chunk = self.rfile.read1(min(left, 1 << 20))
                if not chunk:
                    break
                left -= len(chunk)
        except OSError:
            pass
        finally:
            self.server.clear_deadline(self.connection)  # type: ignore[attr-defined]

    def _json(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(data)

    # ---- streaming
    def _stream(self, plan: Plan, futures: list[Future]) -> None:
        """Server-sent events, token by token per choice (interleaved), then finish chunks, [DONE]."""
        chat = plan.kind == "chat"
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")   # the end of the stream is the end of the connection
        self.end_headers()
        self.close_connection = True
        head = {"id": f"{'chatcmpl' if chat else 'cmpl'}-{secrets.token_hex(12)}",
                "object": "chat.completion.chunk" if chat else "text_completion",
                "created": int(time.time()), "model": self.app.name}
        n = len(plan.jobs)
        sent, ended = [""] * n, [False] * n
        eos = getattr(self.app.tokenizer, "eos_id", None)

        def send(part: dict) -> None:
            self.wfile.write(("data: " + json.dumps({**head, "choices": [part]}) + "\n\n").encode())

        def delta(i: int, text: str) -> None:
            if chat:
                send({"index": i, "delta": {"content": text}, "logprobs": None, "finish_reason": None})
            else:
                send({"index": i, "text": text, "logprobs": None, "finish_reason": None})

        if chat:
            for i in range(n):
                send({"index": i, "delta": {"role": "assistant", "content": "```python\n"}, "logprobs": None,
                      "finish_reason": None})
        while not all(ended):
            plan.ticket.changed.wait(POLL)
            plan.ticket.changed.clear()
            for i, (job, future) in enumerate(zip(plan.jobs, futures)):
                if ended[i]:
                    continue
                if future.done():
                    o = future.result()
                    final = o.text.strip("\n") if chat else o.text
                    rest = final[len(sent[i]):] if final.startswith(sent[i]) else ""
                    if chat:
                        rest += "\n```"
                    if rest:
                        delta(i, rest)
                    last = {"index": i, "logprobs": None, "finish_reason": o.finish_reason}
                    if chat:
                        last["delta"] = {}
                    else:
                        last.update(text="", stop_reason=o.stop_reason)
                    send(last)
                    ended[i] = True
                elif i in plan.ticket.progress:
                    tokens = [t for t in list(plan.ticket.progress[i]) if t != eos]
                    now = visible(job, self.app.tokenizer.decode(tokens), chat)
                    if len(now) > len(sent[i]) and now.startswith(sent[i]):
                        delta(i, now[len(sent[i]):])
                        sent[i] = now
            self.wfile.flush()
            if not all(ended):
                self._check_client(plan.ticket)
        self.wfile.write(b"data: [DONE]\n\n")
        self.wfile.flush()
        self.app.served[plan.kind] += 1

    def log_message(self, format, *args):         # quiet: a benchmark server answers thousands of calls
        pass


# ------------------------------------------------------------------------------------ the server
class Server:
    """A running server: HTTP threads on `httpd`, the engine thread in `batcher`."""

    def __init__(self, httpd: HTTPServer, app: App, info: dict):
        self.httpd, self.app, self.info = httpd, app, info
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def serve_forever(self) -> None:
        self.httpd.serve_forever(poll_interval=0.2)

    def start(self) -> Server:
        """Serve from a background thread (tests, the bench); close() stops it."""
        self._thread = threading.Thread(target=self.serve_forever, name="mtpb-http", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        if self._thread is not None:
            self.httpd.shutdown()
            self._thread.join()
        self.httpd.server_close()
        self.app.batcher.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


def engine_runner(engine):
    from mtpb.engine.requests import GenerationRequest

    def run(jobs: list[Job], is_finished):
        # key=None: the engine's cache still finds shared prefixes (turns of one conversation) by content
        return engine.generate([GenerationRequest(prompt=j.prompt, max_new_tokens=j.max_tokens, seed=j.seed,
                                                  temperature=j.temperature, top_p=j.top_p,
                                                  prompt_ids=j.prompt_ids, on_token=j.on_token) for j in jobs],
                               is_finished)
    return run


def start_server(model: str | None = None, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 16, max_length: int | None = None, top_k: int = 50,
                 served_model_name: str | None = None, api_key: str | None = None,
                 decode: str | None = None, limits: Limits = Limits(), runtime: str | None = None,
                 mesh: str | None = None) -> Server:
    """Load the model, bind the address; call serve_forever() or start() on the result.
    A bad option or checkpoint raises mtpb.engine.load.EngineError."""
    from mtpb.engine.runtime import load_engine   # torch or jax is imported here, not when the CLI starts
    checkpoint = str(model or tiny_checkpoint())
    engine = load_engine(checkpoint, runtime, mesh, device=device, dtype=dtype, batch_size=batch_size,
                         max_length=max_length, top_k=top_k, decode=decode)
    info = {"model": checkpoint, **engine.describe()}
    name = served_model_name or model or Path(checkpoint).name
    batcher = Batcher(engine_runner(engine), max_batch=batch_size, decode=engine.tokenizer.decode)
    try:
        httpd = HTTPServer((host, port), Handler, limits)
    except OSError:
        batcher.close()
        raise
    httpd.app = App(name, batcher, engine.max_length, api_key, engine.tokenizer, limits)  # type: ignore[attr-defined]
    return Server(httpd, httpd.app, info)  # type: ignore[attr-defined]


@click.command("serve")
@click.option("--model", default=None, help="CodeGen checkpoint folder or hub id (default: the bundled tiny one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available); runtime jax: cpu, gpu or tpu.")
@click.option("--dtype", default=None, type=click.Choice(["fp32", "fp16", "bf16"]),
              help="Default: fp16 on cuda, fp32 on cpu.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1),
              help="Most sequences in one engine call.")
@click.option("--max-length", default=None, type=click.IntRange(2), help="Context + generation tokens (default: the model's).")
@click.option("--top-k", default=50, show_default=True, type=click.IntRange(0), help="Top-k when sampling (0: off).")
@click.option("--decode", default=None, type=click.Choice(["graphs", "eager"]),
              help="Decode step: CUDA graphs (default on cuda) or eager (default elsewhere).")
@click.option("--runtime", default="torch", show_default=True, type=click.Choice(["torch", "jax"]),
              help="The engine's framework: torch (CPU, CUDA) or jax (TPU, GPU, CPU; pip install 'mtpb[jax]').")
@click.option("--mesh", default=None, help="runtime jax: DATAxMODEL devices, e.g. 1x8 tensor-parallel "
              "(default: from the devices present).")
@click.option("--served-model-name", default=None, help="The model id clients send (default: the --model value).")
@click.option("--api-key", default=None, envvar="MTPB_SERVE_API_KEY",
              help="Require 'Authorization: Bearer KEY' (default: no key; also $MTPB_SERVE_API_KEY).")
@click.option("--max-sequences", default=Limits.max_sequences, show_default=True, type=click.IntRange(1),
              help="Most sequences (prompts x n) in one request.")
@click.option("--max-request-tokens", default=Limits.max_request_tokens, show_default=True, type=click.IntRange(1),
              help="Most prompt + max_tokens tokens, summed over a request's sequences.")
@click.option("--max-connections", default=Limits.max_connections, show_default=True, type=click.IntRange(1),
              help="Most open connections (one thread each); more get 503.")
@click.option("--request-timeout", default=Limits.request_timeout, show_default=True, type=click.FloatRange(0.1),
              help="Seconds a client has to send a whole request (idle keep-alive included).")
def serve_command(model, host, port, device, dtype, batch_size, max_length, top_k, decode, runtime, mesh,
                  served_model_name, api_key, max_sequences, max_request_tokens, max_connections, request_timeout):
    """Serve a CodeGen checkpoint over an OpenAI-compatible API (completions, chat, responses)."""
    from mtpb.engine.checkpoint import EngineError
    try:
        limits = Limits(max_sequences=max_sequences, max_request_tokens=max_request_tokens,
                        max_connections=max_connections, request_timeout=request_timeout)
        server = start_server(model, host, port, device, dtype, batch_size, max_length, top_k,
                              served_model_name, api_key, decode, limits, runtime, mesh)
    except EngineError as e:
        raise click.ClickException(f"--{e.option.replace('_', '-')} {e.value}: {e}" if e.option else str(e)) from None
    except OSError as e:
        raise click.ClickException(f"cannot listen on {host}:{port}: {e.strerror or e}") from None
    if host not in ("127.0.0.1", "localhost", "::1") and api_key is None:
        click.echo(f"warning: {host} is not loopback and no --api-key is set: anyone who reaches it can use "
                   "the model", err=True)
    click.echo(f"mtpb serve: {server.app.name!r} at {server.url} ({server.info['device']}, "
               f"{server.info['dtype']}, batch size {batch_size}); Ctrl-C stops")
    sys.stdout.flush()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.close()


if __name__ == "__main__":
    serve_command()
