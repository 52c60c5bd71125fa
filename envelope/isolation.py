"""Which isolation layers this machine can give the shadow, and the jail that uses them.

:func:`probe_isolation` finds out by trying each layer with a trivial command
(kernels, containers and seccomp profiles differ too much to guess); the daemon
probes once at start, reports the result in ``selfmod status`` and refuses to
validate when the policy demands a layer that is missing.

:func:`jail_command` builds the command prefix that puts a shadow inside every
layer that works. With all of them::

    unshare --net --ipc --uts --pid --fork --kill-child --mount-proc --mount
            --propagation private --
      python -I -m envelope.isolation init --tmpdir DIR --readonly --private-root
             --read PATH... --drop-caps SETPRIV --user UID:GID --reap --limits ... --seccomp --
        <the shadow command>

The ``init`` step (:mod:`envelope.jailinit`) runs as PID 1 of the new PID namespace. It
builds a new root holding only the interpreter, selfmod's packages, the read
paths, a private ``/dev`` and ``/tmp`` and the run's tmp dir
(:mod:`envelope.jailroot`), remounts all of it read-only except the tmp dir, and
forks the shadow. The child moves into a user namespace of its own
(:func:`envelope.jailinit.own_user_namespace`), sets the resource limits, installs the seccomp
filter (:mod:`envelope.seccomp`) and executes ``setpriv``, which drops to the
shadow user (:func:`shadow_user`) with no supplementary groups, empties the
capability bounding set and sets no_new_privs. ``init`` then reaps until the
shadow exits and exits with its status (128 + N when killed by signal N). When
PID 1 of a PID namespace exits, the kernel kills everything left in it, which is
what makes the wall-clock deadline final.

When the daemon is not root (the shipped unit), the namespaces are made inside a
user namespace where only the daemon's uid is mapped, and no other uid can be
switched to: the shadow keeps the daemon's uid, so what keeps it from the state
directory, the config and the control socket is that the private root does not
contain them (and is read-only), and the PID namespace hides the daemon.
"""

from __future__ import annotations

import argparse
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import invariants
import snapshots
from envelope import seccomp
from envelope.jailinit import JAIL_FAILED as JAIL_FAILED  # re-exported for the sandbox
from envelope.jailinit import SETPRIV_ARGS, add_init_arguments, run_init
from invariants.job import ShadowLimits

PROBE_TIMEOUT = 10.0
SHADOW_USER = "selfmod-shadow"  # systemd/selfmod-sysusers.conf; nobody (65534) where missing
NOBODY = 65534


@dataclass(frozen=True)
class Isolation:
    """The layers that work here; each was tried, not assumed."""

    network_namespace: bool = False
    pid_namespace: bool = False
    ipc_namespace: bool = False
    mount_namespace: bool = False
    readonly_filesystem: bool = False
    capabilities_dropped: bool = False
    rlimits: bool = False
    audit_hook: bool = False
    private_root: bool = False
    unprivileged_user: bool = False
    seccomp: bool = False

    def as_dict(self) -> dict[str, bool]:
        return asdict(self)

    @property
    def readonly_code(self) -> bool:
        """The code (indeed every mount but the run's tmp dir) is read-only in the jail."""
        return self.mount_namespace and self.readonly_filesystem

    def missing(self, *layers: str) -> list[str]:
        """The names among ``layers`` that are not available."""
        available = self.as_dict()
        return [layer for layer in layers if not available.get(layer, False)]


def _unshare_base() -> list[str] | None:
    unshare = shutil.which("unshare")
    if unshare is None:
        return None
    # Without root, namespaces need a user namespace in which we are root.
    return [unshare] if os.geteuid() == 0 else [unshare, "--user", "--map-root-user"]


def _works(command: Sequence[str], timeout: float = PROBE_TIMEOUT) -> bool:
    try:
        completed = subprocess.run(list(command), stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                   timeout=timeout, check=False, start_new_session=True)
    except (OSError, subprocess.SubprocessError):
        return False
    return completed.returncode == 0


_CAPS_CHECK = ("import sys\n"
               "line = [l for l in open('/proc/self/status') if l.startswith('CapBnd')][0]\n"
               "sys.exit(0 if int(line.split()[1], 16) == 0 else 1)\n")
_READONLY_CHECK = ("import os, sys\n"
                   "tmp, outside = sys.argv[1], sys.argv[2]\n"
                   "open(os.path.join(tmp, 'inside'), 'w').close()\n"
                   "try:\n"
                   "    open(outside, 'w').close()\n"
                   "except OSError:\n"
                   "    sys.exit(0)\n"
                   "sys.exit(1)\n")


