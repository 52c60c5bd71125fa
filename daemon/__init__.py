"""The runtime: the process that hosts a workload and changes its code while it runs.

Owns the lifecycle (start, restore, main loop, shutdown), the sampling
profiler, the recorder, the proposers (:mod:`daemon.synthesis`: rules, llm),
the synthesis cycle, the live swap, the canary and rollback, the ledger that
writes decisions through :mod:`snapshots`, the control socket and the CLI,
metrics, logging and systemd notification.

May import: :mod:`envelope`, :mod:`invariants`, :mod:`snapshots` (it is the top
layer). Nothing else imports it, and it imports no workload: the hosted app,
the bundled demo included, is named only by configuration. The layers are
import-linter contracts in ``pyproject.toml``, checked by ``make lint``.
"""
