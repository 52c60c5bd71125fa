"""What ``selfmod run`` checks before the daemon says it has started.

Each check names the setting at fault and how to change it, as a
:class:`~daemon.errors.StartupError`: one line and exit code 2, never a
traceback. They run before the state directory is opened and before anything
is written, so a refused start leaves nothing behind. The checks that need the
running process (the metrics port is bound by :class:`daemon.lifecycle.Daemon`
before it announces itself) raise the same error from there.
"""

from __future__ import annotations

import errno
import fnmatch
import os
import sys
import types
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

from daemon.config import DaemonConfig
from daemon.errors import StartupError
from daemon.workload import check_app_call, load_app
from envelope.globs import check_glob
from invariants.targets import is_protected


def check_scope(globs: Iterable[str]) -> tuple[str, ...]:
    """``--scope`` globs, each checked by the validator the policy's scope uses."""
    checked = []
    for glob in globs:
        try:
            checked.append(check_glob(glob))
        except ValueError as exc:
            raise StartupError(f"--scope: {exc}") from None
    return tuple(checked)


def check_scope_matches(globs: Iterable[str],
                        modules: Mapping[str, types.ModuleType] | None = None) -> None:
    """Each glob matches a function of a loaded module (call after the app is imported).

    A glob that matches nothing is a typo or names a module the app does not
    import: either way the daemon would run without ever trying anything.
    """
    loaded = dict(sys.modules if modules is None else modules)
    for glob in globs:
        if not any(fnmatch.fnmatchcase(target, glob) for target in loaded_targets(loaded, glob)):
            raise StartupError(
                f"--scope {glob!r} matches no function of the modules loaded after importing "
                "the app (selfmod's own modules never count); check the spelling, or name a "
                "module the app imports, as module:qualname")


def loaded_targets(modules: Mapping[str, types.ModuleType], glob: str = "*") -> Iterator[str]:
    """``module:qualname`` of the functions and methods defined in loaded, changeable modules.

    With a ``glob`` that has a module part, only modules matching it are walked.
    """
    module_glob = glob.partition(":")[0] if ":" in glob else "*"
    for name, module in modules.items():
        if module is None or is_protected(name) or not fnmatch.fnmatchcase(name, module_glob):
            continue
        yield from (f"{name}:{qualname}" for qualname in _functions(module, name))


def _functions(module: types.ModuleType, name: str) -> Iterator[str]:
    for value in list(vars(module).values()):
        if isinstance(value, types.FunctionType) and value.__module__ == name:
            yield value.__qualname__
        elif isinstance(value, type) and value.__module__ == name:
            for member in vars(value).values():
                func = getattr(member, "__func__", member)  # static and class methods
                if isinstance(func, types.FunctionType):
                    yield func.__qualname__


def check_state_dir(path: Path) -> None:
    """The state directory is a directory (or can be made one) this user can write."""
    where = path.resolve()
    if where.exists() and not where.is_dir():
        raise StartupError(f"state directory {where} is a file, not a directory; pass "
                           "--state-dir (or set state_dir) to a directory, which is created "
                           "when missing")
    existing = where
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise StartupError(f"state directory {where} cannot be created: {existing} is a file; "
                           "pass --state-dir (or set state_dir) to another path")
    if not os.access(existing, os.W_OK | os.X_OK):
        uid = os.geteuid()
        stat = existing.stat()
        if os.statvfs(existing).f_flag & os.ST_RDONLY:
            raise StartupError(f"state directory {where} is not writable by uid {uid}: it is on "
                               "a read-only file system; pass --state-dir (or set state_dir) "
                               "to a directory on a writable one")
        what = "" if existing == where else f" (its parent {existing} is not, so it cannot be " \
                                            "created)"
        raise StartupError(
            f"state directory {where} is not writable by uid {uid}{what}; owner uid "
            f"{stat.st_uid}, mode {stat.st_mode & 0o7777:04o}: give uid {uid} write access "
            "(chown), or pass --state-dir (or set state_dir) to a directory it can write")


def check_metrics_port(port: int | None) -> None:
    """``--metrics-port`` is a TCP port, or 0 for a free one."""
    if port is not None and not 0 <= port <= 65535:
        raise StartupError(f"--metrics-port {port} is not a TCP port; give 1-65535, or 0 to "
                           "pick a free one")


def metrics_port_refused(host: str, port: int, error: OSError) -> StartupError:
    """The error for a metrics endpoint that cannot listen (in use, or a privileged port)."""
    in_use = error.errno == errno.EADDRINUSE
    reason = "is in use" if in_use else f"cannot be used ({error.strerror})"
    return StartupError(f"metrics port {port} on {host} {reason}: pass --metrics-port with "
                        "another port, or --metrics-port 0 to pick a free one (metrics.port in "
                        "the config)")


def check_run(config: DaemonConfig, scope: tuple[str, ...]) -> None:
    """Everything ``selfmod run`` can check before starting, in the order a person fixes it.

    Imports the app (so that ``scope`` can be matched against what it loads).
    """
    if not config.workload.app:
        raise StartupError("no workload to host: pass --app MODULE:CALLABLE or set workload.app "
                           "in the config (config/selfmod.yaml hosts the bundled demo)")
    check_state_dir(config.state_dir)
    check_model_client(config)
    app = load_app(config.workload.app)
    check_app_call(config.workload.app, app, config.workload.options)
    check_scope_matches(scope)


def check_model_client(config: DaemonConfig) -> None:
    """The model client the config asks for can be built (its API key file reads)."""
    if config.proposer not in ("llm", "both"):
        return
    from daemon.proposers import make_llm_client
    from daemon.synthesis.llm.errors import LLMConfigError

    try:
        make_llm_client(config)
    except LLMConfigError as exc:
        raise StartupError(str(exc)) from None
