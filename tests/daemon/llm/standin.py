"""An OpenAI-compatible stand-in server that misbehaves on request.

A real vLLM answers correctly; the faults a client must survive (429, 500,
stalls, garbage, huge bodies) have to be staged. The stand-in plays a script
of :class:`Reply` values, one per request, on a loopback port in a thread, and
records every request it received. Use it as a context manager: leaving the
block shuts the server down and joins its threads.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any


@dataclass(frozen=True)
class Reply:
    """One scripted answer."""

    status: int = 200
    body: Any = None  # dict/list -> JSON, bytes -> as is, None -> empty
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before the status line
    drip: float = 0.0  # seconds between body bytes: a server that stalls mid-body
    length: bool = True  # send Content-Length; False streams until the connection closes

    def payload(self) -> bytes:
        if self.body is None:
            return b""
        if isinstance(self.body, bytes):
            return self.body
        return json.dumps(self.body).encode()


@dataclass(frozen=True)
class Seen:
    """A request the stand-in received."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any


def chat_body(*texts: str, prompt_tokens: int = 11, completion_tokens: int = 7,
              finish_reason: str = "stop") -> dict[str, Any]:
    """A well-formed chat completion with one choice per text."""
    return {
        "id": "chatcmpl-standin",
        "object": "chat.completion",
        "model": "stand-in",
        "choices": [{"index": i, "message": {"role": "assistant", "content": t},
                     "finish_reason": finish_reason} for i, t in enumerate(texts)],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
                  "total_tokens": prompt_tokens + completion_tokens},
    }


MODELS = {"object": "list", "data": [{"id": "stand-in", "object": "model"}]}


class StandIn:
    """Plays ``script`` (a list of replies, or a function of the request) on 127.0.0.1."""

    def __init__(self, script: Sequence[Reply] | Callable[[Seen], Reply]) -> None:
        self._script = script if callable(script) else list(script)
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        self._lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = False
        self._server.block_on_close = True
        self.url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, name="llm-standin",
                                        kwargs={"poll_interval": 0.05})

    def next_reply(self, seen: Seen) -> Reply:
        with self._lock:
            self.seen.append(seen)
            if callable(self._script):
                return self._script(seen)
            if not self._script:
                return Reply(500, {"error": "stand-in script exhausted"})
            return self._script.pop(0)

    def __enter__(self) -> StandIn:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stopping.set()
        self._server.shutdown()
        self._server.server_close()  # joins the request threads (block_on_close)
        self._thread.join(timeout=5)


def _handler_for(standin: StandIn) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, format: str, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            self._serve(None)

        def do_POST(self) -> None:
            size = int(self.headers.get("content-length") or 0)
            raw = self.rfile.read(size)
            try:
                body = json.loads(raw) if raw else None
            except ValueError:
                body = raw
            self._serve(body)

        def _serve(self, body: Any) -> None:
            reply = standin.next_reply(Seen(self.command, self.path, dict(self.headers), body))
            if reply.delay and standin.stopping.wait(reply.delay):
                return
            payload = reply.payload()
            # the client hangs up on purpose in several tests; that is not news here
            with contextlib.suppress(OSError):
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                if reply.length:
                    self.send_header("Content-Length", str(len(payload)))
                for key, value in reply.headers.items():
                    self.send_header(key, value)
                self.send_header("Connection", "close")
                self.end_headers()
                for chunk in _chunks(payload, reply.drip):
                    if reply.drip and standin.stopping.wait(reply.drip):
                        return
                    self.wfile.write(chunk)
                    self.wfile.flush()

    return Handler


def _chunks(payload: bytes, drip: float) -> Iterator[bytes]:
    if drip:
        yield from (payload[i:i + 1] for i in range(len(payload)))
    else:
        yield from (payload[i:i + 65536] for i in range(0, len(payload), 65536))
