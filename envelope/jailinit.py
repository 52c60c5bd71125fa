"""The jail's ``init``: what runs inside the fresh namespaces before the shadow does.

Started as ``python -I -m envelope.isolation init ... -- COMMAND`` by the prefix
:func:`envelope.isolation.jail_command` builds (see that module for the whole
sequence). As PID 1 of the jail it builds the private root
(:mod:`envelope.jailroot`), remounts everything read-only but the run's tmp dir
(:func:`make_readonly`), then forks the command, which moves into a user
namespace of its own (:func:`own_user_namespace`), sets its resource limits
(:func:`apply_limits`), installs the seccomp filter (:mod:`envelope.seccomp`) and
executes ``setpriv``; ``init`` reaps until the command exits and exits with its
status (128 + N when killed by signal N). Whatever fails is reported on stderr
as ``jail init: ...`` with exit status :data:`JAIL_FAILED`.
"""

from __future__ import annotations

import argparse
import ctypes
import os
import re
import sys

from envelope import seccomp
from envelope.jailroot import enter_private_root
from invariants.job import ShadowLimits

SETPRIV_ARGS = ("--bounding-set=-all", "--inh-caps=-all", "--ambient-caps=-all",
                "--no-new-privs")
JAIL_FAILED = 125  # exit status of ``init`` when a layer it was asked for could not be set up

_OCTAL = re.compile(rb"\\([0-7]{3})")
_MS_RDONLY, _MS_REMOUNT, _MS_BIND = 1, 32, 4096
# statvfs flags that are also mount flags (same values) and must survive a remount.
_KEEP_FLAGS = (os.ST_NOSUID | os.ST_NODEV | os.ST_NOEXEC | os.ST_NOATIME | os.ST_NODIRATIME
               | os.ST_RELATIME | os.ST_SYNCHRONOUS | os.ST_MANDLOCK)


def add_init_arguments(parser: argparse.ArgumentParser) -> None:
    """The options of ``init`` (written by :func:`envelope.isolation.jail_command`)."""
    parser.add_argument("--tmpdir", required=True)
    parser.add_argument("--readonly", action="store_true")
    parser.add_argument("--drop-caps", metavar="SETPRIV")
    parser.add_argument("--reap", action="store_true")
    parser.add_argument("--private-root", action="store_true")
    parser.add_argument("--read", action="append", default=[], metavar="PATH")
    parser.add_argument("--hide", action="append", default=[], metavar="PATH")
    parser.add_argument("--user", metavar="UID:GID")
    parser.add_argument("--limits", action="store_true",
                      help="set the resource limits below on the command")
    ShadowLimits.add_arguments(parser)
    parser.add_argument("--seccomp", action="store_true",
                      help="deny the system calls of envelope.seccomp to the command")
    parser.add_argument("command", nargs=argparse.REMAINDER)


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
    limits.apply()


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


def run_init(options: argparse.Namespace) -> int:
    """Set up the layers ``options`` name, then run the command in them (``init``'s body)."""
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
