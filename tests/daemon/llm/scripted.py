"""A scripted OpenAI-compatible model: reads the target from the prompt, answers from a script.

Random-weight vLLM proves the protocol but never proposes anything worth
accepting; this plays the part of a model that does. It reads the prompt the
way a model would (the ``Target: module:qualname`` line of the user message,
and how many ``Rejection N:`` blocks of feedback it carries), picks the step of
the target's script that matches the number of rejections so far, and answers
with that step's candidates, one per choice, in the structured-output format
the request asked for (a JSON object of the schema), or as a fenced code block
when the request asked for none. It records every request, so a test can check
what the model was told.

A step can insist on evidence: when ``needs`` is set, the step is served only
if every needed string appears in the request's feedback; otherwise the model
repeats its previous answer, exactly as a model that was not told what went
wrong would.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from tests.daemon.llm.standin import MODELS, Reply, Seen, chat_body

TARGET_LINE = re.compile(r"^Target: (?P<target>[\w.]+:[\w.]+) ", re.M)
REJECTION = re.compile(r"^Rejection \d+:$", re.M)
DATA_BLOCK = re.compile(
    r"<<<BEGIN DATA (?P<id>[0-9a-f]+)>>>\n(?P<body>.*?)\n<<<END DATA (?P=id)>>>", re.S)


@dataclass(frozen=True)
class Step:
    """What the model answers after ``len(previous rejections)`` tries of a target."""

    choices: tuple[str, ...]  # function sources, one per choice (cycled to the request's n)
    needs: tuple[str, ...] = ()  # strings the feedback must carry for this step to be served
    rationale: str = "one pass instead of a quadratic scan"


@dataclass
class Request:
    """One chat request as the model saw it."""

    target: str
    rejections: int
    user: str
    body: dict[str, Any]
    served: int  # the index of the step answered

    def feedback_blocks(self) -> list[str]:
        """The bodies of the data blocks that follow a ``Rejection N:`` line."""
        blocks = []
        for match in REJECTION.finditer(self.user):
            block = DATA_BLOCK.search(self.user, match.end())
            if block is not None:
                blocks.append(block.group("body"))
        return blocks


@dataclass
class ScriptedModel:
    """A model named ``name`` that answers targets (by function name) from ``script``."""

    script: Mapping[str, Sequence[Step]]
    name: str = "scripted-coder"
    max_model_len: int = 8192
    requests: list[Request] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __call__(self, seen: Seen) -> Reply:
        if seen.method == "GET" and seen.path.rstrip("/").endswith("/models"):
            return Reply(200, {"object": "list", "data": [
                {"id": self.name, "object": "model", "max_model_len": self.max_model_len}]})
        if seen.method == "GET":
            return Reply(200, MODELS if seen.path.endswith("models") else {})
        body = seen.body if isinstance(seen.body, dict) else {}
        user = next((m.get("content", "") for m in reversed(body.get("messages", []))
                     if m.get("role") == "user"), "")
        found = TARGET_LINE.search(user)
        if found is None:  # not an optimisation request (a probe): a compliant short answer
            answer = json.dumps({"ok": True}) if self._structured(body) else "ok"
            return Reply(200, chat_body(answer))
        target = found.group("target")
        steps = self.script.get(target.rpartition(":")[2].rpartition(".")[2], ())
        if not steps:
            return Reply(200, chat_body(*self._answers(body, ["I have no faster version."])))
        rejections = len(REJECTION.findall(user))
        served = self._step(steps, rejections, user)
        with self._lock:
            self.requests.append(Request(target, rejections, user, body, served))
        step = steps[served]
        n = int(body.get("n") or 1)
        sources = [step.choices[i % len(step.choices)] for i in range(n)]
        texts = self._answers(body, sources, step.rationale)
        return Reply(200, chat_body(*texts, prompt_tokens=len(user) // 4 + 200,
                                    completion_tokens=sum(len(t) for t in texts) // 4))

    @staticmethod
    def _step(steps: Sequence[Step], rejections: int, user: str) -> int:
        """The step for this many rejections, falling back while its evidence is missing."""
        index = min(rejections, len(steps) - 1)
        while index > 0 and not all(needed in user for needed in steps[index].needs):
            index -= 1
        return index

    @staticmethod
    def _structured(body: Mapping[str, Any]) -> bool:
        return (body.get("response_format") or {}).get("type") in ("json_schema", "json_object")

    @classmethod
    def _answers(cls, body: Mapping[str, Any], sources: Sequence[str],
                 rationale: str = "") -> list[str]:
        if cls._structured(body):
            return [json.dumps({"code": source, "rationale": rationale}) for source in sources]
        return [f"```python\n{source}\n```" for source in sources]

    def for_target(self, function: str) -> list[Request]:
        """The requests that asked about ``function`` (by its name), in order."""
        with self._lock:
            return [r for r in self.requests if r.target.rpartition(":")[2] == function]
