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
``source`` path, which the audit log records next to ``version``. Reading the
file and locating errors in its YAML is :mod:`envelope.policy_file`.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, ClassVar, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)

from envelope.denylist import FORBIDDEN_MODULES, MODULES_STRIPPED
from envelope.errors import PolicyError
from envelope.globs import check_glob
from envelope.policy_file import issue_at, issue_for, key_node, load_yaml, read_regular_file
from invariants import targets
from invariants.job import LIMIT_BOUNDS

MAX_POLICY_BYTES: Final = 1 << 20  # a policy is a page of YAML; more is a mistake
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_DOTTED = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$")
_PREDICATE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


def _as_tuple(value: object) -> object:
    # YAML gives lists; frozen models want tuples so that nothing inside can change
    return tuple(value) if isinstance(value, list) else value


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


Globs = Annotated[tuple[Annotated[str, AfterValidator(check_glob)], ...],
                  BeforeValidator(_as_tuple)]
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

    # the isolation layers (envelope.isolation.Isolation's names) each requirement needs
    LAYERS: ClassVar[dict[str, tuple[str, ...]]] = {
        "network_namespace": ("network_namespace",),
        "mount_namespace": ("mount_namespace", "readonly_filesystem"),
    }

    def layers(self) -> set[str]:
        """The isolation layers this policy demands."""
        return {layer for name, layers in self.LAYERS.items() if getattr(self, name)
                for layer in layers}


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
    rollback_excludes: bool = True
    """An operator's rollback also keeps its target out of synthesis (as `selfmod exclude`),
    across restarts, until `selfmod include TARGET`."""


class Properties(_Section):
    examples: int = Field(default=50, ge=0, le=10_000)
    """Generated inputs per property check, for every target not marked impure (0: none)."""
    deadline_ms: int = Field(default=200, ge=1, le=60_000)
    """Time limit per generated example; a candidate that overruns it where the original
    does not fails the property check."""


class DeclaredInvariant(_Section):
    target: Annotated[str, AfterValidator(check_glob)]
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


class Verification(_Section):
    require_full_coverage: bool = True
    """Reject (reason ``unproven``) a candidate with a line or branch that no check ran,
    unless it is the original's own unexercised code, kept unchanged by a rule."""
    coverage_relaxed_for: Globs = ()
    """Target globs where unexercised candidate code is accepted all the same; every
    acceptance this allows is recorded in the audit log with the lines it left unproven."""
    search_seconds: float = Field(default=3.0, ge=0, le=600)
    """Time per candidate for the guided search of inputs that reach unexercised code."""
    symbolic_seconds: float = Field(default=2.0, ge=0, le=600)
    """Time per candidate for the symbolic diff (CrossHair) where the argument types fit;
    0 turns it off. Finding no difference within it is recorded as exactly that."""
    trust_rule_rewrites: bool = True
    """Rule rewrites skip the symbolic diff and the state watch: each rule is a fixed
    transformation, tested for equivalence under its stated precondition, that adds no
    state; both checks cost every candidate that reaches them. Coverage, the input
    search, replay and property checks still apply to rule rewrites."""
    memoise: Globs = ()
    """Target globs whose candidates may keep state between calls (a cache); elsewhere
    a candidate that does is rejected with reason ``stateful``."""

    def coverage_required(self, target: str) -> bool:
        """Whether ``target``'s candidates must have every line and branch exercised."""
        return self.require_full_coverage and not any(
            fnmatch.fnmatchcase(target, glob) for glob in self.coverage_relaxed_for)

    def may_memoise(self, target: str) -> bool:
        return any(fnmatch.fnmatchcase(target, glob) for glob in self.memoise)


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
    verification: Verification = Verification()

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
    data = read_regular_file(path, source, MAX_POLICY_BYTES)
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


def _parse(text: str, source: str, sha256: str) -> Policy:
    root, data = load_yaml(text, source)
    if not isinstance(data, Mapping):  # defensive: a mapping node constructs a dict
        raise PolicyError.single(source, "the top level must be a mapping", line=1, column=1)
    for key in ("source", "sha256"):
        if key in data:
            raise issue_at(source, key_node(root, key) or root, key, f"unknown key {key!r}",
                           "it is computed when the file is loaded; remove it")
    try:
        document = PolicyDocument.model_validate(data)
    except ValidationError as exc:
        issues = [issue_for(source, root, error, PolicyDocument) for error in exc.errors()]
        issues.sort(key=lambda i: (i.line or 0, i.column or 0))
        raise PolicyError(issues) from None
    return Policy(**dict(document), source=source, sha256=sha256)
