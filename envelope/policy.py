"""The envelope policy: ``config/envelope.yaml`` as typed, validated, frozen objects.

Every section has defaults, so ``version: 1`` alone is a valid policy; the
shipped file spells the defaults out with a comment on each. Validation is
strict: unknown keys, wrong types (``"30"`` for a number, ``yes`` for a list)
and out-of-range values are errors, never coerced. Every error is a
:class:`~envelope.errors.PolicyError` that names the file, the line and column
of the offending YAML node, the key path, and what to change::

    config/envelope.yaml:12:16: acceptance.min_speedup: must be >= 1.0 (got 0.5);
    set a value such as 1.05 (the default)

A loaded :class:`Policy` also carries the ``sha256`` of the file's bytes and its
``source`` path, which the audit log records next to ``version``.
"""

from __future__ import annotations

import difflib
import errno
import fnmatch
import hashlib
import json
import os
import re
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Final, get_args

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_core import ErrorDetails

from envelope.denylist import FORBIDDEN_MODULES, MODULES_STRIPPED
from envelope.errors import PolicyError, PolicyIssue
from invariants import targets
from invariants.job import LIMIT_BOUNDS

MAX_POLICY_BYTES: Final = 1 << 20  # a policy is a page of YAML; more is a mistake
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PREDICATE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _as_tuple(value: object) -> object:
    # YAML gives lists; frozen models want tuples so that nothing inside can change
    return tuple(value) if isinstance(value, list) else value


def _glob(value: str) -> str:
    if not value.strip() or value != value.strip():
        raise ValueError(f"{value!r} is not a target glob; write module:qualname, "
                         "e.g. 'shop.pricing:*', without surrounding spaces")
    if ":" not in value and not any(c in value for c in "*?["):
        raise ValueError(f"{value!r} matches no target; targets are module:qualname, "
                         f"write '{value}:*' for every function of the module")
    return value


def _allowed_module(value: str) -> str:
    if not _DOTTED.match(value):
        raise ValueError(f"{value!r} is not a module name; write a dotted name such as 'math'")
    top = value.partition(".")[0]
    if top in FORBIDDEN_MODULES or top.lstrip("_") in MODULES_STRIPPED:
        raise ValueError(f"module {top!r} is forbidden by the static gate and can never be "
                         "allowed; remove it")
    return value


def _identifier(value: str) -> str:
    if not _IDENTIFIER.match(value):
        raise ValueError(f"{value!r} is not a Python identifier; write a bare name such as "
                         "'print'")
    return value


def _predicate(value: str) -> str:
    if not _PREDICATE.match(value):
        raise ValueError(f"{value!r} is not module:function; write e.g. "
                         "'myapp.checks:totals_are_positive'")
    return value


Globs = Annotated[tuple[Annotated[str, AfterValidator(_glob)], ...], BeforeValidator(_as_tuple)]
Modules = Annotated[tuple[Annotated[str, AfterValidator(_allowed_module)], ...],
                    BeforeValidator(_as_tuple)]
Identifiers = Annotated[tuple[Annotated[str, AfterValidator(_identifier)], ...],
                        BeforeValidator(_as_tuple)]


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, allow_inf_nan=False,
                              use_attribute_docstrings=True)

    @model_validator(mode="before")
    @classmethod
    def _empty_section_means_defaults(cls, data: Any) -> Any:
        # `sandbox:` with every key commented out is null in YAML; it means "defaults"
        if isinstance(data, dict):
            return {key: {} if value is None and _is_section(cls, key) else value
                    for key, value in data.items()}
        return data


def _is_section(model: type[BaseModel], key: object) -> bool:
    field = model.model_fields.get(key) if isinstance(key, str) else None
    return field is not None and isinstance(field.annotation, type) and \
        issubclass(field.annotation, BaseModel)


class Scope(_Section):
    include: Globs = ()
    """Target globs (module:qualname) the daemon may change; empty means the hosted
    app's own top-level package (``shop.app:main`` gives ``shop:*`` and ``shop.*:*``)."""
    exclude: Globs = ()
    """Target globs never changed, even when included."""


