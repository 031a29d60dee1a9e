"""`mtpb serve`: the bundled CodeGen engine behind an OpenAI-compatible HTTP API.

    mtpb serve --model FOLDER [--host 127.0.0.1] [--port 8000] [--device cuda] [--dtype fp16] [--batch-size 16]

POST /v1/completions, POST /v1/chat/completions, GET /v1/models, GET /health. Handler threads
(stdlib ThreadingHTTPServer) parse and validate requests and hand jobs to one engine thread
(serve_batcher.Batcher), which batches whatever is waiting into one generate call.

Fields read: model, prompt (a string or a list of strings), messages, max_tokens (chat also
max_completion_tokens), temperature, top_p, n, stop, seed, stream. Defaults follow the OpenAI API
(temperature 1, top_p 1, n 1, max_tokens 16 for completions). Sampling uses the server's top-k
(--top-k, 50 as transformers and the codegen backend). A prompt longer than the model's context
keeps its most recent tokens. Each choice also carries vLLM's `stop_reason`: the stop string that
ended it, so a client can restore what the model wrote (the openai backend does).

Chat on a base model: the conversation is rendered as the MTPB multi-turn context, PREFIX, then
per user message "# " + each of its lines, per assistant message the code of its fenced block
followed by a blank line; system messages are dropped (a base model cannot follow instructions).
The model continues with code, which ends where MTPB truncation (mode multi) would end it, and
the reply is that code in a ```python fence. stream=true answers with server-sent events, the
whole text in one chunk (the engine does not yield tokens one by one).
"""
from __future__ import annotations

import json
import secrets
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import click

from mtpb.paths import tiny_checkpoint
from mtpb.prompts import served_chat_context
from mtpb.serve_batcher import Batcher, Job, Output

MAX_BODY = 32 << 20
MAX_N = 64
# Fields whose non-neutral values we cannot honour: refused rather than silently ignored.
UNSUPPORTED = {"logprobs": (None, False, 0), "top_logprobs": (None, 0), "echo": (None, False),
               "best_of": (None, 1), "suffix": (None, ""), "logit_bias": (None, {}),
               "presence_penalty": (None, 0), "frequency_penalty": (None, 0),
               "tools": (None, []), "response_format": (None, {"type": "text"})}


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


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


def make_jobs(prompts: list[str], s: Sampling, truncation: str | None = None) -> list[Job]:
    """n jobs per prompt, choice index = prompt index * n + sample; seeds seed, seed+1, ... ."""
    base = s.seed if s.seed is not None else secrets.randbits(31)
    return [Job(prompt=p, max_tokens=s.max_tokens, temperature=s.temperature, top_p=s.top_p,
                seed=(base + k) & 0x7FFFFFFFFFFFFFFF, stop=s.stop, truncation=truncation)
            for k, p in enumerate(p for p in prompts for _ in range(s.n))]


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


class App:
    """What the handlers share: the served name, the engine thread, the limits."""

    def __init__(self, name: str, batcher: Batcher, max_length: int, api_key: str | None = None):
        self.name, self.batcher, self.max_length, self.api_key = name, batcher, max_length, api_key
        self.created = int(time.time())

    def models(self) -> dict:
        return {"object": "list", "data": [{"id": self.name, "object": "model", "created": self.created,
                                            "owned_by": "mtpb", "max_model_len": self.max_length}]}

    def complete(self, body: dict, chat: bool) -> tuple[dict, Sampling]:
        if body.get("model") not in (self.name, None):
            raise ApiError(404, f"model {body.get('model')!r} does not exist: this server serves {self.name!r}",
                           "model", "not_found_error")
        s = parse_sampling(body, self.max_length, chat)
        if chat:
            jobs = make_jobs([render_chat(body.get("messages"))], s, truncation="multi")
        else:
            jobs = make_jobs(completion_prompts(body), s)
        outputs = [f.result() for f in self.batcher.submit(jobs)]
        kind = "chatcmpl" if chat else "cmpl"
        choice = chat_choice if chat else completion_choice
        reply = {"id": f"{kind}-{secrets.token_hex(12)}", "object": "chat.completion" if chat else "text_completion",
                 "created": int(time.time()), "model": self.name,
                 "choices": [choice(i, o) for i, o in enumerate(outputs)], "usage": usage(outputs, s.n)}
        return reply, s


