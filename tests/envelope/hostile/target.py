"""The function the hostile corpus offers replacements for, called by the test's workload.

Written the slow way on purpose, so that a rewrite has something to win and a
hostile one has a reason to be proposed at all.
"""


def total(xs: list[float]) -> float:
    """The sum of the numbers in ``xs``."""
    s: float = 0
    for x in xs:
        s = s + x
    return s