class RulesProposer(_Section):
    enabled: bool = True
    """Propose rewrites from the rule catalogue."""


class LlmProposer(_Section):
    enabled: bool = False
    """Ask the configured model server for rewrites."""
    samples: int = Field(default=2, ge=1, le=16)
    """Candidates asked for per request."""
    max_corrections: int = Field(default=2, ge=0, le=10)
    """Rounds of feedback after a rejected candidate."""
    intent: str = Field(default="", max_length=4000)
    """Free text for the model: what matters in this service."""


class Proposers(_Section):
    rules: RulesProposer = RulesProposer()
    llm: LlmProposer = LlmProposer()


DEFAULT_ALLOWED_IMPORTS: Final = (
    "collections", "itertools", "functools", "operator", "math", "heapq", "bisect", "re",
    "string", "statistics", "dataclasses", "typing",
)


class StaticPolicy(_Section):
    allowed_imports: Modules = DEFAULT_ALLOWED_IMPORTS
    """Modules (by top-level name) a candidate may import."""
    forbidden_names: Identifiers = ()
    """Names denied on top of the gate's built-in lists, which a policy cannot shorten."""
    max_growth: float = Field(default=3.0, ge=1.0, le=100.0)
    """Largest candidate as a multiple of the original's AST node count."""


class IsolationRequirements(_Section):
    network_namespace: bool = False
    """Refuse to validate unless the shadow runs without network access."""
    mount_namespace: bool = False
    """Refuse to validate unless the shadow sees the code read-only."""


def _limit(name: str) -> Any:
    """A sandbox limit's field: default and range are the shadow's own (invariants.job)."""
    default, low, high = LIMIT_BOUNDS[name]
    return Field(default=default, ge=low, le=high)


class SandboxPolicy(_Section):
    cpu_seconds: int = _limit("cpu_seconds")
    """CPU time limit of a shadow process (RLIMIT_CPU)."""
    memory_mb: int = _limit("memory_mb")
    """Address-space limit of a shadow process in MiB (RLIMIT_AS)."""
    file_size_mb: int = _limit("file_size_mb")
    """Largest file a shadow process may write, MiB (RLIMIT_FSIZE)."""
    open_files: int = _limit("open_files")
    """Open file descriptors of a shadow process (RLIMIT_NOFILE)."""
    processes: int = _limit("processes")
    """Processes a shadow may have (RLIMIT_NPROC); 1 means it cannot fork."""
    wall_seconds: float = Field(default=60.0, gt=0, le=3600)
    """Wall-clock deadline; the shadow's whole process group is killed after it."""
    output_bytes: int = Field(default=65536, ge=1024)
    """Cap on the shadow's captured stdout and stderr together."""
    result_bytes: int = _limit("result_bytes")
    """Cap on the JSON report the shadow sends back."""
    require: IsolationRequirements = IsolationRequirements()


class Acceptance(_Section):
    min_speedup: float = Field(default=1.05, ge=1.0, le=1000.0)
    """Lower confidence bound of the speedup needed to accept."""
    confidence: float = Field(default=0.95, ge=0.5, lt=1.0)
    """Confidence level of the speedup interval."""
    repeats: int = Field(default=15, ge=3, le=1000)
    """Interleaved timing repeats of original and candidate."""
    min_calls: int = Field(default=5, ge=1)
    """Fewest recorded calls that a candidate can be judged on."""


class Recording(_Section):
    calls: int = Field(default=200, ge=1, le=100_000)
    """Real calls recorded per target."""
    max_record_bytes: int = Field(default=1_000_000, ge=1)
    """Largest single recorded call (arguments and outcome); bigger ones are skipped."""
    max_corpus_bytes: int = Field(default=50_000_000, ge=1)
    """Largest corpus per target."""
    timeout_seconds: float = Field(default=30.0, gt=0, le=3600)
    """Stop recording after this long, with whatever was recorded."""

    @model_validator(mode="after")
    def _corpus_holds_a_record(self) -> Recording:
        if self.max_corpus_bytes < self.max_record_bytes:
            raise ValueError(f"max_corpus_bytes ({self.max_corpus_bytes}) is smaller than "
                             f"max_record_bytes ({self.max_record_bytes}); raise "
                             "max_corpus_bytes or lower max_record_bytes")
        return self


