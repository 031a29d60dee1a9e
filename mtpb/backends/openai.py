"""`openai` backend: any OpenAI-compatible server (vLLM, TGI, llama.cpp, SGLang, hosted APIs, `mtpb serve`).

    mtpb run --backend openai --model SERVED_NAME -B base_url=http://127.0.0.1:8000/v1
             [-B api_key_env=OPENAI_API_KEY] [-B max_concurrency=8] [-B timeout=120]
             [-B max_retries=6] [-B backoff=1] [-B max_stops=4] [-B system_prompt=...]

Modes multi and single call /completions with the context as the prompt; mode chat calls
/chat/completions with SYSTEM_PROMPT and the conversation (the runner takes the code from the
reply's fenced block). Stdlib only (http.client + threads): no extra package to install, and the
retry policy is ours to state:
- 429, 408, 409, 425, 5xx, timeouts, dropped or refused connections and malformed JSON are
  retried with exponential backoff (backoff * 2^attempt seconds, jittered, at most 60 s), or
  after the server's Retry-After when it sends one; max_retries retries, then a BackendError;
- 401, 403, 404 and other 4xx stop the run at once with what to check (key, base_url, model).
"""
from __future__ import annotations

import email.utils
import http.client
import json
import os
import random
import socket
import threading
import time
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from urllib.parse import urlsplit

from mtpb import __version__
from mtpb.backends.base import BackendError, Request, SamplingParams, parse_number

SYSTEM_PROMPT = (
    "You are writing a Python program step by step. Each user message asks for the next step. "
    "Reply with only the Python code for that step, in one ```python fenced block, without explanations. "
    "The blocks of all steps are concatenated in order after `import numpy as np` and run as one program, "
    "so reuse the variables and functions of earlier steps, do not repeat earlier code, and print only "
    "what a step asks you to print."
)
# Which stop strings to send when a server takes only a few (the OpenAI API: 4). "\n#" is how a base
# model usually ends a turn (the next comment), "\n\n\n" the blank-line end, docstrings come next;
# "<|endoftext|>" goes first since servers stop at the model's end-of-text token by themselves.
# Whatever is not sent, truncation catches afterwards (at the cost of longer generations).
STOP_PRIORITY = ("\n#", "\n\n\n", '\n"""', "\n'''", "<|endoftext|>")
RETRY_STATUS = {408, 409, 425, 429}
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 600.0   # a server asking for longer is out of quota: say so instead of waiting


def choose_stops(stop: tuple[str, ...], limit: int) -> tuple[str, ...]:
    rank = {s: i for i, s in enumerate(STOP_PRIORITY)}
    return tuple(sorted(dict.fromkeys(stop), key=lambda s: rank.get(s, len(rank))))[:limit]


