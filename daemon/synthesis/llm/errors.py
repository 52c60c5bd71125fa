"""The errors of the model proposer path, in one tree.

```
LLMError                   anything that went wrong talking to the model or using its answer
├── LLMConfigError         the operator's settings are unusable (API key file missing, bad URL)
├── LLMUnavailable         no answer: connection refused, 5xx or 429 after retries, breaker open
│   ├── LLMServerBusy      the server answered 429 or 5xx (with its Retry-After, if any)
│   └── LLMCircuitOpen     the breaker is open; no request was sent
├── LLMTimeout             the server accepted the request but did not answer in time
├── LLMRequestRejected     a 4xx other than 429: retrying the same request cannot help
├── LLMBadResponse         an answer we refuse: not JSON, the wrong shape, over the size cap
└── ApplyError             a parsed function cannot be put back into its module
```

The ``openai`` SDK's and httpx's exceptions never cross the client's
boundary: they are translated into these with ``raise ... from exc``, so
callers catch one tree and the original cause stays on ``__cause__`` for the
logs (for a connection failure or a timeout, httpx's own error, which says
more than the SDK's wrapper around it). Messages never contain the API key or
request headers.
"""

from __future__ import annotations


class LLMError(Exception):
    """Base class: the model path failed; the daemon records it and carries on."""


class LLMConfigError(LLMError):
    """The client's configuration cannot work; the message says which setting to change."""


class LLMUnavailable(LLMError):
    """The model server could not be reached or kept failing after retries."""


class LLMServerBusy(LLMUnavailable):
    """The server answered 429 or a 5xx: it is there, but could not serve the request now."""

    def __init__(self, message: str, status_code: int, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.status_code = status_code
        self.retry_after = retry_after  # seconds the server asked us to wait, if it did


class LLMCircuitOpen(LLMUnavailable):
    """The circuit breaker is open after repeated failures; the request was not sent."""


class LLMTimeout(LLMError):
    """The model server took longer than the configured timeout."""


class LLMRequestRejected(LLMError):
    """The server refused the request itself (a 4xx other than 429)."""

    def __init__(self, message: str, status_code: int) -> None:
        super().__init__(message)
        self.status_code = status_code


class LLMBadResponse(LLMError):
    """The server answered, but with a body we cannot use."""


class ApplyError(LLMError):
    """A function source could not replace its target in the module text."""
