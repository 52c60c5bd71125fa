"""The jail's system call filter: what a shadow may not ask the kernel, through libseccomp.

:func:`install_filter` runs in the jail's ``init``, in the child, right before it
executes the command; the filter is inherited across ``execve`` and can never be
removed. It is a deny list on top of everything else the jail does (the private
root, the shadow user, the namespaces, the limits), aimed at the calls those do
not cover or that widen the kernel's attack surface: creating or using sockets
(a read-only mount does not stop ``connect`` on a path socket), tracing other
processes, new namespaces (an unprivileged user namespace grants capabilities
inside it), mounts, BPF, keyrings, perf events, other processes' memory,
personality changes, kernel modules and kexec, and the terminal ioctls that
inject input. Denied calls fail with ``EPERM``, so Python raises
``PermissionError`` and the shadow reports it like any other failure.

``clone`` is denied only with a namespace flag in its first argument; ``clone3``
passes its flags in memory a filter cannot read, so it fails with ``ENOSYS``
and the C library falls back to ``clone``. System calls of a foreign
architecture (the x32 or i386 entry points on x86-64) kill the process, which is
libseccomp's default for them.

The shadow needs none of these once started: it is one process that reads its
job on stdin and writes its report to an inherited pipe. Bound with ctypes to
``libseccomp.so.2`` (Debian's ``libseccomp2``, present wherever systemd is).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import errno

DENIED = (
    "socket", "socketpair", "connect", "bind", "listen", "accept", "accept4",
    "ptrace", "process_vm_readv", "process_vm_writev", "kcmp", "pidfd_getfd",
    "mount", "umount2", "pivot_root", "chroot", "mount_setattr", "move_mount", "open_tree",
    "fsopen", "fsconfig", "fsmount", "fspick", "unshare", "setns",
    "bpf", "keyctl", "add_key", "request_key", "perf_event_open", "userfaultfd",
    # io_uring performs socket, connect and open on the kernel's side of a ring,
    # where no seccomp filter sees them.
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    "personality", "kexec_load", "kexec_file_load",
    "init_module", "finit_module", "delete_module",
    "open_by_handle_at", "name_to_handle_at", "iopl", "ioperm", "swapon", "swapoff",
    "reboot", "syslog", "acct", "quotactl", "settimeofday", "clock_settime", "adjtimex",
    "clock_adjtime", "vhangup", "uselib", "lookup_dcookie",
)
# clone(2) flags that make a namespace.
NAMESPACE_FLAGS = {"CLONE_NEWTIME": 0x80, "CLONE_NEWNS": 0x20000,
                   "CLONE_NEWCGROUP": 0x02000000, "CLONE_NEWUTS": 0x04000000,
                   "CLONE_NEWIPC": 0x08000000, "CLONE_NEWUSER": 0x10000000,
                   "CLONE_NEWPID": 0x20000000, "CLONE_NEWNET": 0x40000000}
# ioctl requests that act on another process's terminal: push input, switch consoles.
DENIED_IOCTLS = {"TIOCSTI": 0x5412, "TIOCLINUX": 0x541C}

_ACT_ALLOW = 0x7FFF0000
_ACT_ERRNO = 0x00050000
_CMP_EQ, _CMP_MASKED_EQ = 4, 7


class _ArgCmp(ctypes.Structure):
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int),
                ("datum_a", ctypes.c_uint64), ("datum_b", ctypes.c_uint64)]


class SeccompError(OSError):
    """libseccomp is missing, or the kernel refused the filter."""


def _library() -> ctypes.CDLL:
    # The soname first: find_library runs ldconfig in a subprocess, which the jail's
    # init would rather not do inside the new root.
    try:
        lib = ctypes.CDLL("libseccomp.so.2", use_errno=True)
    except OSError:
        try:
            lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so",
                              use_errno=True)
        except OSError as exc:
            raise SeccompError(0, f"libseccomp is not installed ({exc}); on Debian: "
                                  "apt-get install libseccomp2") from exc
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_syscall_resolve_name.restype = ctypes.c_int
    lib.seccomp_rule_add_array.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                           ctypes.c_uint, ctypes.POINTER(_ArgCmp)]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    return lib


def available() -> bool:
    """Whether libseccomp can be loaded here (the kernel's support is probed by running)."""
    try:
        _library()
    except SeccompError:
        return False
    return True


def install_filter() -> None:
    """Deny :data:`DENIED` (and namespace clones, ``clone3``, terminal injection) for good."""
    lib = _library()
    ctx = lib.seccomp_init(_ACT_ALLOW)
    if not ctx:
        raise SeccompError(0, "seccomp_init failed")
    try:
        deny = _ACT_ERRNO | errno.EPERM

        def rule(action: int, name: str, *conditions: _ArgCmp) -> None:
            number = lib.seccomp_syscall_resolve_name(name.encode())
            if number < 0:
                return  # not a system call on this architecture
            array = (_ArgCmp * max(len(conditions), 1))(*conditions)
            result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
            if result < 0:
                raise SeccompError(-result, f"seccomp rule for {name}: "
                                            f"{errno.errorcode.get(-result, result)}")

        for name in DENIED:
            rule(deny, name)
        for flag in NAMESPACE_FLAGS.values():
            rule(deny, "clone", _ArgCmp(0, _CMP_MASKED_EQ, flag, flag))
        rule(_ACT_ERRNO | errno.ENOSYS, "clone3")
        for request in DENIED_IOCTLS.values():
            rule(deny, "ioctl", _ArgCmp(1, _CMP_MASKED_EQ, 0xFFFFFFFF, request))
        result = lib.seccomp_load(ctx)
        if result < 0:
            raise SeccompError(-result, f"seccomp_load: {errno.errorcode.get(-result, result)}")
    finally:
        lib.seccomp_release(ctx)