def probe_isolation(python: str = sys.executable, tmp_root: Path | None = None) -> Isolation:
    """Try every layer with a trivial command and report which ones work."""
    true = shutil.which("true") or "/bin/true"
    base = _unshare_base()
    network = pid = ipc = mount = readonly = False
    if base is not None:
        network = _works([*base, "--net", "--", true])
        pid = _works([*base, "--pid", "--fork", "--kill-child", "--mount-proc", "--", true])
        ipc = _works([*base, "--ipc", "--uts", "--", true])
        mount = _works([*base, "--mount", "--propagation", "private", "--", true])
        if mount:
            readonly = _probe_readonly(base, python, tmp_root)
    setpriv = shutil.which("setpriv")
    caps = setpriv is not None and _works([setpriv, *SETPRIV_ARGS, "--", python, "-I", "-c",
                                           _CAPS_CHECK])
    rlimits = _works([python, "-I", "-c", "import resource as r; "
                      "r.setrlimit(r.RLIMIT_CORE, (0, 0)); r.setrlimit(r.RLIMIT_CPU, (60, 61))"])
    audit = _works([python, "-I", "-c", "import sys; sys.addaudithook(lambda e, a: None)"])
    found = Isolation(network_namespace=network, pid_namespace=pid, ipc_namespace=ipc,
                      mount_namespace=mount, readonly_filesystem=readonly,
                      capabilities_dropped=caps, rlimits=rlimits, audit_hook=audit)
    if base is not None and mount and readonly:
        private = _probe_private_root(found, python, tmp_root, unprivileged=False)
        unprivileged = private and caps and os.geteuid() == 0 and \
            _probe_private_root(found, python, tmp_root, unprivileged=True)
        found = Isolation(**{**found.as_dict(), "private_root": private,
                             "unprivileged_user": unprivileged})
    if seccomp.available():
        filtered = _works([*jail_command(Isolation(seccomp=True), ".", python), python, "-I",
                           "-c", _SECCOMP_CHECK])
        found = Isolation(**{**found.as_dict(), "seccomp": filtered})
    return found


_SECCOMP_CHECK = ("import socket, sys\n"
                  "status = dict(l.split(':', 1) for l in open('/proc/self/status'))\n"
                  "try:\n"
                  "    socket.socket(socket.AF_UNIX)\n"
                  "except PermissionError:\n"
                  "    sys.exit(0 if status['Seccomp'].strip() == '2' else 1)\n"
                  "sys.exit(1)\n")


_PRIVATE_ROOT_CHECK = ("import os, sys\n"
                       "want_uid = int(sys.argv[1])\n"
                       "open('inside', 'w').close()\n"
                       "assert sorted(os.listdir('/dev')) == ['fd', 'null', 'urandom', 'zero']\n"
                       "assert not os.path.exists(sys.argv[2])\n"
                       "assert want_uid < 0 or os.getuid() == os.geteuid() == want_uid\n")


def _probe_private_root(found: Isolation, python: str, tmp_root: Path | None, *,
                        unprivileged: bool) -> bool:
    """Whether a shadow-like command runs in a new root (and, if asked, as the shadow user)."""
    with tempfile.TemporaryDirectory(prefix="selfmod-probe-", dir=tmp_root) as outer:
        inner = Path(outer, "jail")
        inner.mkdir(mode=0o700)
        hidden = Path(outer, "hidden")
        hidden.touch()
        user = shadow_user() if unprivileged else None
        if user is not None:
            os.chown(inner, *user)
        trial = Isolation(**{**found.as_dict(), "private_root": True,
                             "unprivileged_user": unprivileged})
        command = [*jail_command(trial, str(inner), python), python, "-I", "-c",
                   _PRIVATE_ROOT_CHECK, str(user[0] if user else -1), str(hidden)]
        try:
            completed = subprocess.run(command, stdin=subprocess.DEVNULL,
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                                       timeout=PROBE_TIMEOUT, check=False, cwd=inner,
                                       start_new_session=True)
        except (OSError, subprocess.SubprocessError):
            return False
        return completed.returncode == 0 and (inner / "inside").exists()


def shadow_user() -> tuple[int, int] | None:
    """The uid and gid a shadow drops to: ``selfmod-shadow`` if the host has it, else nobody.

    ``None`` when the daemon is not root: it cannot change its uid, and inside its
    user namespace only its own uid is mapped.
    """
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SHADOW_USER)
    except KeyError:
        return NOBODY, NOBODY
    return entry.pw_uid, entry.pw_gid


