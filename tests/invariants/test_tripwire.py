"""The tripwire's policy: which audit events untrusted code may raise in the shadow."""

from __future__ import annotations

import os

import pytest

from invariants.tripwire import ForbiddenOperation, Tripwire, classify

TMP = "/tmp/selfmod-shadow-x"
CODE = ("/srv/app", "/usr/lib/python3.11")


def verdict(event: str, *args: object) -> str | None:
    return classify(event, args, tmpdir=TMP, read_roots=CODE)


@pytest.mark.parametrize(("event", "args"), [
    ("subprocess.Popen", ("sh", ["sh"], None, None)), ("os.system", (b"id",)),
    ("os.fork", ()), ("os.exec", ("/bin/sh", ["sh"], None)), ("os.kill", (1, 9)),
    ("socket.connect", (None, ("127.0.0.1", 80))), ("socket.__new__", (None, 2, 1, 0)),
    ("ctypes.dlopen", ("libc.so.6",)), ("sys._getframe", (None,)),
    ("object.__getattr__", (None, "tb_frame")), ("gc.get_objects", (None,)),
    ("sys.settrace", (None,)), ("builtins.input", ("?",)), ("os.putenv", ("A", "B")),
])
def test_process_network_and_introspection_events_are_forbidden(event: str,
                                                                  args: tuple[object, ...]
                                                                  ) -> None:
    """Spawning, signalling, networking, ctypes and frame access are always forbidden."""
    assert verdict(event, *args) is not None


def test_writes_are_allowed_only_inside_the_private_tmp_dir() -> None:
    """Opening for writing (by mode or flags) outside the tmp dir is forbidden, inside it is not."""
    assert verdict("open", f"{TMP}/scratch", "w", os.O_WRONLY | os.O_CREAT) is None
    assert verdict("open", "/etc/passwd", "a", os.O_WRONLY | os.O_APPEND) is not None
    assert verdict("open", "/srv/app/mod.py", None, os.O_RDWR) is not None
    assert verdict("open", f"{TMP}/../escape", "w", os.O_WRONLY) is not None
    assert verdict("open", 5, "wb", os.O_WRONLY) is not None
    assert verdict("os.remove", "/srv/app/mod.py", -1) is not None
    assert verdict("os.rename", f"{TMP}/a", "/srv/app/b", -1, -1) is not None
    assert verdict("os.rename", f"{TMP}/a", f"{TMP}/b", -1, -1) is None


def test_reads_are_allowed_from_code_and_tmp_only() -> None:
    """Reading code is fine; reading secrets elsewhere is forbidden."""
    assert verdict("open", "/usr/lib/python3.11/json/__init__.py", "r", 0) is None
    assert verdict("open", "/dev/null", "r", 0) is None
    assert verdict("open", "/root/.ssh/id_rsa", "r", 0) is not None
    assert verdict("open", "/proc/self/environ", "rb", 0) is not None
    assert verdict("os.listdir", "/root") is not None


def test_imports_of_dangerous_modules_are_forbidden() -> None:
    """Importing ctypes, subprocess, socket (or a submodule) trips; json does not."""
    assert verdict("import", "ctypes", None, [], [], []) is not None
    assert verdict("import", "multiprocessing.pool", None, [], [], []) is not None
    assert verdict("import", "json", None, [], [], []) is None


def test_runtime_code_execution_is_forbidden_but_imports_of_files_are_not() -> None:
    """exec/compile of a string trips; executing a module file from the code roots does not."""
    module_code = compile("x = 1", "/usr/lib/python3.11/fake.py", "exec")
    assert verdict("exec", module_code) is None
    assert verdict("exec", compile("x = 1", "<string>", "exec")) is not None
    assert verdict("compile", b"x = 1", "<string>") is not None
    assert verdict("compile", b"x = 1", "/srv/app/mod.py") is None


def test_harmless_events_pass() -> None:
    """Events that are not on any list pass untouched."""
    assert verdict("os.chdir_but_not_really") is None
    assert verdict("time.sleep", 0.1) is None


def test_an_armed_tripwire_raises_in_context_and_records_evidence() -> None:
    """Armed, the hook raises ForbiddenOperation and records the event with its context."""
    tripwire = Tripwire(TMP, CODE)
    tripwire._hook("os.system", (b"id",))  # not armed: ignored
    assert tripwire.sightings == []
    tripwire.arm()
    with tripwire.context("candidate"), pytest.raises(ForbiddenOperation):
        tripwire._hook("os.system", (b"id",))
    with tripwire.disarmed():
        tripwire._hook("os.system", (b"id",))
    tripwire._hook("pickle.find_class", ("mod", "Cls"))  # the harness unpickling arguments
    assert [(s.event, s.context) for s in tripwire.sightings] == [("os.system", "candidate")]
    with tripwire.context("original"), pytest.raises(ForbiddenOperation):
        tripwire._hook("pickle.find_class", ("os", "system"))
