"""The safety envelope: what a candidate may be, and the jail it is proven in.

Owns the policy (``envelope.yaml`` to typed, validated values, hot-reloaded by
the watcher), the static gate and its deny lists, the sandbox that runs the
shadow worker inside the isolation layers this host gives, the integrity
monitor of selfmod's own code, and the stoppable thread base that the
envelope's monitors and the daemon's threads share.

May import: :mod:`invariants` (the jail runs :mod:`invariants.shadow`, and the
shadow protocol lives there) and :mod:`snapshots`. Never :mod:`daemon`.
"""
