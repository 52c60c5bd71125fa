"""The jail's view of the file system: a new root that holds only what the shadow needs.

:func:`enter_private_root` runs in the jail's ``init`` (root in a private mount
namespace) and replaces ``/`` the way bubblewrap does:

1. a tmpfs is mounted on ``/tmp`` and made the root with ``pivot_root``, so the
   old root stays reachable under ``/oldroot`` (where ``/oldroot/tmp`` shows the
   host's ``/tmp`` again, the tmpfs having moved away from it);
2. a second tmpfs, ``/newroot``, receives bind mounts of the system directories
   (``/usr``, ``/bin``, ``/lib*``, the loader cache), of each read path the
   caller names (the interpreter, site-packages, the target's code), a private
   ``/dev`` holding only ``null``, ``zero`` and ``urandom``, a fresh ``/proc``,
   an empty ``/tmp``, and the run's tmp dir at its own path;
3. ``pivot_root(".", ".")`` in ``/newroot`` and a lazy unmount drop the old
   root for good.

What is not bound does not exist in the jail: the state directory, the config,
the control socket, ``/etc/shadow``, the host's device nodes and ``/tmp``. The
caller then remounts everything read-only except the run's tmp dir
(:func:`envelope.jailinit.make_readonly`). Every error is an :class:`OSError`
naming the step; ``init`` turns it into its "could not be set up" exit status.
"""

from __future__ import annotations

import ctypes
import os
import platform
from collections.abc import Sequence

# Directories every dynamically linked interpreter needs; those missing here are skipped.
SYSTEM_PATHS = ("/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
                "/etc/ld.so.cache", "/etc/localtime")
DEVICES = ("null", "zero", "urandom")

_MS_NOSUID, _MS_NODEV, _MS_NOEXEC, _MS_BIND, _MS_REC = 2, 4, 8, 4096, 16384
_MNT_DETACH = 2
_PIVOT_ROOT = {"x86_64": 155, "aarch64": 41, "riscv64": 41, "ppc64le": 203, "s390x": 217}


class _Mounter:
    def __init__(self) -> None:
        self.libc = ctypes.CDLL(None, use_errno=True)
        self.libc.mount.argtypes = [ctypes.c_char_p, ctypes.c_char_p, ctypes.c_char_p,
                                    ctypes.c_ulong, ctypes.c_void_p]
        self.libc.umount2.argtypes = [ctypes.c_char_p, ctypes.c_int]
        self.libc.syscall.argtypes = [ctypes.c_long, ctypes.c_char_p, ctypes.c_char_p]

    def _check(self, result: int, what: str) -> None:
        if result != 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"{what}: {os.strerror(errno)}")

    def mount(self, source: str | None, target: str, fstype: str | None, flags: int,
              data: str | None = None) -> None:
        self._check(self.libc.mount(os.fsencode(source) if source else None, os.fsencode(target),
                                    fstype.encode() if fstype else None, flags,
                                    data.encode() if data else None), f"mount {target}")

    def pivot_root(self, new_root: str, put_old: str) -> None:
        number = _PIVOT_ROOT.get(platform.machine())
        if number is None:
            raise OSError(0, f"pivot_root: unknown syscall number on {platform.machine()}")
        self._check(self.libc.syscall(number, os.fsencode(new_root), os.fsencode(put_old)),
                    "pivot_root")

    def detach(self, target: str) -> None:
        self._check(self.libc.umount2(os.fsencode(target), _MNT_DETACH), f"umount {target}")

    def bind(self, source: str, target: str) -> None:
        """Bind ``source`` (under the old root) at ``target``, making the mount point first."""
        if os.path.isdir(source):
            os.makedirs(target, mode=0o755, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if not os.path.exists(target):
                os.close(os.open(target, os.O_CREAT | os.O_WRONLY, 0o644))
        self.mount(source, target, None, _MS_BIND | _MS_REC)


def _within(path: str, roots: Sequence[str]) -> bool:
    return any(path == root or path.startswith(root.rstrip("/") + "/") for root in roots)


def enter_private_root(tmpdir: str, read_paths: Sequence[str], *, fresh_proc: bool,
                       hide_paths: Sequence[str] = ()) -> None:
    """Make a new root of ``read_paths``, the system directories and ``tmpdir``, and enter it.

    ``read_paths`` and ``tmpdir`` are absolute paths of the current root; each
    appears at the same path in the new one (so the command line, the job's
    paths and the working directory stay valid). ``/`` itself is refused: it
    would undo the point of the exercise. Each of ``hide_paths`` that a read path
    brings into view (a state directory inside the application's checkout, say) is
    covered by an empty tmpfs that nobody may enter.
    """
    tmpdir = os.path.realpath(tmpdir)
    wanted = sorted({os.path.normpath(path) for path in read_paths if os.path.isabs(path)})
    if "/" in wanted:
        raise OSError(0, "the jail will not expose the whole root file system (a read path "
                      "is /)")
    if any(_within(path, ("/dev", "/proc")) or path == "/tmp" for path in wanted):
        raise OSError(0, f"the jail makes its own /dev, /proc and /tmp; it will not expose "
                      f"them: {wanted}")
    binds = [path for path in (*SYSTEM_PATHS, *wanted) if os.path.lexists(path)]
    m = _Mounter()
    m.mount("tmpfs", "/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    os.chdir("/tmp")
    os.mkdir("newroot", 0o755)
    os.mkdir("oldroot", 0o755)
    m.pivot_root(".", "oldroot")
    os.chdir("/")
    m.mount("tmpfs", "/newroot", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=1m")
    # First, so that binds below /tmp (a test's code, the run's tmp dir) land inside it.
    os.mkdir("/newroot/tmp", 0o755)
    m.mount("tmpfs", "/newroot/tmp", "tmpfs", _MS_NOSUID | _MS_NODEV, "mode=0755,size=64k")
    bound: list[str] = []
    for path in sorted(binds, key=len):
        source, target = "/oldroot" + path, "/newroot" + path
        if path in SYSTEM_PATHS and os.path.islink(source):
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            os.symlink(os.readlink(source), target)  # /bin -> usr/bin on merged-/usr systems
            continue
        if _within(path, bound):
            continue  # already visible through an enclosing bind
        m.bind(source, target)
        bound.append(path)
    for path in sorted({os.path.normpath(p) for p in hide_paths if os.path.isabs(p)}):
        if _within(path, bound) and os.path.isdir("/newroot" + path) and \
                not _within(tmpdir, [path]):
            m.mount("tmpfs", "/newroot" + path, "tmpfs", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC,
                    "mode=000,size=4k")
    os.makedirs("/newroot/dev", mode=0o755, exist_ok=True)
    m.mount("tmpfs", "/newroot/dev", "tmpfs", _MS_NOSUID | _MS_NOEXEC, "mode=0755,size=64k")
    for device in DEVICES:
        m.bind(f"/oldroot/dev/{device}", f"/newroot/dev/{device}")
    os.symlink("/proc/self/fd", "/newroot/dev/fd")
    os.makedirs("/newroot/proc", mode=0o755, exist_ok=True)
    if fresh_proc:
        m.mount("proc", "/newroot/proc", "proc", _MS_NOSUID | _MS_NODEV | _MS_NOEXEC)
    else:
        m.bind("/oldroot/proc", "/newroot/proc")
    m.bind("/oldroot" + tmpdir, "/newroot" + tmpdir)
    os.chdir("/newroot")
    m.pivot_root(".", ".")
    m.detach(".")
    os.chdir(tmpdir)
