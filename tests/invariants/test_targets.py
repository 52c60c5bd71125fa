"""Tests for invariants.targets: parsing, scope, resolution and in-place recompilation."""

import pytest

from invariants.targets import (
    Target,
    TargetError,
    compile_function,
    in_scope,
    is_protected,
    original_source,
    resolve,
)
from tests.daemon.fixtures import sample


def test_parse_rejects_malformed_targets():
    """A target without a module or qualname, or a nested function, is refused with a reason."""
    for bad in ("nomodule", ":f", "m:", "m:f.<locals>.g"):
        with pytest.raises(TargetError):
            Target.parse(bad)
    assert Target.parse("a.b:C.m") == Target("a.b", "C.m")


def test_daemon_packages_are_never_in_scope():
    """The daemon's own modules and the oracle are protected even when a glob matches all."""
    assert is_protected("daemon.cycle")
    assert is_protected("envelope.static")
    assert is_protected("selfmod_demo_oracle")
    assert not is_protected("demo.logstats")
    assert not in_scope("daemon.cycle:Cycle.run", ["*"])
    assert in_scope("demo.logstats:percentile", ["*"])
    assert not in_scope("demo.logstats:percentile", ["*"], ["*:percentile"])


def test_resolve_finds_methods_static_class_and_wrapped_functions():
    """Methods, static and class methods and functools.wraps wrappers resolve to plain functions."""
    base = "tests.daemon.fixtures.sample"
    assert resolve(Target.parse(f"{base}:Shape.area")) is sample.Shape.area
    assert resolve(Target.parse(f"{base}:Shape.unit")) is sample.Shape.__dict__["unit"].__func__
    assert resolve(Target.parse(f"{base}:wrapped")) is sample.wrapped.__wrapped__
    with pytest.raises(TargetError, match="not found"):
        resolve(Target.parse(f"{base}:missing"))
    with pytest.raises(TargetError, match="not a Python function"):
        resolve(Target.parse("os:getpid"))


def test_compile_function_replaces_code_and_keeps_defaults():
    """A compiled candidate runs in place with the original's defaults and keyword defaults."""
    func = sample.add
    original = func.__code__
    code = compile_function("def add(a, b=2, *, scale=1):\n    return a * b * scale\n", func,
                            filename="<test>")
    try:
        func.__code__ = code
        assert sample.add(3) == 6
        assert sample.add(3, scale=2) == 12
    finally:
        func.__code__ = original
    assert sample.add(3) == 5


def test_compile_function_keeps_closures_and_refuses_new_free_variables():
    """A closure's cells are reused when the free variables match; different ones are refused."""
    func = sample.bump
    original = func.__code__
    code = compile_function("def bump(x):\n    return step + x + 0\n", func, filename="<t>")
    try:
        func.__code__ = code
        assert sample.bump(1) == 4
    finally:
        func.__code__ = original
    with pytest.raises(TargetError, match="closes over"):
        compile_function("def bump(x):\n    return x\n", func, filename="<t>")


def test_original_source_includes_decorators():
    """The original source of a decorated method keeps its decorator and is dedented."""
    source = original_source(sample.Shape.__dict__["unit"].__func__)
    assert source.startswith("@staticmethod\ndef unit():")


def test_original_source_is_what_inspect_reads_for_functions_methods_and_code():
    """Read through linecache, the source is the text inspect.getsource gives, for plain,
    decorated and nested functions, methods and bare code objects (the swap's case)."""
    import inspect
    import textwrap

    from demo import logstats

    functions = [sample.add, sample.wrapped.__wrapped__, sample.make_counter,
                 sample.Shape.area, sample.Shape.__dict__["unit"].__func__,
                 sample.Shape.__dict__["named"].__func__, logstats.dedupe_sessions,
                 logstats.render_report, sample.make_counter()]
    for func in functions:
        expected = textwrap.dedent(inspect.getsource(func))
        assert original_source(func) == expected, func
        assert original_source(func.__code__, func.__globals__) == expected, func


def test_original_source_of_code_from_no_file_is_a_target_error():
    """Code compiled from a string has no file to read: a TargetError naming it."""
    namespace: dict[str, object] = {}
    exec(compile("def ghost():\n    return 1\n", "<nowhere>", "exec"), namespace)
    with pytest.raises(TargetError, match="no source for ghost"):
        original_source(namespace["ghost"])  # type: ignore[arg-type]
