"""Helpers for tests that put candidates through the real sandbox: a code dir, corpora, runs."""

from __future__ import annotations

import importlib
import pickle
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil

from envelope.isolation import Isolation
from envelope.jail import Jail
from envelope.sandbox import Sandbox, SandboxLimits, ShadowJob
from invariants.compare import exception_message, exception_name
from invariants.report import ShadowReport, parse_child_report
from snapshots.corpus import CallRecord, Corpus, write_corpus

QUICK = SandboxLimits(cpu_seconds=20, memory_mb=512, wall_seconds=40)


def record_call(fn: Callable[..., Any], args: tuple[Any, ...],
                kwargs: dict[str, Any] | None = None) -> CallRecord:
    """Run ``fn`` on a copy of the arguments and record what it did, as the recorder would."""
    blob = pickle.dumps((args, kwargs or {}))
    call_args, call_kwargs = pickle.loads(blob)
    try:
        result = fn(*call_args, **call_kwargs)
    except Exception as exc:
        return CallRecord(blob, "raise", exc_type=exception_name(type(exc)),
                          exc_message=exception_message(exc),
                          args_after_blob=pickle.dumps((call_args, call_kwargs)))
    if hasattr(result, "__next__"):
        result = list(result)
    return CallRecord(blob, "return", pickle.dumps(result),
                      args_after_blob=pickle.dumps((call_args, call_kwargs)))


@dataclass
class Workspace:
    """A module of targets on disk, the corpora recorded from it, and a shadow tmp root."""

    root: Path
    module: str
    corpora: dict[str, Path] = field(default_factory=dict)

    @property
    def code(self) -> Path:
        return self.root / "code"

    def record(self, name: str, calls: Sequence[tuple[Any, ...]]) -> Path:
        """Record ``calls`` (argument tuples) of ``module.name`` into a corpus file."""
        sys.path.insert(0, str(self.code))
        try:
            module = importlib.import_module(self.module)
            fn = getattr(module, name)
            records = tuple(record_call(fn, args) for args in calls)
        finally:
            sys.path.remove(str(self.code))
            sys.modules.pop(self.module, None)
        path = self.root / f"{name}.pkl"
        write_corpus(path, Corpus(f"{self.module}:{name}", "base", records))
        self.corpora[name] = path
        return path

    def run(self, isolation: Isolation, name: str, source: str, *, examples: int = 0,
            repeats: int = 3, limits: SandboxLimits = QUICK, **job: Any) -> ShadowReport:
        """Put ``source`` as a candidate for ``module.name`` through the real sandbox."""
        sandbox = Sandbox(limits, isolation, tmp_root=self.root / "shadows")
        return sandbox.run(ShadowJob(f"{self.module}:{name}", source, str(self.corpora[name]),
                                     (str(self.code),), repeats=repeats,
                                     min_sample_seconds=0.002, examples=examples, **job))


def make_workspace(root: Path, module: str, source: str, files: dict[str, str] | None = None
                   ) -> Workspace:
    """Write ``source`` as ``code/<module>.py`` (and any other ``files``) below ``root``."""
    code = root / "code"
    code.mkdir()
    (code / f"{module}.py").write_text(source)
    for name, text in (files or {}).items():
        (code / name).write_text(text)
    (root / "shadows").mkdir()
    return Workspace(root, module)


def check_clean(root: Path) -> None:
    """No shadow tmp dir and no process mentioning ``root`` outlived the runs."""
    assert list((root / "shadows").iterdir()) == [], "a shadow's tmp dir was left behind"
    leftovers = [p.pid for p in psutil.process_iter(["cmdline"])
                 if str(root) in " ".join(p.info["cmdline"] or ())]
    assert leftovers == [], "a shadow process outlived its run"


def run_child(workspace: Workspace, isolation: Isolation, module: str, name: str, source: str,
              *, limits: SandboxLimits = QUICK, **job: Any) -> ShadowReport:
    """Run one child ``-m module`` for a candidate of ``name`` in the real jail, as the
    sandbox runs each of its children, and parse its report."""
    jail = Jail(limits, isolation, tmp_root=workspace.root / "shadows")
    nonce = "0" * 32
    with jail.workdir() as tmpdir:
        corpus = jail.give(tmpdir, workspace.corpora[name], "corpus")
        payload = ShadowJob(f"{workspace.module}:{name}", source, str(corpus),
                            (str(workspace.code),), **job).to_json(nonce)
        argv = limits.shadow().to_argv()
        captured = jail.run(
            lambda fd: ["-m", module, "--result-fd", str(fd), "--tmpdir", str(tmpdir),
                        "--mode", "full", *argv],
            tmpdir, payload=payload, read_paths=(str(workspace.code),))
    assert captured.returncode == 0, bytes(captured.stderr)[-2000:]
    return parse_child_report(bytes(captured.result), nonce=nonce,
                              max_bytes=limits.result_bytes)

