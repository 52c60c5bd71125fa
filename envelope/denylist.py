"""The names a candidate may never reach: builtins, modules and attributes.

Its own module because two readers need it and one of them is read by the
other: the static gate checks candidates against it, and the policy refuses an
``extra_modules`` allowance that would re-open one of these modules.
"""

from __future__ import annotations

from typing import Final

# Builtins that execute code, reach namespaces or the terminal, or end the process.
FORBIDDEN_BUILTINS: Final = frozenset({
    "eval", "exec", "compile", "__import__", "open", "input", "breakpoint", "globals",
    "locals", "vars", "help", "exit", "quit", "memoryview", "setattr", "delattr",
    "copyright", "credits", "license",
    # raising or swallowing these ends or hangs the workload's threads
    "SystemExit", "KeyboardInterrupt", "GeneratorExit", "BaseException",
})

# Modules that reach the OS, the interpreter's internals or global process state.
# Checked as names, as attributes (``typing.sys``) and, with leading underscores
# stripped, as private aliases (``collections._sys``).
FORBIDDEN_MODULES: Final = frozenset({
    "os", "sys", "subprocess", "socket", "ctypes", "importlib", "pickle", "marshal", "gc",
    "threading", "multiprocessing", "signal", "shutil", "pathlib", "io", "builtins",
    "inspect", "types", "code", "codeop", "resource", "pty", "fcntl", "mmap", "asyncio",
    "tempfile", "weakref", "atexit", "faulthandler", "sysconfig", "runpy", "select",
    "selectors", "ssl", "http", "urllib", "ftplib", "smtplib", "telnetlib", "webbrowser",
    "zipimport",
    # not named in the issue, reachable from allowed modules or equally dangerous
    "_thread", "posix", "nt", "_posixsubprocess", "_imp", "_signal", "_socket", "_ctypes",
    "_pickle", "bltns", "contextlib", "warnings", "copyreg", "random", "linecache",
    "tokenize", "logging", "platform", "pdb", "pydoc", "site", "ast", "dis", "concurrent",
    "zipfile", "tarfile", "shelve", "dbm", "sqlite3", "glob", "pkgutil", "tracemalloc",
    "trace", "_frozen_importlib", "_frozen_importlib_external", "_bootstrap",
    "_bootstrap_external", "posixpath", "ntpath", "genericpath", "msvcrt", "winreg",
})
MODULES_STRIPPED: Final = frozenset(name.lstrip("_") for name in FORBIDDEN_MODULES)

# Attribute names of functions that act on the process or evaluate strings.
FORBIDDEN_ATTRIBUTES: Final = frozenset({
    "system", "popen", "fork", "forkpty", "kill", "killpg", "abort", "unlink", "rmdir",
    "rmtree", "chdir", "chmod", "chown", "putenv", "unsetenv", "environ", "getenv",
    "setrecursionlimit", "settrace", "setprofile", "currentframe", "urlopen", "startfile",
    "get_type_hints", "ForwardRef", "_eval_type", "_evaluate", "cell_contents",
    # set or generate attributes named by strings: dunder checks cannot see those names
    "update_wrapper", "wraps", "make_dataclass", "_create_fn", "_set_new_attribute",
    "_getframe", "_caller",
    "execv", "execve", "execvp", "execvpe", "execl", "execle", "execlp", "execlpe",
    "spawnv", "spawnve", "spawnl", "spawnle", "posix_spawn", "posix_spawnp",
})

