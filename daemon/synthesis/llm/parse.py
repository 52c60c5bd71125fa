"""From a model's sample to one function definition, or a reason why not.

A sample should be JSON matching the candidate schema; when it is not (the
server ignored the response format, the model wrapped it in prose, the text
was cut off), a fenced ``python`` block or a bare ``def`` is looked for
instead. The code found must parse and hold exactly one top-level function
with the target's name and signature. Parsing returns :class:`Parsed` or
:class:`ParseFailure` and never raises: model output is untrusted and
arbitrary, and a bad sample is an ordinary outcome.

:func:`apply_to_module` puts an accepted function back into its module with
LibCST, so every other byte of the module (comments, blank lines, quoting
style) stays as it was.
"""

from __future__ import annotations

import ast
import json
import re
import textwrap
from dataclasses import dataclass

import libcst as cst

from daemon.synthesis.llm.errors import ApplyError

MAX_SAMPLE_CHARS = 64_000
_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[^\n]*\n(.*?)(?:```|\Z)", re.DOTALL)
_DEF_LINE = re.compile(r"^(?:async[ \t]+)?def[ \t]+\w+|^@\w", re.MULTILINE)
_TRUNCATION_HINTS = ("was never closed", "unexpected EOF", "unterminated",
                     "expected an indented block")

# Failure reasons: short, stable labels (they become metric label values).
EMPTY = "empty"
TOO_LARGE = "too_large"
BAD_JSON = "bad_json"
WRONG_SCHEMA = "wrong_schema"
NO_CODE = "no_code"
TRUNCATED = "truncated"
SYNTAX_ERROR = "syntax_error"
NO_FUNCTION = "no_function"
WRONG_NAME = "wrong_name"
SEVERAL_FUNCTIONS = "several_functions"
EXTRA_STATEMENTS = "extra_statements"
WRONG_SIGNATURE = "wrong_signature"


@dataclass(frozen=True)
class Parsed:
    """One function definition taken from a sample, rendered as source ending in a newline."""

    source: str
    rationale: str = ""
    via: str = "json"  # json | fenced | bare: how the code was found


@dataclass(frozen=True)
class ParseFailure:
    """Why a sample yielded no candidate."""

    reason: str  # one of the labels above
    detail: str = ""
    excerpt: str = ""  # the start of the sample, for the audit log


ParseResult = Parsed | ParseFailure


def parse_sample(text: str, name: str, *, original_source: str | None = None,
                 truncated: bool = False, max_chars: int = MAX_SAMPLE_CHARS) -> ParseResult:
    """Extracts the function ``name`` from one model sample.

    ``original_source``, when given, is the function being replaced; the
    candidate must then keep its signature. ``truncated`` says the server cut
    the sample at ``max_tokens``, which turns "does not parse" into "truncated".
    """
    excerpt = text[:200]
    if not text.strip():
        return ParseFailure(EMPTY, "the sample is empty", excerpt)
    if len(text) > max_chars:
        return ParseFailure(TOO_LARGE, f"{len(text)} characters, more than {max_chars}", excerpt)
    found = _extract_code(text)
    if isinstance(found, ParseFailure):
        return _truncation(found, truncated, excerpt)
    code, rationale, via = found
    result = _check_code(code, name, original_source)
    if isinstance(result, ParseFailure):
        return _truncation(result, truncated, excerpt)
    return Parsed(result, rationale.strip()[:1000], via)


def _truncation(failure: ParseFailure, truncated: bool, excerpt: str) -> ParseFailure:
    reason = failure.reason
    if truncated and reason in (BAD_JSON, SYNTAX_ERROR, NO_CODE):
        reason = TRUNCATED
    return ParseFailure(reason, failure.detail, excerpt)


def _extract_code(text: str) -> tuple[str, str, str] | ParseFailure:
    """(code, rationale, via) from JSON, a fenced block, or bare code."""
    stripped = _unfence_json(text.strip())
    json_failure: ParseFailure | None = None
    if stripped.startswith("{"):
        try:
            # strict=False: constrained decoders let raw control characters into strings
            value, _ = json.JSONDecoder(strict=False).raw_decode(stripped)
        except ValueError as exc:
            at_end = (getattr(exc, "pos", 0) >= len(stripped) - 1
                      or "Unterminated string" in str(exc))
            json_failure = ParseFailure(TRUNCATED if at_end else BAD_JSON,
                                        f"not valid JSON: {exc}")
        else:
            if not isinstance(value, dict) or not isinstance(value.get("code"), str):
                keys = sorted(value) if isinstance(value, dict) else type(value).__name__
                return ParseFailure(WRONG_SCHEMA, f"expected an object with a string 'code', "
                                                  f"got {keys}")
            rationale = value.get("rationale")
            code = _unfence_code(value["code"])
            if not code.strip():
                return ParseFailure(EMPTY, "the 'code' field is empty")
            return code, rationale if isinstance(rationale, str) else "", "json"
    fenced = _fenced_code(text)
    if fenced is not None:
        return fenced, "", "fenced"
    bare = _bare_code(text)
    if bare is not None:
        return bare, "", "bare"
    return json_failure or ParseFailure(NO_CODE, "neither JSON nor Python code found")


def _unfence_json(text: str) -> str:
    """```` ```json {...} ``` ```` -> ``{...}``."""
    match = _FENCE.fullmatch(text)
    if match and match.group(1).lower() in ("json", ""):
        inner = match.group(2).strip()
        if inner.startswith("{"):
            return inner
    return text


def _unfence_code(code: str) -> str:
    """Some models put a fenced block inside the JSON string; take what the fence holds."""
    inner = _fenced_code(code)
    return inner if inner is not None else code


def _fenced_code(text: str) -> str | None:
    blocks = [(lang.lower(), body) for lang, body in _FENCE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    with_def = [body for body in python if _DEF_LINE.search(textwrap.dedent(body))]
    chosen = with_def or python
    return chosen[0] if chosen else None


def _bare_code(text: str) -> str | None:
    """Code amid prose: from the first ``def`` (or decorator) to where indentation ends."""
    text = textwrap.dedent(text)
    match = _DEF_LINE.search(text)
    if match is None:
        return None
    lines = text[match.start():].splitlines()
    kept = [lines[0]]
    for line in lines[1:]:
        starts_new = line[:1] not in ("", " ", "\t", ")", "]", "}", "#", "@")
        if starts_new and not _DEF_LINE.match(line):
            break
        kept.append(line)
    return "\n".join(kept)


def _check_code(code: str, name: str, original_source: str | None) -> str | ParseFailure:
    code = textwrap.dedent(code).strip("\n")
    if not code.strip():
        return ParseFailure(EMPTY, "no code")
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError) as exc:
        message = str(getattr(exc, "msg", exc))
        line = getattr(exc, "lineno", None)
        last_line = code.count("\n") + 1
        cut_off = any(h in message for h in _TRUNCATION_HINTS) and (line or 0) >= last_line - 1
        return ParseFailure(TRUNCATED if cut_off else SYNTAX_ERROR,
                            f"line {line}: {message}" if line else message)
    defs = [n for n in tree.body
            if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)]
    others = [n for n in tree.body if n not in defs and not _is_docstring(n)]
    if not defs:
        return ParseFailure(NO_FUNCTION, "the code defines no function")
    named = [n for n in defs
             if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name]
    if not named:
        found = ", ".join(n.name for n in defs)
        return ParseFailure(WRONG_NAME, f"defines {found}, expected {name}")
    if len(defs) > 1:
        found = ", ".join(n.name for n in defs)
        return ParseFailure(SEVERAL_FUNCTIONS, f"defines {found}; return only {name}, with any "
                                               "helpers nested inside it")
    if others:
        kinds = ", ".join(sorted({type(n).__name__ for n in others}))
        return ParseFailure(EXTRA_STATEMENTS, f"top-level {kinds} beside the function; put "
                                              "imports inside the function body")
    function = named[0]
    if original_source is not None:
        mismatch = _signature_mismatch(function, original_source, name)
        if mismatch:
            return ParseFailure(WRONG_SIGNATURE, mismatch)
    return _render(code, function)


def _is_docstring(node: ast.stmt) -> bool:
    return (isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str))


def _signature_mismatch(candidate: ast.FunctionDef | ast.AsyncFunctionDef, original_source: str,
                        name: str) -> str:
    try:
        tree = ast.parse(textwrap.dedent(original_source))
    except (SyntaxError, ValueError):
        return ""  # nothing to compare against; later stages still check behaviour
    originals = [n for n in tree.body
                 if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == name]
    if not originals:
        return ""
    original = originals[0]
    if type(original) is not type(candidate):
        return "async and plain functions differ"
    want, got = _signature(original.args), _signature(candidate.args)
    if want != got:
        return f"signature ({got}) differs from the original ({want})"
    return ""


def _signature(args: ast.arguments) -> str:
    """Parameter names, kinds and defaults, annotations left out."""
    bare = ast.arguments(
        posonlyargs=[ast.arg(a.arg) for a in args.posonlyargs],
        args=[ast.arg(a.arg) for a in args.args],
        vararg=ast.arg(args.vararg.arg) if args.vararg else None,
        kwonlyargs=[ast.arg(a.arg) for a in args.kwonlyargs],
        kw_defaults=args.kw_defaults,
        kwarg=ast.arg(args.kwarg.arg) if args.kwarg else None,
        defaults=args.defaults,
    )
    return ast.unparse(bare)


def _render(code: str, function: ast.FunctionDef | ast.AsyncFunctionDef) -> str:
    """The one definition as LibCST renders it: the model's own formatting, nothing around it."""
    try:
        module = cst.parse_module(code + "\n")
    except cst.ParserSyntaxError:
        segment = ast.get_source_segment(code, function) or ast.unparse(function)
        return segment.rstrip() + "\n"
    for statement in module.body:
        if isinstance(statement, cst.FunctionDef):
            # leading comments above the def belong to the answer's prose, not the function
            return module.code_for_node(statement.with_changes(leading_lines=())).rstrip() + "\n"
    return (ast.get_source_segment(code, function) or ast.unparse(function)).rstrip() + "\n"


def apply_to_module(module_source: str, qualname: str, new_function_source: str) -> str:
    """The module text with the function (or method) ``qualname`` replaced, all else untouched.

    Raises :class:`ApplyError` when the new source is not one function
    definition or when ``qualname`` does not name exactly one definition.
    """
    try:
        new_module = cst.parse_module(textwrap.dedent(new_function_source))
        module = cst.parse_module(module_source)
    except cst.ParserSyntaxError as exc:
        raise ApplyError(f"cannot parse: {exc.message}") from exc
    functions = [s for s in new_module.body if isinstance(s, cst.FunctionDef)]
    if len(functions) != 1 or len(new_module.body) != 1:
        raise ApplyError("the new source must be exactly one function definition")
    replacer = _Replacer(qualname, functions[0])
    updated = module.visit(replacer)
    if replacer.matches != 1:
        raise ApplyError(f"{qualname} is defined {replacer.matches} times in the module; "
                         "expected exactly once")
    return updated.code


class _Replacer(cst.CSTTransformer):
    """Swaps the definition whose qualified name matches, keeping its comments and decorators."""

    def __init__(self, qualname: str, replacement: cst.FunctionDef) -> None:
        super().__init__()
        self.qualname = qualname
        self.replacement = replacement
        self.matches = 0
        self._scope: list[str] = []

    def visit_ClassDef(self, node: cst.ClassDef) -> bool:
        self._scope.append(node.name.value)
        return True

    def leave_ClassDef(self, original_node: cst.ClassDef,
                       updated_node: cst.ClassDef) -> cst.ClassDef:
        self._scope.pop()
        return updated_node

    def visit_FunctionDef(self, node: cst.FunctionDef) -> bool:
        self._scope.append(node.name.value)
        self._scope.append("<locals>")
        return True

    def leave_FunctionDef(self, original_node: cst.FunctionDef,
                          updated_node: cst.FunctionDef) -> cst.FunctionDef:
        self._scope.pop()
        qualname = ".".join(self._scope)
        self._scope.pop()
        if qualname != self.qualname:
            return updated_node
        self.matches += 1
        decorators = self.replacement.decorators or original_node.decorators
        return self.replacement.with_changes(leading_lines=original_node.leading_lines,
                                             decorators=decorators)
