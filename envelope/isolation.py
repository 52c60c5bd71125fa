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

The ``init`` step (``main`` below) runs as PID 1 of the new PID namespace. It
builds a new root holding only the interpreter, selfmod's packages, the read
paths, a private ``/dev`` and ``/tmp`` and the run's tmp dir
(:mod:`envelope.jailroot`), remounts all of it read-only except the tmp dir, and
forks the shadow. The child moves into a user namespace of its own
(:func:`own_user_namespace`), sets the resource limits, installs the seccomp
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
import ctypes
import os
import pwd
import re
import resource
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
from envelope.jailroot import enter_private_root
from invariants.job import ShadowLimits

PROBE_TIMEOUT = 10.0
SETPRIV_ARGS = ("--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all",
                "--no-new-privs")
JAIL_FAILED = 125  # exit status of ``init`` when a layer it was asked for could not be set up
SHADOW_USER = "selfmod-shadow"  # systemd/selfmod-sysusers.conf; nobody (65534) where missing
NOBODY = 65534

_OCTAL = re.compile(rb"\\([0-7]{3})")
_MS_RDONLY, _MS_REMOUNT, _MS_BIND = 1, 32, 4096
# statvfs flags that are also mount flags (same values) and must survive a remount.
_KEEP_FLAGS = (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME
               | os.ST_RELATIME | os.ST_SYNCHRONOUS | os.ST_MANDLOCK)


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


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo", "rb") as fh:
        for line in fh:
            fields = line.split(b" ")
            if len(fields) > 4:
                # mountinfo escapes space, tab, newline and backslash as \ooo.
                raw = _OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), fields[4])
                points.append(os.fsdecode(raw))
    return sorted(set(points), key=len)


def make_readonly(tmpdir: str) -> list[str]:
    """Remount every mount read-only except ``tmpdir``; returns what is still writable."""
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p, ctypes.c_ulong,
                           ctypes.c_void_p]
    points = _mount_points()
    for point in points:
        try:
            keep = os.statvfs(point).f_flag & _KEEP_FLAGS
        except OSError:
            continue  # hidden under another mount, or not reachable from here
        # Failures are expected for mounts shadowed by a later one; the check below counts.
        libc.mount(None, os.fsencode(point), None, _MS_REMOUNT | _MS_BIND | _MS_RDONLY | keep,
                   None)
    raw = os.fsencode(tmpdir)
    keep = os.statvfs(tmpdir).f_flag & _KEEP_FLAGS
    if libc.mount(raw, raw, None, _MS_BIND, None) != 0 or \
            libc.mount(None, raw, None, _MS_REMOUNT | _MS_BIND | keep, None) != 0:
        return [f"{tmpdir} (bind: errno {ctypes.get_errno()})"]
    writable = []
    for point in points:
        try:
            if not os.statvfs(point).f_flag & os.ST_RDONLY and point != tmpdir:
                writable.append(point)
        except OSError:
            continue
    return writable


def apply_limits(limits: ShadowLimits) -> None:
    """Set ``limits`` on this process (inherited by what it executes); never raises them."""
    wanted = {
        resource.RLIMIT_CPU: (limits.cpu_seconds, limits.cpu_seconds + 1),
        resource.RLIMIT_AS: (limits.memory_mb << 20,) * 2,
        resource.RLIMIT_FSIZE: (limits.file_size_mb << 20,) * 2,
        resource.RLIMIT_NOFILE: (limits.open_files,) * 2,
        resource.RLIMIT_NPROC: (limits.processes,) * 2,
        resource.RLIMIT_CORE: (0, 0),
    }
    for which, (soft, hard) in wanted.items():
        _, current_hard = resource.getrlimit(which)
        if current_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, current_hard), min(hard, current_hard)
        resource.setrlimit(which, (soft, hard))


_CLONE_NEWUSER, _CLONE_NEWNS = 0x10000000, 0x20000


