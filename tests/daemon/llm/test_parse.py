"""Parsing model samples into one function, and putting it back into its module."""

from __future__ import annotations

import json
import textwrap

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from daemon.synthesis.llm import ApplyError, Parsed, ParseFailure, apply_to_module, parse_sample

ORIGINAL = """\
def dedupe(items, key=None):
    out = []
    for item in items:
        if item not in out:
            out.append(item)
    return out
"""
FASTER = """\
def dedupe(items, key=None):
    # dict keeps first-seen order
    return list(dict.fromkeys(items))
"""


def as_json(code: str, rationale: str = "dict.fromkeys is O(n)") -> str:
    return json.dumps({"code": code, "rationale": rationale})


def parsed(text: str, **kwargs: object) -> Parsed:
    result = parse_sample(text, "dedupe", original_source=ORIGINAL, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, Parsed), result
    return result


def failure(text: str, **kwargs: object) -> ParseFailure:
    result = parse_sample(text, "dedupe", original_source=ORIGINAL, **kwargs)  # type: ignore[arg-type]
    assert isinstance(result, ParseFailure), result
    return result


def test_json_answer() -> None:
    """A schema-conforming JSON answer yields its code, verbatim, and its rationale."""
    result = parsed(as_json(FASTER))
    assert result.source == FASTER
    assert result.rationale == "dict.fromkeys is O(n)" and result.via == "json"


def test_json_with_raw_control_characters() -> None:
    """Constrained decoders let raw tabs and newlines into JSON strings; they are accepted."""
    text = '{"code": "def dedupe(items, key=None):\n\treturn list(dict.fromkeys(items))", ' \
           '"rationale": "fast"}'
    assert "dict.fromkeys" in parsed(text).source


def test_json_inside_a_json_fence() -> None:
    """```json fences around the object are markdown noise and are removed."""
    assert parsed(f"```json\n{as_json(FASTER)}\n```").source == FASTER


def test_python_fence_inside_the_code_field() -> None:
    """A fenced block inside the 'code' string is unwrapped."""
    assert parsed(as_json(f"```python\n{FASTER}```")).source == FASTER


def test_fenced_block_fallback_with_markdown_noise() -> None:
    """Prose and a fenced python block: the block is taken, the prose ignored."""
    text = (f"Sure! Here is a **faster** version:\n\n```python\n{FASTER}```\n\n"
            "It uses `dict.fromkeys`, which keeps order.\n\n```text\nnot code\n```")
    result = parsed(text)
    assert result.source == FASTER and result.via == "fenced"


def test_bare_code_between_prose() -> None:
    """Unfenced code amid prose is cut from its def to where its indentation ends."""
    text = f"Here you go:\n\n{FASTER}\nThis is faster because hashing is O(1)."
    result = parsed(text)
    assert result.source == FASTER and result.via == "bare"


def test_truncated_json_is_reported_as_truncated() -> None:
    """A JSON answer cut off mid-string is 'truncated', not a mystery."""
    assert failure(as_json(FASTER)[:40]).reason == "truncated"


def test_truncated_code_is_reported_as_truncated() -> None:
    """Code cut off mid-expression is 'truncated'."""
    cut = "def dedupe(items, key=None):\n    return list(dict.fromkeys(items"
    assert failure(as_json(cut)).reason == "truncated"


def test_finish_reason_length_marks_unparsable_samples_truncated() -> None:
    """When the server says it stopped at max_tokens, a parse error is a truncation."""
    assert failure('{"code": "def dedupe(', truncated=True).reason == "truncated"
    assert failure("def dedupe(items, key=None) return", truncated=True).reason == "truncated"


def test_syntax_error() -> None:
    """Code that is wrong, not short, is a syntax error with the line."""
    result = failure(as_json("def dedupe(items, key=None):\n    return = 1\n"))
    assert result.reason == "syntax_error" and "line 2" in result.detail


def test_wrong_name() -> None:
    """A function with another name is refused, naming both."""
    result = failure(as_json(FASTER.replace("def dedupe", "def unique")))
    assert result.reason == "wrong_name" and "unique" in result.detail


def test_two_functions() -> None:
    """A helper beside the target is refused: exactly one top-level definition."""
    code = "def helper(x):\n    return x\n\n" + FASTER
    assert failure(as_json(code)).reason == "several_functions"


def test_class_beside_the_function() -> None:
    """A class beside the function counts as a second definition."""
    assert failure(as_json("class Box:\n    pass\n\n" + FASTER)).reason == "several_functions"


def test_top_level_import() -> None:
    """A module-level import beside the function is refused with advice."""
    result = failure(as_json("import itertools\n\n" + FASTER))
    assert result.reason == "extra_statements" and "inside the function" in result.detail


def test_no_function() -> None:
    """Code without a def is refused."""
    assert failure(as_json("x = [1, 2, 3]\n")).reason == "no_function"


def test_changed_signature() -> None:
    """Renamed, dropped or re-defaulted parameters are refused."""
    for changed in ("def dedupe(items):", "def dedupe(xs, key=None):",
                    "def dedupe(items, key=0):", "def dedupe(items, *, key=None):"):
        code = FASTER.replace("def dedupe(items, key=None):", changed)
        assert failure(as_json(code)).reason == "wrong_signature", changed


