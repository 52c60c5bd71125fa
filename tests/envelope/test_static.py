"""Tests of envelope/static.py: the deny-by-default gate, one candidate per row."""

from __future__ import annotations

import builtins
import importlib
import textwrap
import types

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from envelope.policy import StaticPolicy
from envelope.static import (
    FORBIDDEN_BUILTINS,
    FORBIDDEN_MODULES,
    Allowed,
    Rejected,
    check_candidate,
)

POLICY = StaticPolicy()

TOTAL = """\
def total(items, scale=1):
    result = 0
    for item in items:
        result = result + item * scale
    return result
"""

DECORATED = """\
@functools.lru_cache(maxsize=128)
def fib(n):
    if n < 2:
        return n
    return fib(n - 1) + fib(n - 2)
"""

METHOD = """\
def add(self, item, *, count=1):
    for _ in range(count):
        self.items.append(item)
    self.size = len(self.items)
"""

PARSE = """\
def parse(input, sep=","):
    fields = []
    for part in input.split(sep):
        fields.append(part.strip())
    return fields
"""

COUNTER = """\
def bump(key):
    global CALLS
    CALLS += 1
    SEEN[key] = True
    return CALLS
"""

GENERATOR = """\
def pairs(items):
    for i in range(len(items) - 1):
        yield items[i], items[i + 1]
"""


TOKENIZE = """\
def tokenize(text):
    words = []
    for word in text.split(" "):
        if word:
            words.append(word)
    return words
"""


def src(text: str) -> str:
    return textwrap.dedent(text).lstrip("\n")


ALLOWED = [
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(item * scale for item in items)
        """, id="generator-expression"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import functools
            import operator
            return functools.reduce(operator.add, (i * scale for i in items), 0)
        """, id="allowed-imports"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from collections import Counter as C
            counts = C(items)
            return sum(value * n * scale for value, n in counts.items())
        """, id="from-import-alias"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import re
            pattern = re.compile(r"\\d+")
            return sum(int(pattern.match(str(i)).group()) * scale for i in items)
        """, id="re-compile-attribute"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(getattr(item, "value", item) * scale for item in items)
        """, id="getattr-constant-name"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import operator
            value = operator.attrgetter("real")
            return sum(value(i) * scale for i in items)
        """, id="attrgetter-constant-name"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            label = "{:.2f}|{0}|{name!r:>10}".format(1.0, name="x")
            return sum(items) * scale if label else 0
        """, id="literal-format-without-traversal"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            text = f"{scale!r:>10}"
            return sum(items) * scale if text else 0
        """, id="f-string"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            seen = {}
            for item in items:
                seen[item] = seen.get(item, 0) + item * scale
            return sum(seen.values())
        """, id="store-into-local"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            def times(x):
                return x * scale
            return sum(sorted(map(times, items), key=lambda v: -v))
        """, id="nested-function-and-lambda"),
    pytest.param(METHOD, """
        def add(self, item, *, count=1):
            self.items.extend([item] * count)
            self.size = len(self.items)
        """, id="store-into-parameter"),
    pytest.param(METHOD, """
        def add(self, item, *, count=1):
            self._pending = [item] * count
            self.items.extend(self._pending)
            self.size = len(self.items)
        """, id="private-attribute-of-parameter"),
    pytest.param(PARSE, """
        def parse(input, sep=","):
            return [part.strip() for part in input.split(sep)]
        """, id="parameter-shadows-builtin"),
    pytest.param(DECORATED, """
        @functools.lru_cache(maxsize=128)
        def fib(n):
            a, b = 0, 1
            for _ in range(n):
                a, b = b, a + b
            return a
        """, id="same-decorator"),
    pytest.param(COUNTER, """
        def bump(key):
            global CALLS
            CALLS = CALLS + 1
            SEEN[key] = True
            return CALLS
        """, id="same-global-and-store-as-original"),
    pytest.param(GENERATOR, """
        def pairs(items):
            yield from zip(items, items[1:])
        """, id="generator-stays-generator"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            match items:
                case [x]:
                    return x * scale
                case _:
                    return sum(items) * scale
        """, id="match-statement"),
    # local variables named like forbidden modules or builtins reach nothing
    pytest.param(TOTAL, """
        def total(items, scale=1):
            code = 0
            types = {type(item) for item in items}
            for random in items:
                code += random * scale
            try:
                return code + len(types)
            except ValueError as io:
                return 0
        """, id="locals-named-like-modules"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            step = lambda signal: signal * scale
            def inner(glob):
                return sum(step(ast) for ast in glob)
            return inner(items)
        """, id="nested-parameters-named-like-modules"),
    pytest.param(TOKENIZE, """
        def tokenize(text):
            return text.split()
        """, id="function-named-like-a-module"),
]