def stream_events(reply: dict, chat: bool):
    """SSE chunks: per choice its whole text, then its finish_reason; then [DONE]."""
    head = {k: reply[k] for k in ("id", "created", "model")}
    head["object"] = "chat.completion.chunk" if chat else "text_completion"
    for c in reply["choices"]:
        if chat:
            parts = [{"index": c["index"], "delta": {"role": "assistant", "content": c["message"]["content"]},
                      "finish_reason": None},
                     {"index": c["index"], "delta": {}, "finish_reason": c["finish_reason"]}]
        else:
            parts = [{"index": c["index"], "text": c["text"], "logprobs": None, "finish_reason": None},
                     {"index": c["index"], "text": "", "logprobs": None, "finish_reason": c["finish_reason"],
                      "stop_reason": c["stop_reason"]}]
        for part in parts:
            yield "data: " + json.dumps({**head, "choices": [part]}) + "\n\n"
    yield "data: [DONE]\n\n"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"      # keep-alive: clients reuse their connection
    server_version = "mtpb-serve"

    @property
    def app(self) -> App:
        return self.server.app  # type: ignore[attr-defined]

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
        if path in ("/v1/completions", "/v1/chat/completions"):
            raise ApiError(405, f"{path} takes POST")
        raise ApiError(404, f"no route {path}: try /v1/completions, /v1/chat/completions, /v1/models",
                       kind="not_found_error")

    def _post(self):
        path = self.path.split("?")[0].rstrip("/")
        chat = path in ("/v1/chat/completions", "/chat/completions")
        if not chat and path not in ("/v1/completions", "/completions"):
            raise ApiError(404, f"no route {path}: try /v1/completions or /v1/chat/completions",
                           kind="not_found_error")
        try:
            body = json.loads(self._body)
        except ValueError:
            raise ApiError(400, "the request body is not valid JSON") from None
        if not isinstance(body, dict):
            raise ApiError(400, "the request body must be a JSON object")
        reply, sampling = self.app.complete(body, chat)
        if sampling.stream:
            return self._stream(stream_events(reply, chat))
        self._json(200, reply)

    def _handle(self, route):
        try:
            if self.command == "POST":    # read first, whatever the answer: the connection stays in step
                self._body = self._read_body()
            key = self.app.api_key
            if key is not None and self.headers.get("Authorization") != f"Bearer {key}":
                raise ApiError(401, "invalid or missing API key (Authorization: Bearer KEY)",
                               kind="authentication_error")
            route()
        except ApiError as e:
            self._json(e.status, {"error": {"message": e.message, "type": e.kind, "param": e.param,
                                            "code": e.status}})
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True          # the client went away: nothing to answer
        except Exception as e:                    # a bug or an engine failure: answer, log, keep serving
            print(f"mtpb serve: {type(e).__name__}: {e}", file=sys.stderr)
            self._json(500, {"error": {"message": f"{type(e).__name__}: {e}", "type": "server_error",
                                       "param": None, "code": 500}})

    def _read_body(self) -> bytes:
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            length = -1
        if not 0 <= length <= MAX_BODY:
            self.close_connection = True          # the unread body would be taken for the next request
            raise ApiError(413 if length > MAX_BODY else 400, f"need a Content-Length of at most {MAX_BODY} bytes")
        return self.rfile.read(length)

    def _json(self, status: int, payload: dict):
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _stream(self, events):
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Connection", "close")   # the end of the stream is the end of the connection
        self.end_headers()
        self.close_connection = True
        for event in events:
            self.wfile.write(event.encode())
        self.wfile.flush()

    def log_message(self, format, *args):         # quiet: a benchmark server answers thousands of calls
        pass


# ------------------------------------------------------------------------------------ the server
class HTTPServer(ThreadingHTTPServer):
    request_queue_size = 1024     # the default 5 resets connections when many clients connect at once
    daemon_threads = True


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
    from mtpb.engine.generate import GenerationRequest

    def run(jobs: list[Job], is_finished):
        # key=None: the engine's cache still finds shared prefixes (turns of one conversation) by content
        return engine.generate([GenerationRequest(prompt=j.prompt, max_new_tokens=j.max_tokens, seed=j.seed,
                                                  temperature=j.temperature, top_p=j.top_p) for j in jobs],
                               is_finished)
    return run


def start_server(model: str | None = None, host: str = "127.0.0.1", port: int = 8000, device: str | None = None,
                 dtype: str | None = None, batch_size: int = 16, max_length: int | None = None, top_k: int = 50,
                 served_model_name: str | None = None, api_key: str | None = None,
                 decode: str | None = None) -> Server:
    """Load the model, bind the address; call serve_forever() or start() on the result.
    A bad option or checkpoint raises mtpb.engine.load.EngineError."""
    from mtpb.engine.load import load_engine   # torch is imported here, not when the CLI starts
    checkpoint = str(model or tiny_checkpoint())
    engine = load_engine(checkpoint, device=device, dtype=dtype, batch_size=batch_size, max_length=max_length,
                         top_k=top_k, decode=decode)
    info = {"model": checkpoint, **engine.describe()}
    name = served_model_name or model or Path(checkpoint).name
    batcher = Batcher(engine_runner(engine), max_batch=batch_size)
    try:
        httpd = HTTPServer((host, port), Handler)
    except OSError:
        batcher.close()
        raise
    httpd.app = App(name, batcher, engine.max_length, api_key)  # type: ignore[attr-defined]
    return Server(httpd, httpd.app, info)  # type: ignore[attr-defined]


@click.command("serve")
@click.option("--model", default=None, help="CodeGen checkpoint folder or hub id (default: the bundled tiny one).")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535), help="0 picks a free port.")
@click.option("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda when available).")
@click.option("--dtype", default=None, type=click.Choice(["fp32", "fp16", "bf16"]),
              help="Default: fp16 on cuda, fp32 on cpu.")
@click.option("--batch-size", default=16, show_default=True, type=click.IntRange(1),
              help="Most sequences in one engine call.")
@click.option("--max-length", default=None, type=click.IntRange(2), help="Context + generation tokens (default: the model's).")
@click.option("--top-k", default=50, show_default=True, type=click.IntRange(0), help="Top-k when sampling (0: off).")
@click.option("--decode", default=None, type=click.Choice(["graphs", "eager"]),
              help="Decode step: CUDA graphs (default on cuda) or eager (default elsewhere).")
@click.option("--served-model-name", default=None, help="The model id clients send (default: the --model value).")
@click.option("--api-key", default=None, envvar="MTPB_SERVE_API_KEY",
              help="Require 'Authorization: Bearer KEY' (default: no key; also $MTPB_SERVE_API_KEY).")
def serve_command(model, host, port, device, dtype, batch_size, max_length, top_k, decode, served_model_name,
                  api_key):
    """Serve a CodeGen checkpoint over an OpenAI-compatible API (completions and chat)."""
    from mtpb.engine.load import EngineError
    try:
        server = start_server(model, host, port, device, dtype, batch_size, max_length, top_k,
                              served_model_name, api_key, decode)
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
