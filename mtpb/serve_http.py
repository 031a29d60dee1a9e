"""The HTTP side of `mtpb serve` that a careless or hostile client cannot wear down.

- at most `max_connections` connections are served at once (one thread each); at the cap a new one
  takes the place of the connection that has waited longest to send its request (idle or slow),
  and only when every connection has a request running does it get `503`: threads stay bounded;
- reading a request (the idle wait on a kept-alive connection, the request line, the headers, the
  body) has one deadline, `request_timeout` seconds from when the wait began: a reaper thread shuts
  down the socket of a connection past it, so a client dribbling a byte at a time is cut off too;
- bodies are JSON with finite numbers and bounded nesting, else a 400 that says why.
"""
from __future__ import annotations

import ctypes
import json
import math
import select
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import ThreadingHTTPServer


@dataclass(frozen=True)
class Limits:
    """What one request or connection may take; every refusal names the limit it hit."""
    max_sequences: int = 128           # prompts x n per request
    max_request_tokens: int = 262_144  # sum over its sequences of prompt tokens + max_tokens
    max_body: int = 8 << 20            # bytes; larger bodies get 413 (read and dropped, up to max_drain)
    max_drain: int = 128 << 20         # past this an oversized body is not read: the connection closes
    max_connections: int = 64          # open connections (= handler threads); past it 503
    request_timeout: float = 30.0      # seconds to send a whole request, idle keep-alive wait included


class ApiError(Exception):
    def __init__(self, status: int, message: str, param: str | None = None, kind: str = "invalid_request_error"):
        super().__init__(message)
        self.status, self.message, self.param, self.kind = status, message, param, kind


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ApiError(400, f"the number {text[:32]} is out of range (finite numbers only)")
    return value


def _no_constant(name: str):
    raise ApiError(400, f"{name} is not a number JSON allows")


def parse_json(data: bytes):
    """The request body as Python values; a 400 for bad JSON, NaN/Infinity, overflow or deep nesting."""
    try:
        return json.loads(data, parse_float=_finite, parse_constant=_no_constant)
    except RecursionError:
        raise ApiError(400, "the request body nests too deeply") from None
    except ValueError as e:   # bad JSON, bad UTF-8, an integer past Python's digit limit
        raise ApiError(400, f"the request body is not valid JSON: {str(e)[:200]}") from None


def client_gone(sock: socket.socket) -> bool | None:
    """True when the peer closed or reset; False when nothing is to be read; None when it sent
    more (a pipelined request): then this cannot tell, and the caller stops asking."""
    try:
        if not select.select([sock], [], [], 0)[0]:
            return False
        return sock.recv(1, socket.MSG_PEEK) == b"" or None
    except (OSError, ValueError):
        return True


def release_memory() -> None:
    """Give freed heap back to the system after a large request (glibc keeps it otherwise)."""
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


_REFUSED = (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nRetry-After: 1\r\n"
            b"Connection: close\r\nContent-Length: %d\r\n\r\n%s")


class HTTPServer(ThreadingHTTPServer):
    request_queue_size = 1024     # the default 5 resets connections when many clients connect at once
    daemon_threads = True

    def __init__(self, address, handler, limits: Limits):
        super().__init__(address, handler)
        self.limits = limits
        self._slots = threading.BoundedSemaphore(limits.max_connections)
        self._deadlines: dict[socket.socket, float] = {}
        self._deadline_lock = threading.Lock()
        self._stopped = threading.Event()
        self.open_connections = 0
        threading.Thread(target=self._reap, name="mtpb-reaper", daemon=True).start()

    # ---- the connection cap
    def process_request(self, request, client_address):
        if not self._slots.acquire(blocking=False) and not self._evict_and_acquire():
            body = json.dumps({"error": {"message": f"too many open connections (the limit is "
                                         f"{self.limits.max_connections}): retry later", "type": "server_error",
                                         "param": None, "code": 503}}).encode()
            try:
                request.settimeout(1)
                request.sendall(_REFUSED % (len(body), body))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        with self._deadline_lock:
            self.open_connections += 1
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.clear_deadline(request)
            self._release()

    def _evict_and_acquire(self) -> bool:
        """At the cap: close the connection that has waited longest to send a request (idle or slow;
        never one whose request is running), so trickling clients cannot lock others out."""
        with self._deadline_lock:
            oldest = min(self._deadlines, key=self._deadlines.__getitem__, default=None)
            if oldest is not None:
                del self._deadlines[oldest]
        if oldest is not None:
            try:
                oldest.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        return self._slots.acquire(timeout=1.0)

    def _release(self):
        with self._deadline_lock:
            self.open_connections -= 1
        self._slots.release()

    # ---- the read deadline
    def set_deadline(self, sock: socket.socket) -> None:
        with self._deadline_lock:
            self._deadlines[sock] = time.monotonic() + self.limits.request_timeout

    def clear_deadline(self, sock: socket.socket) -> None:
        with self._deadline_lock:
            self._deadlines.pop(sock, None)

    def _reap(self) -> None:
        tick = min(max(self.limits.request_timeout / 4, 0.05), 1.0)
        while not self._stopped.wait(tick):
            now = time.monotonic()
            with self._deadline_lock:
                late = [s for s, t in self._deadlines.items() if t < now]
                for s in late:
                    del self._deadlines[s]
            for s in late:
                try:
                    s.shutdown(socket.SHUT_RDWR)   # wakes the handler thread blocked in recv
                except OSError:
                    pass

    def handle_error(self, request, client_address):
        if isinstance(sys.exc_info()[1], OSError):   # a connection that broke: routine, not a bug
            return
        super().handle_error(request, client_address)

    def server_close(self):
        self._stopped.set()
        super().server_close()
