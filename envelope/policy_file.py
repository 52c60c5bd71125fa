"""Reading a policy file safely and saying exactly where in it a problem is.

Kept apart from the schema (:mod:`envelope.policy`) because it is about YAML
and files, not about what a policy means: reading with ``O_NOFOLLOW`` and
checks on the open descriptor, a YAML load that refuses duplicate keys and
tags, and the translation of each pydantic error into a :class:`PolicyIssue`
with line, column, the dotted key and a hint (a "did you mean" for a typo).
"""

from __future__ import annotations

import difflib
import errno
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from envelope.errors import PolicyError, PolicyIssue


def read_regular_file(path: Path, source: str, max_bytes: int) -> bytes:
    # O_NOFOLLOW and checks on the open descriptor: what is checked is what is read.
    flags = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as exc:
        raise PolicyError.single(source, "no such file", "create it (config/envelope.yaml "
                                 "is a commented example) or pass the right path") from exc
    except PermissionError as exc:
        raise PolicyError.single(source, f"not readable by uid {os.getuid()}",
                                 "grant this user read permission") from exc
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise PolicyError.single(source, "is a symbolic link, and policies are read only "
                                     "from regular files", "replace the link with the file it "
                                     "points to") from exc
        raise PolicyError.single(source, f"cannot open: {exc.strerror}") from exc
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise PolicyError.single(source, "is not a regular file",
                                     "point the daemon at a regular YAML file")
        if info.st_mode & stat.S_IWOTH:
            raise PolicyError.single(
                source, f"is world-writable (mode {stat.S_IMODE(info.st_mode):04o}), so anyone "
                "could widen the envelope", f"run `chmod o-w {source}`")
        if info.st_size > max_bytes:
            raise PolicyError.single(source, f"is {info.st_size} bytes, more than the "
                                     f"{max_bytes} a policy may have",
                                     "check that this is the policy file")
        chunks = []
        remaining = max_bytes + 1
        while remaining > 0 and (chunk := os.read(fd, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:  # grew after fstat
            raise PolicyError.single(source, f"is more than the {max_bytes} bytes a "
                                     "policy may have", "check that this is the policy file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def load_yaml(text: str, source: str) -> tuple[yaml.Node, Any]:
    """The root node and the plain data of one YAML document; every failure is located."""
    try:
        loader = yaml.SafeLoader(text)  # checks the characters already
    except yaml.reader.ReaderError as exc:
        raise _unreadable(source, text, exc) from exc
    try:
        root = loader.get_single_node()
        if root is None:
            raise PolicyError.single(source, "the file is empty (or only comments)",
                                     "a policy needs at least `version: 1`", line=1, column=1)
        if not isinstance(root, yaml.MappingNode):
            raise issue_at(source, root, "", "the top level must be a mapping of sections, "
                           f"not a {_kind(root)}", "start with `version: 1`")
        _check_duplicate_keys(source, root)
        data = loader.construct_document(root)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        problem = " ".join(p for p in (exc.context, exc.problem) if p) or "not valid YAML"
        if isinstance(exc, yaml.constructor.ConstructorError):
            problem, hint = f"unsupported YAML: {problem}", "remove the tag; a policy holds " \
                "plain strings, numbers, booleans, lists and mappings"
        elif "'\\t'" in problem:
            problem, hint = f"YAML syntax: {problem}", "indent with spaces; YAML forbids tabs"
        else:
            problem, hint = f"YAML syntax: {problem}", "fix the syntax here (a file cut short " \
                "while being written also looks like this)"
        raise PolicyError.single(source, problem, hint, line=mark.line + 1 if mark else None,
                                 column=mark.column + 1 if mark else None) from exc
    except yaml.reader.ReaderError as exc:
        raise _unreadable(source, text, exc) from exc
    except yaml.YAMLError as exc:
        raise PolicyError.single(source, f"YAML: {exc}", "fix the syntax") from exc
    finally:
        loader.dispose()
    return root, data


def _unreadable(source: str, text: str, exc: yaml.reader.ReaderError) -> PolicyError:
    line = text.count("\n", 0, exc.position) + 1
    column = exc.position - (text.rfind("\n", 0, exc.position) + 1) + 1
    char = exc.character if isinstance(exc.character, str) else chr(exc.character)
    return PolicyError.single(source, f"character {char!r} is not allowed in YAML",
                              "remove it (control characters other than tab and newline "
                              "are refused)", line=line, column=column)


def _kind(node: yaml.Node) -> str:
    if isinstance(node, yaml.MappingNode):
        return "mapping"
    if isinstance(node, yaml.SequenceNode):
        return "list"
    return f"scalar ({node.value!r})"


def issue_at(source: str, node: yaml.Node, location: str, problem: str,
              hint: str = "") -> PolicyError:
    return PolicyError([PolicyIssue(source, problem, hint, node.start_mark.line + 1,
                                    node.start_mark.column + 1, location)])


def _check_duplicate_keys(source: str, root: yaml.Node) -> None:
    stack = [root]
    seen_nodes: set[int] = set()  # an alias is the same node again: visit it once
    while stack:
        node = stack.pop()
        if id(node) in seen_nodes:
            continue
        seen_nodes.add(id(node))
        if isinstance(node, yaml.MappingNode):
            seen: dict[object, yaml.Node] = {}
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode):
                    if key.value in seen:
                        first = seen[key.value].start_mark.line + 1
                        raise issue_at(source, key, str(key.value),
                                        f"duplicate key {key.value!r} (first at line {first})",
                                        "keep one of them")
                    seen[key.value] = key
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def key_node(node: yaml.Node, key: str) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, _v in node.value:
            if isinstance(k, yaml.ScalarNode) and k.value == key:
                return k
    return None


def _walk(root: yaml.Node, loc: tuple[int | str, ...],
          key_wanted: bool) -> tuple[yaml.Node, bool]:
    """The node at ``loc`` (its key node if ``key_wanted``), or the deepest one that exists;
    the flag says whether the whole path was found."""
    node = root
    for depth, part in enumerate(loc):
        last = depth == len(loc) - 1
        if isinstance(node, yaml.MappingNode):
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.value == str(part):
                    node = key if last and key_wanted else value
                    break
            else:
                return node, False
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and \
                0 <= part < len(node.value):
            node = node.value[part]
        else:
            return node, False
    return node, True


def _location(loc: tuple[int | str, ...]) -> str:
    text = ""
    for part in loc:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _field(document: type[BaseModel], loc: tuple[int | str, ...]
           ) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last key of ``loc`` and that key's field, where they exist."""
    model: type[BaseModel] | None = document
    field: FieldInfo | None = None
    for part in loc:
        if isinstance(part, int):  # an item of a list: of models, or of plain values
            continue
        if model is None:
            return None, None
        field = model.model_fields.get(part)
        if field is None:
            return model, None
        if part is not loc[-1]:
            model = _model_in(field.annotation)
    return model, field


def _model_in(annotation: object) -> type[BaseModel] | None:
    """The model a field holds, directly or as the items of a tuple."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _model_in(arg)
        if found is not None:
            return found
    return None


def _yaml_value(value: object) -> str:
    if value is None:
        return "nothing (null)"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (tuple, list)):
        # only flat, short lists are spelt out: aliases can make a list astronomically large
        if len(value) <= 5 and not any(isinstance(v, (tuple, list, dict)) for v in value):
            return "[" + ", ".join(_yaml_value(v) for v in value) + "]"
        return f"a list of {len(value)} items"
    if isinstance(value, (dict, Mapping)):
        return "a mapping"
    text = repr(value) if isinstance(value, str) else str(value)
    return text if len(text) <= 80 else text[:77] + "..."


def issue_for(source: str, root: yaml.Node, error: ErrorDetails,
              document: type[BaseModel]) -> PolicyIssue:
    """One validation error of ``document`` (the schema) as a located issue with a hint."""
    loc = tuple(error["loc"])
    kind = error["type"]
    node, found = _walk(root, loc, key_wanted=kind == "extra_forbidden")
    parent_loc = loc[:-1] if kind in ("extra_forbidden", "missing") else loc
    model, field = _field(document, loc)
    problem, hint = _explain(error, model, field)
    location = _location(loc) if found or kind == "missing" else _location(parent_loc)
    return PolicyIssue(source, problem, hint, node.start_mark.line + 1,
                       node.start_mark.column + 1, location)


def _explain(error: ErrorDetails, model: type[BaseModel] | None,
             field: FieldInfo | None) -> tuple[str, str]:
    kind, ctx, got = error["type"], error.get("ctx") or {}, error.get("input")
    key = error["loc"][-1] if error["loc"] else ""
    example = ""
    if field is not None and not field.is_required() and \
            isinstance(field.default, (bool, int, float, str, tuple)):
        example = f"set a value such as {_yaml_value(field.default)} (the default)"
    if kind == "extra_forbidden":
        known = sorted(model.model_fields) if model is not None else []
        close = difflib.get_close_matches(str(key), known, n=1)
        hint = f"did you mean {close[0]!r}?" if close else \
            "remove it" + (f"; keys allowed here: {', '.join(known)}" if known else "")
        return f"unknown key {key!r}", hint
    if kind == "missing":
        if key == "version":
            return "required key 'version' is missing", \
                "add `version: 1` at the top and bump it on every change"
        return f"required key {key!r} is missing", f"add `{key}:` to this mapping"
    if kind in ("model_type", "dict_type", "model_attributes_type"):
        return f"must be a mapping of keys (got {_yaml_value(got)})", \
            "indent its keys below it, or remove it to keep the defaults"
    simple = {
        "int_type": "must be a whole number", "int_from_float": "must be a whole number",
        "float_type": "must be a number", "bool_type": "must be true or false",
        "string_type": "must be a string", "tuple_type": "must be a list",
        "list_type": "must be a list", "finite_number": "must be a finite number",
    }
    if kind in simple:
        hint = example or {"tuple_type": "write it as [a, b] or one `- item` per line",
                           "list_type": "write it as [a, b] or one `- item` per line",
                           "bool_type": "write true or false", "string_type": "quote it",
                           }.get(kind, "write a number such as 1")
        return f"{simple[kind]} (got {_yaml_value(got)})", hint
    bounds = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
              "less_than": "<"}
    if kind in bounds:
        limit = next(iter(ctx.values()), "?")
        return f"must be {bounds[kind]} {limit} (got {_yaml_value(got)})", example
    if kind == "too_long" or kind == "string_too_long":
        return f"is too long ({error['msg'].lower()})", "shorten it"
    if kind == "value_error":
        message = str(ctx.get("error", error["msg"]))
        problem, _, hint = message.partition("; ")
        return problem, hint
    return error["msg"], example