def retry_after(headers) -> float | None:
    """Seconds the server asks us to wait: retry-after-ms, or Retry-After in seconds or as a date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(float(ms) / 1000, 0.0)
        except ValueError:
            pass
    value = headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(float(value), 0.0)
    except ValueError:
        try:
            return max(email.utils.parsedate_to_datetime(value).timestamp() - time.time(), 0.0)
        except (TypeError, ValueError):
            return None


class _Aborted(Exception):
    """Another request of the same call failed for good: stop retrying this one."""


class _Malformed(Exception):
    pass


class OpenAIBackend:
    def __init__(self, model: str | None = None, base_url: str | None = None, api_key_env: str = "OPENAI_API_KEY",
                 max_concurrency: str | int = 8, timeout: str | float = 120, max_retries: str | int = 6,
                 backoff: str | float = 1.0, max_stops: str | int = 4, system_prompt: str | None = None):
        if not model:
            raise BackendError("openai: give --model, the model name the server serves "
                               "(GET BASE_URL/models lists them)")
        self.model = str(model)
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1").rstrip("/")
        url = urlsplit(self.base_url)
        if url.scheme not in ("http", "https") or not url.hostname:
            raise BackendError(f"-B base_url={self.base_url}: expected http(s)://HOST[:PORT]/v1")
        self._https, self._host, self._path = url.scheme == "https", url.hostname, url.path.rstrip("/")
        self._port = url.port
        self.api_key_env = api_key_env
        self._key = os.environ.get(api_key_env) if api_key_env else None
        self.max_concurrency = parse_number(max_concurrency, "max_concurrency", int, 1)
        self.timeout = parse_number(timeout, "timeout", float, 0.001)
        self.max_retries = parse_number(max_retries, "max_retries", int, 0)
        self.backoff = parse_number(backoff, "backoff", float, 0)
        self.max_stops = parse_number(max_stops, "max_stops", int, 0)
        self.system_prompt = SYSTEM_PROMPT if system_prompt is None else system_prompt
        # One batch keeps the pool busy without holding more unsaved work than it can run at once.
        self.preferred_batch_size = self.max_concurrency
        self._local = threading.local()        # one keep-alive connection per worker thread
        self._pool: ThreadPoolExecutor | None = None
        self._connected = False                # refused before any success: a wrong address, not a hiccup

    # ------------------------------------------------------------------ protocol
    def generate(self, requests: list[Request], params: SamplingParams) -> list[str]:
        if not requests:
            return []
        chat = params.mode == "chat"
        stops = () if chat else choose_stops(params.stop, self.max_stops)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.max_concurrency, thread_name_prefix="mtpb-openai")
        abort = threading.Event()
        futures = [self._pool.submit(self._complete, self._body(r, params, chat, stops), chat, stops, r, abort)
                   for r in requests]
        try:
            done, _ = wait(futures, return_when=FIRST_EXCEPTION)
            if any(f.exception() is not None for f in done):
                abort.set()
            wait(futures)
        except BaseException:   # Ctrl-C: let the workers stop at their next attempt or wait
            abort.set()
            raise
        errors = [f.exception() for f in futures if f.exception() is not None]
        real = [e for e in errors if not isinstance(e, _Aborted)]
        if real:
            raise real[0]
        return [f.result() for f in futures]

    def describe(self) -> dict:
        return {"model": self.model, "parameters": None, "backend": "openai", "base_url": self.base_url,
                "max_concurrency": self.max_concurrency, "max_stops": self.max_stops,
                "system_prompt": self.system_prompt}

    # ------------------------------------------------------------------ one request
    def _body(self, r: Request, params: SamplingParams, chat: bool, stops: tuple[str, ...]) -> dict:
        body = {"model": self.model, "max_tokens": r.max_tokens, "temperature": params.temperature,
                "top_p": params.top_p, "seed": r.seed}
        if chat:
            system = [{"role": "system", "content": self.system_prompt}] if self.system_prompt else []
            body["messages"] = system + [dict(m) for m in r.messages]
        else:
            body["prompt"] = r.context
            if stops:
                body["stop"] = list(stops)
        return body

    def _complete(self, body: dict, chat: bool, stops: tuple[str, ...], r: Request, abort: threading.Event) -> str:
        path = self._path + ("/chat/completions" if chat else "/completions")
        where = f"problem {r.problem_id} test {r.test_index} sample {r.sample_index} turn {r.turn_index}"
        payload = json.dumps(body).encode()
        last = ""
        for attempt in range(self.max_retries + 1):
            if abort.is_set():
                raise _Aborted()
            wait_s = None
            try:
                status, headers, data = self._post(path, payload)
            except socket.gaierror as e:
                raise BackendError(f"openai: cannot resolve {self._host} ({e}): check -B base_url") from None
            except ConnectionRefusedError:
                if not self._connected:
                    raise BackendError(f"openai: nothing answers at {self.base_url} (connection refused): "
                                       "is the server running? check -B base_url") from None
                last = "connection refused"
            except (OSError, http.client.HTTPException) as e:   # timeouts, resets, dropped connections
                last = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                self._connected = True
                if status == 200:
                    try:
                        return self._text(data, chat, stops)
                    except _Malformed as e:
                        last = f"malformed reply ({e}): {data[:200]!r}"
                elif status in RETRY_STATUS or status >= 500:
                    last = f"HTTP {status}: {_message(data)}"
                    wait_s = retry_after(headers)
                    if wait_s is not None and wait_s > MAX_RETRY_AFTER:
                        raise BackendError(f"openai: {self.base_url} asks to wait {wait_s:.0f} s (HTTP {status}: "
                                           f"{_message(data)}): out of quota? try again later")
                else:
                    raise BackendError(self._refusal(status, data, where))
            if attempt == self.max_retries:
                break
            if wait_s is None:
                wait_s = min(self.backoff * 2 ** attempt, MAX_BACKOFF) * random.uniform(0.5, 1.0)
            if abort.wait(wait_s):
                raise _Aborted()
        raise BackendError(f"openai: {where}: gave up after {self.max_retries + 1} attempts at {self.base_url}; "
                           f"last error: {last}")

    def _refusal(self, status: int, data: bytes, where: str) -> str:
        said = _message(data)
        if status in (401, 403):
            key = (f"${self.api_key_env} is not set, so no key was sent" if not self._key
                   else f"the key in ${self.api_key_env} was refused")
            return (f"openai: {self.base_url} answered HTTP {status} ({said}): {key}. Check the API key "
                    f"(-B api_key_env=NAME names the variable that holds it) and -B base_url")
        if status == 404:
            return (f"openai: {self.base_url} answered HTTP 404 ({said}): check -B base_url (it usually ends "
                    f"in /v1) and --model {self.model} (the served model name: GET {self.base_url}/models)")
        return f"openai: {where}: HTTP {status} ({said}): the server refused the request"

    def _post(self, path: str, payload: bytes) -> tuple[int, http.client.HTTPMessage, bytes]:
        headers = {"Content-Type": "application/json", "Accept": "application/json",
                   "User-Agent": f"mtpb/{__version__}"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        conn = getattr(self._local, "conn", None)
        if conn is not None:
            try:
                return self._exchange(conn, path, payload, headers)
            except (http.client.RemoteDisconnected, BrokenPipeError, ConnectionResetError):
                pass    # the server closed our idle keep-alive connection: a fresh one, no backoff
        cls = http.client.HTTPSConnection if self._https else http.client.HTTPConnection
        conn = self._local.conn = cls(self._host, self._port, timeout=self.timeout)
        return self._exchange(conn, path, payload, headers)

    def _exchange(self, conn, path: str, payload: bytes, headers: dict):
        try:
            conn.request("POST", path, body=payload, headers=headers)
            response = conn.getresponse()
            data = response.read()
        except BaseException:
            conn.close()                # a half-read connection must never carry the next request
            self._local.conn = None
            raise
        if response.will_close:
            conn.close()
        return response.status, response.headers, data

    @staticmethod
    def _text(data: bytes, chat: bool, stops: tuple[str, ...]) -> str:
        try:
            choice = min(json.loads(data)["choices"], key=lambda c: c.get("index", 0))
            if chat:
                text = choice["message"].get("content") or ""
            else:
                text = choice["text"]
        except (ValueError, KeyError, TypeError, AttributeError) as e:
            raise _Malformed(f"{type(e).__name__}: {e}") from None
        if not isinstance(text, str):
            raise _Malformed("the text is not a string")
        # Servers cut the stop string off; put back the one they report (vLLM's stop_reason, SGLang's
        # matched_stop) so truncation sees what the model wrote: "\n#" ends a turn AFTER its newline.
        matched = choice.get("stop_reason", choice.get("matched_stop"))
        if not chat and choice.get("finish_reason") == "stop" and isinstance(matched, str) and matched in stops:
            text += matched
        return text


def _message(data: bytes) -> str:
    """The server's own error message, whatever shape it comes in."""
    try:
        payload = json.loads(data)
        error = payload.get("error", payload) if isinstance(payload, dict) else payload
        message = error.get("message") if isinstance(error, dict) else error
        return str(message or payload)[:300]
    except (ValueError, AttributeError):
        return data[:300].decode("utf-8", "replace").strip() or "no body"
