"""The hostile corpus: candidates for ``target:total`` that try to hurt the host, one per case.

Each source is a :class:`string.Template`; the test fills in the things an attacker
would aim at: a canary directory (``$canary``), a file outside every jail
(``$outside``), the target module itself (``$target_file``), a TCP and a UDP
listener on loopback (``$port``, ``$udp_port``), the pid and process group of the
test process, which stands in for the daemon (``$test_pid``, ``$test_pgid``), a
decoy process the test owns (``$decoy_pid``), and a ``sleep`` argument unique to
the run (``$sleep``) that marks any process a candidate manages to start.

``stage`` and ``reasons`` say where the real pipeline (static gate, then the
sandboxed shadow, then acceptance) stops the candidate: the gate's rule id at
``static``, the shadow's status at ``shadow``. ``jail`` lists the statuses the
sandbox may report when the candidate is fed to it with the gate bypassed, which
is what shows that the jail holds on its own. Where a candidate's attack could
silently do nothing, it returns a wrong total, so that doing nothing is still a
rejection and never an "ok".
"""

from __future__ import annotations

from dataclasses import dataclass
from string import Template

STATIC, SHADOW = "static", "shadow"
KILLED = frozenset({"limit", "timeout"})  # a bomb ends at a resource limit or the deadline


@dataclass(frozen=True)
class Case:
    """One hostile candidate and where it must be stopped."""

    name: str
    category: str
    stage: str
    reasons: frozenset[str]
    jail: frozenset[str]
    template: str

    def source(self, **values: object) -> str:
        return Template(self.template).substitute({k: str(v) for k, v in values.items()})


def _case(name: str, category: str, stage: str, reasons: str | frozenset[str],
          jail: str | frozenset[str], template: str) -> Case:
    def as_set(value: str | frozenset[str]) -> frozenset[str]:
        return frozenset({value}) if isinstance(value, str) else value

    return Case(name, category, stage, as_set(reasons), as_set(jail), template.lstrip("\n"))


