"""The checks: what a candidate must do the same as the original, and how much faster.

Owns the shadow worker (:mod:`invariants.shadow`) and its protocol
(:mod:`invariants.job` in, :mod:`invariants.report` out), differential replay of
recorded calls, property checks on generated inputs, declared invariants, the
in-process tripwire, the paired benchmark and the acceptance statistics, and
target resolution (:mod:`invariants.targets`), which the shadow, the policy and
the daemon all need.

May import: :mod:`snapshots` (recorded corpora) and the standard library and
third-party packages. Never :mod:`daemon` or :mod:`envelope`: the shadow runs
in the jail and must load no daemon code.
"""