class Canary(_Section):
    calls: int = Field(default=200, ge=1)
    """Live calls watched after a swap."""
    seconds: float = Field(default=10.0, gt=0, le=86400)
    """Longest canary window."""
    max_latency_ratio: float = Field(default=1.5, ge=1.0)
    """Roll back when live latency exceeds the previous version's by this factor."""
    max_error_rate_increase: float = Field(default=0.01, ge=0.0, le=1.0)
    """Roll back when the share of calls raising grows by more than this."""
    compare_sample: float = Field(default=1.0, ge=0.0, le=1.0)
    """Share of live calls also run on the previous version and compared."""


class Budgets(_Section):
    cycles_per_hour: int = Field(default=120, ge=0)
    """Synthesis cycles started per sliding hour; once reached, none starts (and
    selfmod_synthesis_halted is 1) until the oldest leaves the hour. 0 stops synthesis."""
    active_patches: int = Field(default=20, ge=0)
    """Most versions installed at once."""
    parallel_shadows: int = Field(default=1, ge=1, le=64)
    """Shadow processes at once. The daemon runs one cycle at a time and judges candidates
    one after another, so at most one shadow runs, whatever this says."""
    cooldown_seconds: float = Field(default=300.0, ge=0)
    """Pause before a target whose candidate was rejected is tried again."""


class Approval(_Section):
    require_for: Globs = ()
    """Target globs whose accepted versions wait for `selfmod approve ID`."""


class Properties(_Section):
    examples: int = Field(default=50, ge=0, le=10_000)
    """Generated inputs per property check, for every target not marked impure (0: none)."""
    deadline_ms: int = Field(default=200, ge=1, le=60_000)
    """Time limit per generated example; a candidate that overruns it where the original
    does not fails the property check."""


class DeclaredInvariant(_Section):
    target: Annotated[str, AfterValidator(_glob)]
    """Target glob the predicate applies to."""
    predicate: Annotated[str, AfterValidator(_predicate)]
    """module:function called with (args, kwargs, result); true means the invariant holds."""


class Invariants(_Section):
    declared: Annotated[tuple[DeclaredInvariant, ...], BeforeValidator(_as_tuple)] = ()
    """Predicates every candidate's outcomes must satisfy."""
    pure: Globs = ()
    """Targets known to be pure (results depend on arguments only). A note for readers:
    every target not marked impure gets property checks."""
    impure: Globs = ()
    """Targets with side effects: judged on recorded calls only, never generated ones."""


class PolicyDocument(_Section):
    """What a policy file holds: the version and the sections."""

    model_config = ConfigDict(title="selfmod envelope policy")

    version: int = Field(ge=1)
    """Policy version; bump it on every change (the audit log records it with the hash)."""
    scope: Scope = Scope()
    proposers: Proposers = Proposers()
    static: StaticPolicy = StaticPolicy()
    sandbox: SandboxPolicy = SandboxPolicy()
    acceptance: Acceptance = Acceptance()
    recording: Recording = Recording()
    canary: Canary = Canary()
    budgets: Budgets = Budgets()
    approval: Approval = Approval()
    properties: Properties = Properties()
    invariants: Invariants = Invariants()

    def in_scope(self, target: str, default_include: tuple[str, ...] = ()) -> bool:
        """Whether the policy lets the daemon change ``target`` (never a protected module).

        ``default_include`` stands in for an empty ``scope.include``.
        """
        include = self.scope.include or default_include
        return targets.in_scope(target, include, self.scope.exclude)

    def needs_approval(self, target: str) -> bool:
        """Whether an accepted version of ``target`` waits for an operator's approval."""
        return any(fnmatch.fnmatchcase(target, glob) for glob in self.approval.require_for)