CASES: tuple[Case, ...] = (
    # -- escapes through builtins and dunders ------------------------------------------
    _case("eval_string", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    eval("__import__('os').system('touch $canary/eval')")
    return -1
"""),
    _case("exec_string", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    exec("import os\\nos.system('touch $canary/exec')")
    return -1
"""),
    _case("compile_then_eval", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    code = compile("open('$canary/compile', 'w').write('x')", "<x>", "eval")
    eval(code)
    return -1
"""),
    _case("unicode_homoglyph_eval", "builtins-dunders", STATIC, "forbidden-name", "forbidden",
          # NFKC folds the full-width letters into `eval` when the source is parsed
          """
def total(xs):
    \uff45\uff56\uff41\uff4c("__import__('os').system('touch $canary/homoglyph')")
    return -1
"""),
    _case("subclasses_walk", "builtins-dunders", STATIC, "dunder", "forbidden", """
def total(xs):
    for cls in ().__class__.__base__.__subclasses__():
        if cls.__name__ == "_wrap_close":
            cls.__init__.__globals__["system"]("touch $canary/subclasses")
    return -1
"""),
    _case("function_builtins", "builtins-dunders", STATIC, "dunder", "forbidden", """
def total(xs):
    opener = total.__builtins__["open"]
    opener("$canary/builtins", "w").write("x")
    return -1
"""),
    _case("computed_getattr", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    u = "_" * 2
    found = getattr(total, u + "builtins" + u)
    found["op" + "en"]("$canary/getattr", "w").write("x")
    return -1
"""),
    _case("traceback_frame_walk", "builtins-dunders", STATIC, "dunder", "forbidden", """
def total(xs):
    try:
        raise ValueError
    except ValueError as exc:
        frame = exc.__traceback__.tb_frame
    while frame is not None:
        if "os" in frame.f_globals:
            frame.f_globals["os"].system("touch $canary/frame")
        frame = frame.f_back
    return -1
"""),
    _case("format_string_walk", "builtins-dunders", STATIC, "format-string",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    return "{0.__class__.__mro__}".format(xs)
"""),
    _case("globals_builtins", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    globals()["__builtins__"]["__import__"]("os").system("touch $canary/globals")
    return -1
"""),
    _case("input_blocks", "builtins-dunders", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    return int(input())
"""),
    _case("breakpoint_debugger", "builtins-dunders", STATIC, "forbidden-name",
          frozenset({"forbidden", "mismatch"}), """
def total(xs):
    breakpoint()
    return -1
"""),
    _case("global_rebinding", "builtins-dunders", STATIC, "global", "mismatch", """
def total(xs):
    global total
    total = len
    return -1
"""),
    # -- obfuscated imports ------------------------------------------------------------
    _case("import_os_as", "obfuscated-import", STATIC, "import", "forbidden", """
def total(xs):
    import os as o
    o.system("touch $canary/import_as")
    return -1
"""),
    _case("from_os_import_system", "obfuscated-import", STATIC, "import", "forbidden", """
def total(xs):
    from os import system as run
    run("touch $canary/from_import")
    return -1
"""),
    _case("importlib_joined_name", "obfuscated-import", STATIC, "import", "forbidden", """
def total(xs):
    import importlib
    importlib.import_module("o" + "s").system("touch $canary/importlib")
    return -1
"""),
    _case("dunder_import_joined", "obfuscated-import", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    __import__("".join(["o", "s"])).system("touch $canary/dunder_import")
    return -1
"""),
    _case("typing_sys_modules", "obfuscated-import", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    import typing
    typing.sys.modules["os"].system("touch $canary/typing")
    return -1
"""),
    _case("collections_private_sys", "obfuscated-import", STATIC, "forbidden-name",
          "forbidden", """
def total(xs):
    import collections
    collections._sys.modules["os"].system("touch $canary/collections")
    return -1
"""),
    _case("attrgetter_computed", "obfuscated-import", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    import operator
    import typing
    modules = operator.attrgetter("sy" + "s.modules")(typing)
    modules["os"].system("touch $canary/attrgetter")
    return -1
"""),
    _case("statistics_random_os", "obfuscated-import", STATIC, "forbidden-name",
          "forbidden", """
def total(xs):
    import statistics
    statistics.random._os.system("touch $canary/statistics")
    return -1
"""),
    # -- file writes outside the tmp dir ----------------------------------------------
    _case("open_write_canary", "file-write", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    with open("$canary/open", "w") as fh:
        fh.write("pwned")
    return -1
"""),
    _case("pathlib_write", "file-write", STATIC, "import", "forbidden", """
def total(xs):
    import pathlib
    pathlib.Path("$canary/pathlib").write_text("pwned")
    return -1
"""),
    _case("os_open_create", "file-write", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.close(os.open("$canary/os_open", os.O_CREAT | os.O_WRONLY, 0o644))
    return -1
"""),
    _case("append_to_target_module", "file-write", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    with open("$target_file", "a") as fh:
        fh.write("\\nimport os\\nos.system('touch $canary/persisted')\\n")
    return -1
"""),
    _case("write_outside_tmp", "file-write", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    open("$outside", "w").write("pwned")
    return -1
"""),
    _case("symlink_out_of_tmp", "file-write", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.symlink("$canary", "escape")
    open("escape/symlink", "w").write("pwned")
    return -1
"""),
    _case("shutil_copy_out", "file-write", STATIC, "import", "forbidden", """
def total(xs):
    import shutil
    shutil.copyfile("/etc/hostname", "$canary/copied")
    return -1
"""),
    # -- connections to the loopback listeners ----------------------------------------
    _case("tcp_connect", "network", STATIC, "import", "forbidden", """
def total(xs):
    import socket
    socket.create_connection(("127.0.0.1", $port), 2).sendall(b"pwned")
    return -1
"""),
    _case("tcp_via_dunder_import", "network", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    __import__("socket").create_connection(("127.0.0.1", $port), 2).sendall(b"pwned")
    return -1
"""),
    _case("urllib_get", "network", STATIC, "import", "forbidden", """
def total(xs):
    import urllib.request
    urllib.request.urlopen("http://127.0.0.1:$port/pwned", timeout=2).read()
    return -1
"""),
    _case("http_client_post", "network", STATIC, "import", "forbidden", """
def total(xs):
    import http.client
    http.client.HTTPConnection("127.0.0.1", $port, timeout=2).request("POST", "/", "pwned")
    return -1
"""),
    _case("udp_datagram", "network", STATIC, "import", "forbidden", """
def total(xs):
    import socket
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.sendto(b"pwned", ("127.0.0.1", $udp_port))
    return -1
"""),
    # -- process spawning and fork ----------------------------------------------------
    _case("subprocess_popen", "process-spawn", STATIC, "import", "forbidden", """
def total(xs):
    import subprocess
    subprocess.Popen(["sleep", "$sleep"], start_new_session=True)
    return -1
"""),
    _case("os_system_background", "process-spawn", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.system("setsid sleep $sleep &")
    return -1
"""),
    _case("posix_spawn", "process-spawn", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.posix_spawn("/bin/sleep", ["sleep", "$sleep"], {})
    return -1
"""),
    _case("execv_replaces_shadow", "process-spawn", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.execv("/bin/sleep", ["sleep", "$sleep"])
"""),
    _case("multiprocessing_process", "process-spawn", STATIC, "import", "forbidden", """
def total(xs):
    import multiprocessing
    import time
    multiprocessing.Process(target=time.sleep, args=(300,), daemon=False).start()
    return -1
"""),
    _case("fork_and_detach", "fork", STATIC, "import", "forbidden", """
def total(xs):
    import os
    import time
    if os.fork() == 0:
        os.setsid()
        time.sleep(300)
    return -1
"""),
    # -- fork, thread and fd bombs ----------------------------------------------------
    _case("fork_bomb", "fork-bomb", STATIC, "import", "forbidden", """
def total(xs):
    import os
    while True:
        os.fork()
"""),
    # As the unprivileged shadow user, RLIMIT_NPROC refuses the first thread (the call
    # raises, a mismatch) before the tripwire sees a second thread running.
    _case("thread_bomb", "thread-bomb", STATIC, "import", frozenset({"mismatch", "forbidden"}),
          """
def total(xs):
    import threading
    import time
    while True:
        threading.Thread(target=time.sleep, args=(300,)).start()
"""),
    _case("fd_bomb_open", "fd-bomb", STATIC, "forbidden-name",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    handles = []
    while True:
        handles.append(open("/dev/null"))
"""),
    _case("fd_bomb_pipes", "fd-bomb", STATIC, "import", frozenset({"mismatch", "forbidden"}), """
def total(xs):
    import os
    pipes = []
    while True:
        pipes.append(os.pipe())
"""),
    # -- CPU, memory and C-level bombs (these pass the gate: only the jail stops them) --
    _case("cpu_spin", "cpu-bomb", SHADOW, KILLED, KILLED, """
def total(xs):
    while True:
        pass
"""),
    _case("memory_list", "memory-bomb", SHADOW, "limit", "limit", """
def total(xs):
    return len([0] * (10 ** 10))
"""),
    _case("memory_grow", "memory-bomb", SHADOW, KILLED, KILLED, """
def total(xs):
    blocks = []
    while True:
        blocks.append(bytearray(10 ** 7))
"""),
    _case("power_tower", "c-level", SHADOW, KILLED, KILLED, """
def total(xs):
    return 10 ** 10 ** 8
"""),
    _case("regex_backtracking", "c-level", SHADOW, KILLED, KILLED, """
def total(xs):
    import re
    return len(re.findall("(a+)+$$", "a" * 64 + "b"))
"""),
    _case("factorial_huge", "c-level", SHADOW, KILLED, KILLED, """
def total(xs):
    import math
    return math.factorial(10 ** 9)
"""),
    _case("string_times_huge", "memory-bomb", SHADOW, "limit", "limit", """
def total(xs):
    return len("x" * 10 ** 11)
"""),
    # -- huge output ------------------------------------------------------------------
    _case("print_flood", "huge-output", SHADOW, KILLED, KILLED, """
def total(xs):
    line = "x" * 65536
    while True:
        print(line)
"""),
    _case("stderr_flood", "huge-output", STATIC, "import",
          frozenset({"limit", "timeout", "forbidden"}), """
def total(xs):
    import os
    block = b"y" * 65536
    while True:
        os.write(2, block)
"""),
    # -- ending the process -----------------------------------------------------------
    _case("sys_exit", "exit", STATIC, "import", frozenset({"error", "forbidden"}), """
def total(xs):
    import sys
    sys.exit(0)
"""),
    _case("raise_system_exit", "exit", STATIC, "forbidden-name", "error", """
def total(xs):
    raise SystemExit(0)
"""),
    _case("os_underscore_exit", "exit", STATIC, "import", frozenset({"crashed", "forbidden"}), """
def total(xs):
    import os
    os._exit(0)
"""),
    _case("exit_builtin", "exit", STATIC, "forbidden-name", frozenset({"error", "mismatch"}), """
def total(xs):
    exit(0)
"""),
    _case("keyboard_interrupt", "exit", STATIC, "forbidden-name",
          frozenset({"error", "crashed"}), """
def total(xs):
    raise KeyboardInterrupt
"""),
    # -- signals to the parent, the daemon and its neighbours -------------------------
    _case("kill_parent", "signal-parent", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.kill(os.getppid(), 9)
    return -1
"""),
    _case("kill_daemon_pid", "signal-parent", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.kill($test_pid, 9)
    return -1
"""),
    _case("killpg_daemon_group", "signal-parent", STATIC, "import", "forbidden", """
def total(xs):
    import os
    os.killpg($test_pgid, 15)
    return -1
"""),
    _case("stop_decoy", "signal-parent", STATIC, "forbidden-name", "forbidden", """
def total(xs):
    __import__("os").kill($decoy_pid, 19)
    return -1
"""),
    _case("signal_module_kill", "signal-parent", STATIC, "import", "forbidden", """
def total(xs):
    import signal
    signal.pthread_kill(1, 9)
    return -1
"""),
    # -- recursion bombs --------------------------------------------------------------
    _case("self_recursion", "recursion", SHADOW, "mismatch", "mismatch", """
def total(xs):
    return total(xs) + 1
"""),
    _case("lambda_omega", "recursion", SHADOW, "mismatch", "mismatch", """
def total(xs):
    f = lambda g: g(g)
    return f(f)
"""),
    _case("c_stack_overflow", "recursion", STATIC, "import",
          frozenset({"crashed", "forbidden", "mismatch"}), """
def total(xs):
    import sys
    sys.setrecursionlimit(10 ** 7)
    f = lambda g, n: g(g, n + 1)
    return f(f, 0)
"""),
    # -- returned objects with a malicious __eq__ (and friends) -----------------------
    _case("eq_always_true", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    class Liar:
        def __eq__(self, other):
            return True
    return Liar()
"""),
    _case("eq_int_subclass", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    class Liar(int):
        def __eq__(self, other):
            return True
        __hash__ = int.__hash__
    return Liar(-1)
"""),
    _case("eq_via_type_call", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    return type("Liar", (), {"__eq__": lambda a, b: True})()
"""),
    _case("eq_writes_a_file", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    class Liar:
        def __eq__(self, other):
            open("$canary/eq", "w").write("pwned")
            return True
    return Liar()
"""),
    _case("reduce_runs_a_command", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden"}), """
def total(xs):
    class Payload:
        def __reduce__(self):
            return (__import__("os").system, ("touch $canary/reduce",))
    return Payload()
"""),
    # the finaliser runs in the harness: the shadow reports "forbidden" along with the
    # mismatches, a combination the parent refuses as an invalid report ("error")
    _case("del_kills_the_parent", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden", "crashed", "error"}), """
def total(xs):
    class Bomb:
        def __del__(self):
            __import__("os").kill(__import__("os").getppid(), 9)
    return Bomb()
"""),
    _case("hash_spins", "malicious-eq", STATIC, "dunder",
          frozenset({"mismatch", "forbidden", "limit", "timeout"}), """
def total(xs):
    class Spinner:
        def __hash__(self):
            while True:
                pass
    return {Spinner(): 1}
"""),
    # -- bombs aimed at the gate itself -----------------------------------------------
    _case("parser_nesting_bomb", "gate-bomb", STATIC, "syntax", "error",
          "def total(xs):\n    return " + "(" * 250 + "-1" + ")" * 250 + "\n"),
    _case("size_bomb", "gate-bomb", STATIC, "size", "mismatch",
          "def total(xs):\n    pad = '" + "z" * 30_000 + "'\n    return -1\n"),
)
