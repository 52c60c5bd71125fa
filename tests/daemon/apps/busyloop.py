"""A user's app for end-to-end tests: an endless main loop that does most of the work
itself, and four slow helpers it calls on a small pool of inputs."""

import threading


def checksum(data: bytes) -> int:
    value = 7
    for byte in data:
        value = (value * 31 + byte) % 1_000_003
    return value


def collatz_steps(limit: int) -> int:
    """The most steps any start below ``limit`` takes to reach 1."""
    longest = 0
    for start in range(1, limit):
        n, steps = start, 0
        while n != 1:
            n = 3 * n + 1 if n % 2 else n // 2
            steps += 1
        longest = max(longest, steps)
    return longest


def horner(coefficients: list[int], x: int) -> int:
    value = 0
    for c in coefficients:
        value = (value * x + c) % 1_000_000_007
    return value


def run_lengths(text: str) -> list[tuple[str, int]]:
    runs: list[tuple[str, int]] = []
    for ch in text:
        if runs and runs[-1][0] == ch:
            runs[-1] = (ch, runs[-1][1] + 1)
        else:
            runs.append((ch, 1))
    return runs


POOL = [
    (bytes(range(256)) * (4 + k), 60 + k, list(range(3000 + k)), "aab" * (400 + k))
    for k in range(8)
]


def main(stop: threading.Event) -> None:
    """Serve until stopped: spin on its own work, then call each helper once."""
    state, i = 1, 0
    while not stop.is_set():
        for _ in range(30_000):
            state = (state * 1_103_515_245 + 12_345) & 0x7FFFFFFF
        data, n, coefficients, text = POOL[i % len(POOL)]
        checksum(data)
        collatz_steps(n)
        horner(coefficients, state % 97)
        run_lengths(text)
        i += 1


def never_called(values: list[int]) -> int:
    """In the app's module, never run: a scope naming only it sees no sample."""
    return sum(values)
