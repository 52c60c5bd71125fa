"""A response guard under the SDK: a cap on body size and a total deadline per attempt.

Hand-written because neither the ``openai`` SDK nor httpx has either limit.
The SDK reads a whole body into memory, whatever its size, before it looks at
it, error bodies included; httpx's timeouts are per operation (connect, each
read), so a server sending one byte a second never trips them and could hold
a cycle forever. As the transport of the SDK's httpx client, the guard sees
every response the SDK asks for, counts the bytes as they arrive and stops
reading at the cap or the deadline, raising our own errors, which the SDK
lets through untouched.

Bytes are counted on the wire, so the client asks for uncompressed bodies and
the guard refuses a compressed one: what it would inflate to is not bounded.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import cast

import httpx

from daemon.synthesis.llm.errors import LLMBadResponse, LLMTimeout


class GuardedTransport(httpx.BaseTransport):
    """Wraps a transport so that no response is longer than ``cap`` bytes or slower than
    ``total_timeout`` seconds from request to last byte."""

    def __init__(self, inner: httpx.BaseTransport, cap: int, total_timeout: float,
                 clock: Callable[[], float]) -> None:
        self._inner = inner
        self._cap = cap
        self._total_timeout = total_timeout
        self._clock = clock

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        started = self._clock()
        response = self._inner.handle_request(request)
        declared = response.headers.get("content-length", "")
        encoding = response.headers.get("content-encoding", "identity").strip().lower()
        if declared.isdigit() and int(declared) > self._cap:
            response.close()
            raise LLMBadResponse(f"response of {declared} bytes is over the {self._cap}-byte cap")
        if encoding != "identity":
            response.close()
            raise LLMBadResponse(f"response compressed with {encoding!r} though we asked for "
                                 "none; its size after inflating cannot be capped")
        response.stream = _GuardedStream(cast(httpx.SyncByteStream, response.stream), self._cap,
                                         started + self._total_timeout, self._total_timeout,
                                         self._clock)
        return response

    def close(self) -> None:
        self._inner.close()


class _GuardedStream(httpx.SyncByteStream):
    """A response body that stops at the size cap or the attempt's deadline."""

    def __init__(self, inner: httpx.SyncByteStream, cap: int, deadline: float,
                 total_timeout: float, clock: Callable[[], float]) -> None:
        self._inner = inner
        self._cap = cap
        self._deadline = deadline
        self._total_timeout = total_timeout
        self._clock = clock

    def __iter__(self) -> Iterator[bytes]:
        seen = 0
        for chunk in self._inner:
            seen += len(chunk)
            if seen > self._cap:
                raise LLMBadResponse(f"response body passed the {self._cap}-byte cap; "
                                     "not read further")
            if self._clock() > self._deadline:
                raise LLMTimeout(f"response still arriving after {self._total_timeout} s")
            yield chunk

    def close(self) -> None:
        self._inner.close()