class Policy(PolicyDocument):
    """A policy in force: the document plus where it came from and the hash of its bytes."""

    source: str
    sha256: str

    def document(self) -> PolicyDocument:
        """The settings alone, for comparing policies regardless of origin."""
        return PolicyDocument(**{name: getattr(self, name)
                                 for name in PolicyDocument.model_fields})


def policy_json_schema() -> dict[str, Any]:
    """JSON Schema of a policy file, for editors and ``selfmod envelope schema``."""
    schema = PolicyDocument.model_json_schema()
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def _defaults() -> Policy:
    document = PolicyDocument(version=1)
    canonical = json.dumps(document.model_dump(mode="json"), sort_keys=True).encode()
    return Policy(**dict(document), source="<built-in defaults>",
                  sha256=hashlib.sha256(canonical).hexdigest())


DEFAULT_POLICY: Final = _defaults()


# -- loading ------------------------------------------------------------------------------


def load_policy(path: Path) -> Policy:
    """Read and validate the policy at ``path``; every failure is a PolicyError."""
    source = str(path)
    data = _read_safely(path, source)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise PolicyError.single(source, "the file is not valid UTF-8",
                                 "save it as UTF-8 text", line=line, column=column) from exc
    return _parse(text, source, hashlib.sha256(data).hexdigest())


def parse_policy(text: str, source: str) -> Policy:
    """Validate policy ``text``; ``source`` names it in errors (a path, or ``<stdin>``)."""
    return _parse(text, source, hashlib.sha256(text.encode("utf-8")).hexdigest())


def _read_safely(path: Path, source: str) -> bytes:
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
        if info.st_size > MAX_POLICY_BYTES:
            raise PolicyError.single(source, f"is {info.st_size} bytes, more than the "
                                     f"{MAX_POLICY_BYTES} a policy may have",
                                     "check that this is the policy file")
        chunks = []
        remaining = MAX_POLICY_BYTES + 1
        while remaining > 0 and (chunk := os.read(fd, remaining)):
            chunks.append(chunk)
            remaining -= len(chunk)
        if remaining <= 0:  # grew after fstat
            raise PolicyError.single(source, f"is more than the {MAX_POLICY_BYTES} bytes a "
                                     "policy may have", "check that this is the policy file")
        return b"".join(chunks)
    finally:
        os.close(fd)


def _parse(text: str, source: str, sha256: str) -> Policy:
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
            raise _issue_at(source, root, "", "the top level must be a mapping of sections, "
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
    if not isinstance(data, Mapping):  # defensive: a mapping node constructs a dict
        raise PolicyError.single(source, "the top level must be a mapping", line=1, column=1)
    for key in ("source", "sha256"):
        if key in data:
            raise _issue_at(source, _key_node(root, key) or root, key, f"unknown key {key!r}",
                            "it is computed when the file is loaded; remove it")
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        issues = [_issue_for(source, root, error) for error in exc.errors()]
        issues.sort(key=lambda i: (i.line or 0, i.column or 0))
        raise PolicyError(issues) from None
    return Policy(**dict(document), source=source, sha256=sha256)


# -- locating and explaining errors ----------------------------------------------------


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


def _issue_at(source: str, node: yaml.Node, location: str, problem: str,
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
                        raise _issue_at(source, key, str(key.value),
                                        f"duplicate key {key.value!r} (first at line {first})",
                                        "keep one of them")
                    seen[key.value] = key
                stack.append(value)
        elif isinstance(node, yaml.SequenceNode):
            stack.extend(node.value)


def _key_node(node: yaml.Node, key: str) -> yaml.Node | None:
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


def _field(loc: tuple[int | str, ...]) -> tuple[type[BaseModel] | None, FieldInfo | None]:
    """The model holding the last key of ``loc`` and that key's field, where they exist."""
    model: type[BaseModel] | None = PolicyDocument
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


def _issue_for(source: str, root: yaml.Node, error: ErrorDetails) -> PolicyIssue:
    loc = tuple(error["loc"])
    kind = error["type"]
    node, found = _walk(root, loc, key_wanted=kind == "extra_forbidden")
    parent_loc = loc[:-1] if kind in ("extra_forbidden", "missing") else loc
    model, field = _field(loc)
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