# (original, candidate, rule, line); the candidate's first line is line 1.
REJECTED = [
    # syntax
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(items
        """, "syntax", 2, id="unclosed-paren"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            def inner():
                nonlocal missing
            return 0
        """, "syntax", 3, id="scoping-error-found-by-compile"),
    pytest.param(TOTAL, "def total(items, scale=1):\n    return\x00 1\n", "syntax", 1,
                 id="nul-byte"),
    # one-function
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return helper(items) * scale

        def helper(items):
            return sum(items)
        """, "one-function", 4, id="two-functions"),
    pytest.param(TOTAL, """
        import math
        def total(items, scale=1):
            return math.fsum(items) * scale
        """, "one-function", 1, id="top-level-import"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(items) * scale
        print("loaded")
        """, "one-function", 3, id="top-level-statement"),
    pytest.param(TOTAL, """
        class total:
            pass
        """, "one-function", 1, id="class-instead"),
    pytest.param(TOTAL, "# nothing here\n", "one-function", 1, id="empty"),
    # signature
    pytest.param(TOTAL, """
        def total_fast(items, scale=1):
            return sum(items) * scale
        """, "signature", 1, id="renamed"),
    pytest.param(TOTAL, """
        def total(items, scale=2):
            return sum(items) * scale
        """, "signature", 1, id="changed-default"),
    pytest.param(TOTAL, """
        def total(items, scale=1, cache={}):
            return sum(items) * scale
        """, "signature", 1, id="added-parameter"),
    pytest.param(TOTAL, """
        def total(scale, items=1):
            return sum(items) * scale
        """, "signature", 1, id="reordered-parameters"),
    pytest.param(METHOD, """
        def add(self, item, count=1):
            self.items.extend([item] * count)
        """, "signature", 1, id="keyword-only-became-positional"),
    pytest.param(TOTAL, """
        @functools.cache
        def total(items, scale=1):
            return sum(items) * scale
        """, "signature", 2, id="added-decorator"),
    pytest.param(DECORATED, """
        def fib(n):
            return n if n < 2 else fib(n - 1) + fib(n - 2)
        """, "signature", 1, id="dropped-decorator"),
    pytest.param(TOTAL, """
        async def total(items, scale=1):
            return sum(items) * scale
        """, "signature", 1, id="became-async"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            yield sum(items) * scale
        """, "signature", 1, id="became-generator"),
    # import
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import os
            return sum(items) * scale
        """, "import", 2, id="import-os"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import json
            return json.loads(json.dumps(sum(items))) * scale
        """, "import", 2, id="import-not-allowed"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from importlib import import_module
            return import_module("math").fsum(items) * scale
        """, "import", 2, id="import-importlib"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from . import helpers
            return helpers.total(items) * scale
        """, "import", 2, id="relative-import"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import collections.abc, subprocess
            return sum(items) * scale
        """, "import", 2, id="second-name-in-import"),
    # forbidden-name
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return eval("sum(items)") * scale
        """, "forbidden-name", 2, id="eval"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            def inner():
                random = 1
                return random
            return random.random() * inner()
        """, "forbidden-name", 3, id="module-name-local-elsewhere-global-here"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            class Box:
                types = types
            return Box.types
        """, "forbidden-name", 3, id="module-name-in-a-class-body"),
    pytest.param(TOKENIZE, """
        def tokenize(text):
            return tokenize.generate_tokens(text)
        """, "forbidden-name", 1, id="function-name-read-as-a-global"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            m = __import__('o' + 's')
            return sum(items) * scale
        """, "forbidden-name", 2, id="dunder-import-obfuscated"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            f = getattr(__builtins__, 'ev' + 'al')
            return f("sum(items)") * scale
        """, "forbidden-name", 2, id="getattr-builtins-computed"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            with open("/tmp/x", "w") as fh:
                fh.write(str(items))
            return sum(items) * scale
        """, "forbidden-name", 2, id="open"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(items) * scale + len(globals())
        """, "forbidden-name", 2, id="globals"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            exec("items.append(1)")
            return sum(items) * scale
        """, "forbidden-name", 2, id="exec"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            code = compile("1", "x", "eval")
            return sum(items) * scale
        """, "forbidden-name", 2, id="compile-builtin"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import typing
            typing.sys.modules["os"].system("id")
            return sum(items) * scale
        """, "forbidden-name", 3, id="module-attribute-of-allowed-module"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import collections
            collections._sys.exit(1)
        """, "forbidden-name", 3, id="private-module-alias"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from typing import sys
            return sum(items) * scale
        """, "forbidden-name", 2, id="from-allowed-import-forbidden-module"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            g = getattr
            return g(items, "count")(1) * scale
        """, "forbidden-name", 2, id="getattr-aliased"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            name = "real"
            return sum(getattr(i, name) for i in items) * scale
        """, "forbidden-name", 3, id="getattr-variable-name"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            setattr(items, "scale", scale)
            return sum(items) * scale
        """, "forbidden-name", 2, id="setattr"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from operator import attrgetter as ag
            return sum(items) * scale
        """, "forbidden-name", 2, id="getter-renamed"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            if not items:
                raise SystemExit(0)
            return sum(items) * scale
        """, "forbidden-name", 3, id="system-exit"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            try:
                return sum(items) * scale
            except BaseException:
                return 0
        """, "forbidden-name", 4, id="swallow-base-exception"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(items) * scale + len(vars())
        """, "forbidden-name", 2, id="vars"),
    # dunder
    pytest.param(TOTAL, """
        def total(items, scale=1):
            classes = ().__class__.__bases__[0].__subclasses__()
            return sum(items) * scale
        """, "dunder", 2, id="subclasses-walk"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return sum(items) * scale + len(__builtins__)
        """, "dunder", 2, id="builtins-name"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return getattr(items, "__class__") and sum(items) * scale
        """, "dunder", 2, id="getattr-dunder-constant"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import operator
            grab = operator.attrgetter("__globals__")
            return sum(items) * scale
        """, "dunder", 3, id="attrgetter-dunder"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            class Liar:
                def __eq__(self, other):
                    return True
            return Liar()
        """, "dunder", 3, id="malicious-eq"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            match items:
                case object(__class__=cls):
                    return cls
        """, "dunder", 3, id="match-class-dunder-attribute"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return total.__code__.co_consts
        """, "dunder", 2, id="code-attribute"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            Liar = type("Liar", (), {"__eq__": lambda self, other: True})
            return Liar()
        """, "dunder", 2, id="dunder-method-by-string"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            return items["__builtins__"]
        """, "dunder", 2, id="dunder-string-subscript"),
    # private
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import dataclasses
            run = dataclasses._create_fn("f", (), ["return 1"])
            return run()
        """, "forbidden-name", 3, id="module-private-code-generator"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import re
            return re._compile("x", 0)
        """, "private", 3, id="module-private-function"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import dataclasses
            return getattr(dataclasses, "_process_class")
        """, "private", 3, id="getattr-module-private"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            from re import _compiler
            return _compiler
        """, "private", 2, id="import-private-name"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import functools
            functools.update_wrapper(items, total, assigned=("x",))
            return 0
        """, "forbidden-name", 3, id="update-wrapper"),
    # introspection
    pytest.param(TOTAL, """
        def total(items, scale=1):
            frame = (x for x in items).gi_frame
            return frame.f_back.f_globals
        """, "introspection", 2, id="generator-frame"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            gen = (x for x in items)
            return getattr(gen, "gi_frame")
        """, "introspection", 3, id="getattr-frame-constant"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            match (x for x in items):
                case object(gi_frame=frame):
                    return frame
        """, "introspection", 3, id="match-class-frame"),
    # global
    pytest.param(TOTAL, """
        def total(items, scale=1):
            global scale_cache
            scale_cache = scale
            return sum(items) * scale
        """, "global", 2, id="global-rebinding"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            result = 0
            def add(x):
                nonlocal result
                result += x * scale
            for item in items:
                add(item)
            return result
        """, "global", 4, id="nonlocal-rebinding"),
    # shared-state
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import math
            math.pi = 3
            return sum(items) * scale
        """, "shared-state", 3, id="module-attribute-store"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            key = tuple(items)
            if key not in _CACHE:
                _CACHE[key] = sum(items) * scale
            return _CACHE[key]
        """, "shared-state", 4, id="new-global-cache"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            del total.cache
            return sum(items) * scale
        """, "shared-state", 2, id="delete-attribute-of-global"),
    # format-string
    pytest.param(TOTAL, """
        def total(items, scale=1):
            leak = "{0.__class__}".format(items)
            return sum(items) * scale
        """, "format-string", 2, id="format-attribute-traversal"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            leak = "{0[0]}".format(items)
            return sum(items) * scale
        """, "format-string", 2, id="format-item-traversal"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            leak = "{0:{1.real}}".format(1, 2)
            return sum(items) * scale
        """, "format-string", 2, id="format-nested-spec-traversal"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            fmt = "{0.x}"
            leak = fmt.format(items)
            return sum(items) * scale
        """, "format-string", 3, id="format-on-variable"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            leak = "{items.x}".format_map({"items": items})
            return sum(items) * scale
        """, "format-string", 2, id="format-map"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import string
            leak = string.Formatter().vformat("{0}", (items,), {})
            return sum(items) * scale
        """, "format-string", 3, id="formatter-vformat"),
    pytest.param(TOTAL, """
        def total(items, scale=1):
            import operator
            call = operator.methodcaller("format", items)
            return sum(items) * scale
        """, "format-string", 3, id="methodcaller-format"),
    # size
    pytest.param(TOTAL, "def total(items, scale=1):\n"
                 + "".join(f"    items = [i + {n} - {n} for i in items]\n" for n in range(40))
                 + "    return sum(items) * scale\n", "size", 1, id="node-growth"),
    pytest.param(TOTAL, "def total(items, scale=1):\n    # " + "x" * 30_000 + "\n    return 0\n",
                 "size", 1, id="text-growth"),
    # the original itself
    pytest.param("x = 1\n", "def total(items, scale=1):\n    return 0\n", "original", 1,
                 id="original-not-a-function"),
]


@pytest.mark.parametrize("original, candidate", ALLOWED)
def test_benign_rewrites_are_allowed(original: str, candidate: str) -> None:
    """A faster rewrite that keeps the signature and uses only permitted names passes."""
    verdict = check_candidate(src(candidate), original, POLICY)
    assert isinstance(verdict, Allowed), verdict
    assert verdict.nodes > 0 and verdict.original_nodes > 0


@pytest.mark.parametrize("original, candidate, rule, line", REJECTED)
def test_each_escape_is_rejected_with_its_rule_and_line(original: str, candidate: str, rule: str,
                                                        line: int) -> None:
    """Each hostile or non-conforming candidate is refused by the expected rule at its line."""
    verdict = check_candidate(src(candidate), original, POLICY)
    assert isinstance(verdict, Rejected), f"allowed: {candidate}"
    assert (verdict.reason, verdict.line) == (rule, line), verdict
    assert str(verdict).startswith(f"static/{rule} at line {line}, col {verdict.col}: ")
    assert verdict.detail and not verdict.detail.startswith("line")


def test_the_table_is_large_enough() -> None:
    """The issue asks for at least forty hostile candidates across every rule."""
    assert len(REJECTED) >= 40
    assert {p.values[2] for p in REJECTED} >= {
        "syntax", "one-function", "signature", "import", "forbidden-name", "dunder",
        "introspection", "private", "global", "shared-state", "format-string", "size"}


def test_columns_count_characters_not_bytes() -> None:
    """The column of a violation after non-ASCII text is the character column an editor shows."""
    verdict = check_candidate(src("""
        def total(items, scale=1):
            s = "éé"; return eval(s)
        """), TOTAL, POLICY)
    assert isinstance(verdict, Rejected)
    assert (verdict.reason, verdict.line, verdict.col) == ("forbidden-name", 2, 22)


def test_policy_names_are_refused_in_addition() -> None:
    """Names a policy adds to forbidden_names are refused as names and as attributes."""
    policy = StaticPolicy(forbidden_names=("sorted", "most_common"))
    for body in ("return sorted(items)", "import collections\n    "
                 "return collections.Counter(items).most_common(1)"):
        verdict = check_candidate(f"def total(items, scale=1):\n    {body}\n", TOTAL, policy)
        assert isinstance(verdict, Rejected) and verdict.reason == "forbidden-name", verdict


def test_an_unvalidated_policy_cannot_allow_a_forbidden_module() -> None:
    """Even a policy built without validation that lists os cannot let a candidate import it."""
    policy = StaticPolicy.model_construct(allowed_imports=("os",), forbidden_names=(),
                                          max_growth=3.0)
    verdict = check_candidate("def total(items, scale=1):\n    import os\n    return 0\n",
                              TOTAL, policy)
    assert isinstance(verdict, Rejected) and verdict.reason == "forbidden-name"


def test_the_earliest_violation_is_reported() -> None:
    """With several violations the first in source order is the one reported."""
    verdict = check_candidate(src("""
        def total(items, scale=1):
            x = items.__class__
            return eval("1")
        """), TOTAL, POLICY)
    assert isinstance(verdict, Rejected) and (verdict.reason, verdict.line) == ("dunder", 2)


def _probe(path: str) -> bool:
    """Whether the gate lets a candidate read the attribute path ``path``."""
    probe = f"def total(items, scale=1):\n    import {path.partition('.')[0]}\n" \
            f"    return {path}\n"
    return isinstance(check_candidate(probe, TOTAL, POLICY), Allowed)


def test_no_escape_is_reachable_through_allowed_modules() -> None:
    """Attribute paths from allowed imports that pass the gate reach no forbidden module
    and no dangerous builtin (``enum.bltns.eval``, ``typing.sys``)."""
    dangerous = {id(getattr(builtins, name)) for name in FORBIDDEN_BUILTINS
                 if hasattr(builtins, name)}
    seen: set[str] = set()
    frontier = [(name, importlib.import_module(name)) for name in POLICY.allowed_imports]
    while frontier:
        path, module = frontier.pop()
        for attr, value in vars(module).items():
            if isinstance(value, types.ModuleType) and value.__name__ not in seen:
                if _probe(f"{path}.{attr}"):
                    top = value.__name__.partition(".")[0]
                    assert top not in FORBIDDEN_MODULES and \
                        top.lstrip("_") not in FORBIDDEN_MODULES, f"{path}.{attr}"
                    seen.add(value.__name__)
                    frontier.append((f"{path}.{attr}", value))
            elif id(value) in dangerous:
                assert not _probe(f"{path}.{attr}"), f"{path}.{attr} is {value!r}"
    assert "collections.abc" in seen  # the walk went deeper than the allowed modules
    assert "re._compiler" not in seen  # private module attributes are refused


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300))
def test_arbitrary_text_never_raises(text: str) -> None:
    """Whatever text a proposer returns, the gate answers with a verdict instead of raising."""
    verdict = check_candidate(text, TOTAL, POLICY)
    assert isinstance(verdict, (Allowed, Rejected))


@settings(max_examples=150, deadline=None)
@given(st.integers(0, 400), st.text(max_size=20))
def test_spliced_candidates_never_raise(at: int, insert: str) -> None:
    """Text spliced into a valid candidate gives a verdict, never an exception."""
    base = "def total(items, scale=1):\n    return sum(i * scale for i in items)\n"
    candidate = base[:at] + insert + base[at:]
    assert isinstance(check_candidate(candidate, TOTAL, POLICY), (Allowed, Rejected))


def test_compiler_warnings_are_not_emitted(recwarn: pytest.WarningsRecorder) -> None:
    """Judging a candidate that makes the compiler warn prints nothing and still decides."""
    verdict = check_candidate("def total(items, scale=1):\n    return items is 1 or '\\d'\n",
                              TOTAL, POLICY)
    assert isinstance(verdict, Allowed)
    assert [w for w in recwarn if issubclass(w.category, SyntaxWarning)] == []