def own_user_namespace(uid: int, gid: int) -> None:
    """Move this process into a user namespace of its own mapping only root and ``uid``/``gid``.

    Why: RLIMIT_NPROC counts the processes of a uid per user namespace. In the
    host's namespace every shadow (and anything else running as nobody) shares
    one count, so ``processes: 1`` would refuse the second shadow running at the
    same time; in a namespace of its own the shadow counts only itself. Root
    (mapped to itself) is kept so that ``setpriv`` still has the capabilities to
    empty the bounding set and switch to ``uid``; the maps are written by a helper
    process that stays in the parent namespace, where it may map other ids.
    """
    libc = ctypes.CDLL(None, use_errno=True)
    ready_read, ready_write = os.pipe()
    helper = os.fork()
    if helper == 0:
        code = 1
        try:
            os.close(ready_write)
            if os.read(ready_read, 1) == b"u":
                # The jail's /proc is read-only: write through a proc of our own,
                # mounted in a mount namespace of our own that nobody else sees.
                if libc.unshare(_CLONE_NEWNS) != 0 or \
                        libc.mount(b"proc", b"/proc", b"proc", 0, None) != 0:
                    raise OSError(ctypes.get_errno(), "no writable /proc")
                parent = os.getppid()
                for name, inner in (("uid_map", uid), ("gid_map", gid)):
                    with open(f"/proc/{parent}/{name}", "w") as fh:
                        fh.write(f"0 0 1\n{inner} {inner} 1\n")
                code = 0
        except OSError as exc:
            print(f"jail init: user namespace map: {exc}", file=sys.stderr)
        finally:
            os._exit(code)
    os.close(ready_read)
    failed = libc.unshare(_CLONE_NEWUSER) != 0
    error = ctypes.get_errno()
    os.write(ready_write, b"x" if failed else b"u")
    os.close(ready_write)
    _, status = os.waitpid(helper, 0)
    if failed:
        raise OSError(error, f"jail init: no user namespace: {os.strerror(error)}")
    if status != 0:
        raise OSError(0, "jail init: could not map the shadow user in its user namespace")


def _init(options: argparse.Namespace) -> int:
    command = list(options.command)
    if command[:1] == ["--"]:
        command = command[1:]
    if not command:
        print("jail init: no command", file=sys.stderr)
        return JAIL_FAILED
    tmpdir = os.path.realpath(options.tmpdir)
    if options.private_root:
        try:
            enter_private_root(tmpdir, options.read, fresh_proc=options.reap,
                               hide_paths=options.hide)
        except OSError as exc:
            print(f"jail init: no private root: {exc}", file=sys.stderr)
            return JAIL_FAILED
    if options.readonly:
        writable = make_readonly(tmpdir)
        if writable:
            print(f"jail init: still writable: {', '.join(writable[:5])}", file=sys.stderr)
            return JAIL_FAILED
        os.chdir(tmpdir)  # the writable bind is on top of the directory we were in
    if options.drop_caps:
        user: list[str] = []
        if options.user:
            uid, _, gid = options.user.partition(":")
            user = [f"--reuid={uid}", f"--regid={gid}", "--clear-groups"]
        command = [options.drop_caps, *user, *SETPRIV_ARGS, "--", *command]
    limits = ShadowLimits.from_args(options) if options.limits else None

    def start() -> None:
        """User namespace, limits, the filter (which nothing later may need), the command."""
        if options.user:
            uid, _, gid = options.user.partition(":")
            try:
                own_user_namespace(int(uid), int(gid))
            except OSError as exc:
                print(exc.strerror, file=sys.stderr)
                raise
        if limits is not None:
            apply_limits(limits)
        if options.seccomp:
            try:
                seccomp.install_filter()
            except OSError as exc:
                print(f"jail init: no seccomp filter: {exc}", file=sys.stderr)
                raise
        os.execv(command[0], command)

    if not options.reap:
        try:
            start()
        except OSError:
            return JAIL_FAILED
    child = os.fork()
    if child == 0:
        try:
            start()
        finally:
            os._exit(JAIL_FAILED)
    # Only the shadow may hold the pipes: their end of file means it is gone.
    os.closerange(0, 3)
    os.closerange(3, os.sysconf("SC_OPEN_MAX"))
    while True:
        pid, status = os.waitpid(-1, 0)
        if pid == child:
            code = os.waitstatus_to_exitcode(status)
            return code if code >= 0 else 128 - code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -I -m envelope.isolation")
    sub = parser.add_subparsers(dest="verb", required=True)
    init = sub.add_parser("init", help="set up the jail inside fresh namespaces, then run")
    init.add_argument("--tmpdir", required=True)
    init.add_argument("--readonly", action="store_true")
    init.add_argument("--drop-caps", metavar="SETPRIV")
    init.add_argument("--reap", action="store_true")
    init.add_argument("--private-root", action="store_true")
    init.add_argument("--read", action="append", default=[], metavar="PATH")
    init.add_argument("--hide", action="append", default=[], metavar="PATH")
    init.add_argument("--user", metavar="UID:GID")
    init.add_argument("--limits", action="store_true",
                      help="set the resource limits below on the command")
    ShadowLimits.add_arguments(init)
    init.add_argument("--seccomp", action="store_true",
                      help="deny the system calls of envelope.seccomp to the command")
    init.add_argument("command", nargs=argparse.REMAINDER)
    sub.add_parser("probe", help="print the layers that work here, as JSON")
    options = parser.parse_args(argv)
    if options.verb == "probe":
        import json

        print(json.dumps(probe_isolation().as_dict(), indent=2))
        return 0
    return _init(options)


if __name__ == "__main__":
    sys.exit(main())