def test_added_annotations_keep_the_signature() -> None:
    """Annotations are not part of the behaviour and may be added."""
    code = FASTER.replace("def dedupe(items, key=None):",
                          "def dedupe(items: list[int], key: object = None) -> list[int]:")
    assert "list[int]" in parsed(as_json(code)).source


def test_wrong_schema() -> None:
    """JSON without a string 'code' is a schema violation."""
    assert failure('{"function": "def dedupe(): pass"}').reason == "wrong_schema"
    assert failure('{"code": 42, "rationale": ""}').reason == "wrong_schema"
    assert failure('["def dedupe(items, key=None): pass"]').reason == "no_code"


def test_empty_code_and_empty_sample() -> None:
    """Empty text and an empty 'code' field are refused as empty."""
    assert failure("").reason == "empty"
    assert failure("   \n").reason == "empty"
    assert failure(as_json("  ")).reason == "empty"


def test_garbage() -> None:
    """Noise from a random-weight model is refused, with an excerpt kept."""
    noise = ']mon go check drivenamesmission=%artedivFLAGRuncreadools24debugcheck'
    result = failure(noise)
    assert result.reason == "no_code" and result.excerpt == noise
    assert failure('{"code": "]mon go check", "rationale": "x"}').reason == "syntax_error"


def test_huge_text() -> None:
    """A sample over the size limit is refused before any parsing."""
    result = failure(as_json(FASTER + "#" * 100_000))
    assert result.reason == "too_large" and len(result.excerpt) == 200


def test_leading_comments_are_dropped_and_decorators_kept() -> None:
    """Comment lines above the def belong to the answer, decorators to the function."""
    code = "# here is my answer\n@functools.cache\n" + FASTER
    source = parsed(as_json(code)).source
    assert source.startswith("@functools.cache\ndef dedupe")


def test_indented_code_is_dedented() -> None:
    """Code indented as if inside a class is brought to column zero."""
    assert parsed(as_json(textwrap.indent(FASTER, "    "))).source == FASTER


# ast.parse warns about odd escapes ("\\`") in the text it reads, as compile does;
# random text is full of them, and a warning is not what these tests are about.
QUIET_PARSER = pytest.mark.filterwarnings("ignore::DeprecationWarning",
                                          "ignore::SyntaxWarning")


@QUIET_PARSER
@settings(max_examples=300, deadline=None)
@given(st.text(max_size=400))
def test_parse_never_raises(text: str) -> None:
    """Any text at all yields a Parsed or a ParseFailure, never an exception."""
    assert isinstance(parse_sample(text, "dedupe", original_source=ORIGINAL),
                      Parsed | ParseFailure)


@QUIET_PARSER
@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="def():\n {}[]\"'#`,=_abcxy\\", max_size=200))
def test_parse_never_raises_on_code_like_noise(text: str) -> None:
    """Text made of Python and JSON punctuation does not break the parser either."""
    for sample in (text, as_json(text), f"```python\n{text}\n```"):
        assert isinstance(parse_sample(sample, "dedupe"), Parsed | ParseFailure)


MODULE = '''\
"""Pricing rules."""

import math  # used by round_price


# Rounds to cents; keep in sync with the invoicing service.
def round_price(value):
    return math.floor(value * 100 + 0.5) / 100


class Cart:
    """A shopping cart."""

    TAX = 0.2

    def __init__(self, items):
        self.items = items

    # hot: called once per request
    @property
    def total(self):
        t = 0
        for price in self.items:
            t = t + price
        return t

    def first(self):
        def total(x):  # a nested namesake, not the method
            return x
        return total(self.items[0])
'''


def test_apply_replaces_a_module_function_and_keeps_everything_else() -> None:
    """Only the function's body changes; comments and blank lines around it stay byte-equal."""
    new = "def round_price(value):\n    return round(value, 2)\n"
    after = apply_to_module(MODULE, "round_price", new)
    assert after == MODULE.replace("    return math.floor(value * 100 + 0.5) / 100",
                                   "    return round(value, 2)")


def test_apply_replaces_a_method_with_its_indentation_and_decorator() -> None:
    """A method written at column zero lands indented in its class, keeping @property."""
    new = "def total(self):\n    return sum(self.items)\n"
    after = apply_to_module(MODULE, "Cart.total", new)
    expected = MODULE.replace(
        "        t = 0\n        for price in self.items:\n            t = t + price\n"
        "        return t\n",
        "        return sum(self.items)\n")
    assert after == expected
    compile(after, "pricing.py", "exec")


def test_apply_does_not_touch_nested_namesakes() -> None:
    """A nested function with the same short name is not the target."""
    after = apply_to_module(MODULE, "Cart.first", "def first(self):\n    return 1\n")
    assert "def total(x):  # a nested namesake" not in after
    assert "    def total(self):" in after


@pytest.mark.parametrize("qualname,new,match", [
    ("missing", "def missing():\n    pass\n", "0 times"),
    ("round_price", "def a():\n    pass\n\ndef b():\n    pass\n", "exactly one function"),
    ("round_price", "x = 1\n", "exactly one function"),
    ("round_price", "def round_price(:\n", "cannot parse"),
])
def test_apply_refuses_what_it_cannot_do(qualname: str, new: str, match: str) -> None:
    """Unknown targets and sources that are not one function raise ApplyError."""
    with pytest.raises(ApplyError, match=match):
        apply_to_module(MODULE, qualname, new)