def jail_user(isolation: Isolation) -> tuple[int, int] | None:
    """The uid and gid :func:`jail_command` drops to with ``isolation``, or ``None``."""
    if isolation.unprivileged_user and isolation.private_root and \
            isolation.capabilities_dropped and isolation.readonly_code and \
            shutil.which("setpriv") is not None and _unshare_base() is not None:
        return shadow_user()
    return None


def default_read_paths(python: str = sys.executable) -> list[str]:
    """What any shadow reads: the interpreter, its libraries and site-packages, and selfmod.

    Taken from this process (the shadow runs the same interpreter): its import
    path, its prefixes, and the ``invariants`` and ``snapshots`` packages
    themselves (an editable install finds them through a hook, not through
    ``sys.path``; binding them rather than the checkout around them keeps the
    rest of the checkout, a ``.selfmod`` state directory included, out of view).
    """
    paths = {entry for entry in sys.path if os.path.isabs(entry) and os.path.exists(entry)}
    paths |= {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    paths.add(str(Path(os.path.realpath(python)).parent.parent))
    for package in (invariants, snapshots):
        paths.add(str(package.__path__[0]))
    return sorted(paths)


def _probe_readonly(base: list[str], python: str, tmp_root: Path | None) -> bool:
    with tempfile.TemporaryDirectory(prefix="selfmod-probe-", dir=tmp_root) as outer:
        inner = Path(outer, "jail")
        inner.mkdir(mode=0o700)
        outside = Path(outer, "outside")
        command = [*base, "--mount", "--propagation", "private", "--", python, "-I", "-m",
                   "envelope.isolation", "init", "--tmpdir", str(inner), "--readonly", "--",
                   python, "-I", "-c", _READONLY_CHECK, str(inner), str(outside)]
        return _works(command) and not outside.exists() and (inner / "inside").exists()


def jail_command(isolation: Isolation, tmpdir: str, python: str = sys.executable, *,
                 read_paths: Sequence[str] = (), hide_paths: Sequence[str] = (),
                 limits: ShadowLimits | None = None) -> list[str]:
    """The command prefix that runs a command inside every available layer (may be empty).

    With ``private_root``, the command sees only :func:`default_read_paths`,
    ``read_paths`` and ``tmpdir``, minus ``hide_paths`` (covered by an empty
    directory); with ``unprivileged_user`` too (and the
    daemon root), it runs as :func:`shadow_user`, which must own ``tmpdir``.
    ``limits`` are set by the jail on the command before it starts.
    """
    base = _unshare_base()
    flags: list[str] = []
    if base is not None:
        if isolation.network_namespace:
            flags.append("--net")
        if isolation.ipc_namespace:
            flags += ["--ipc", "--uts"]
        if isolation.pid_namespace:
            flags += ["--pid", "--fork", "--kill-child", "--mount-proc"]
        if isolation.mount_namespace and (isolation.readonly_filesystem or
                                          isolation.pid_namespace):
            flags += ["--mount", "--propagation", "private"]
    prefix = [*base, *flags, "--"] if base is not None and flags else []
    init: list[str] = []
    mounted = isolation.mount_namespace and bool(prefix)
    if isolation.readonly_filesystem and mounted:
        init.append("--readonly")
        if isolation.private_root:
            init.append("--private-root")
            for path in sorted({*default_read_paths(python), *read_paths}):
                init += ["--read", path]
            for path in sorted(set(hide_paths)):
                init += ["--hide", path]
    setpriv = shutil.which("setpriv")
    if isolation.capabilities_dropped and setpriv is not None:
        init += ["--drop-caps", setpriv]
        user = jail_user(isolation)
        if user is not None:
            init += ["--user", f"{user[0]}:{user[1]}"]
    if isolation.pid_namespace and prefix:
        init.append("--reap")
    if limits is not None:
        init += ["--limits", *limits.to_argv()]
    if isolation.seccomp:
        init.append("--seccomp")
    if init:
        prefix += [python, "-I", "-m", "envelope.isolation", "init", "--tmpdir", tmpdir,
                   *init, "--"]
    return prefix


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -I -m envelope.isolation")
    sub = parser.add_subparsers(dest="verb", required=True)
    add_init_arguments(sub.add_parser(
        "init", help="set up the jail inside fresh namespaces, then run"))
    sub.add_parser("probe", help="print the layers that work here, as JSON")
    options = parser.parse_args(argv)
    if options.verb == "probe":
        import json

        print(json.dumps(probe_isolation().as_dict(), indent=2))
        return 0
    return run_init(options)


if __name__ == "__main__":
    sys.exit(main())
