"""A user's app for end-to-end tests: an inventory service with a slow reconciliation step."""

import threading


def missing_skus(expected: list[str], seen: list[str]) -> list[str]:
    """SKUs in ``expected`` that were not seen, in order, without repeats."""
    missing = []
    for sku in expected:
        if sku not in seen:
            missing.append(sku)
    result = []
    for sku in missing:
        if sku not in result:
            result.append(sku)
    return result


def batch(n):
    expected = [f"sku-{(i * 7) % 1500}" for i in range(n)]
    seen = [f"sku-{(i * 11) % 1500}" for i in range(n // 2)]
    return expected, seen


def main(stop: threading.Event) -> None:
    """Serve until stopped, reconciling a few distinct batches over and over."""
    batches = [batch(1200 + 100 * k) for k in range(8)]
    i = 0
    while not stop.is_set():
        expected, seen = batches[i % len(batches)]
        missing_skus(expected, seen)
        i += 1
