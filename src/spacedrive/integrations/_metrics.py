"""Request metrics of one integration: counters and a bounded window of recent latencies."""

from __future__ import annotations

import math
from collections import deque
from typing import Any, Final

__all__ = ["LATENCY_SAMPLES", "RequestMetrics", "percentile"]

LATENCY_SAMPLES: Final = 1024
"""Latencies kept for the percentiles: the most recent ones (memory and ``status()`` stay bounded)."""


def percentile(sorted_values: list[float], fraction: float) -> float | None:
    """The nearest-rank percentile (``fraction`` in 0..1) of already sorted values; ``None`` if empty."""
    if not sorted_values:
        return None
    rank = max(1, math.ceil(fraction * len(sorted_values)))
    return sorted_values[rank - 1]


class RequestMetrics:
    """Counts requests and their outcomes; keeps the latencies of the last ``LATENCY_SAMPLES``.

    ``failures`` are requests that ended with an error (the integration's answer, a timeout, a
    crash); ``cancelled`` ones (the caller gave up) count in neither column.
    """

    def __init__(self, samples: int = LATENCY_SAMPLES) -> None:
        self.total = 0
        self.failures = 0
        self.cancelled = 0
        self._latencies: deque[float] = deque(maxlen=samples)

    def record(self, seconds: float, *, ok: bool) -> None:
        self.total += 1
        if not ok:
            self.failures += 1
        self._latencies.append(seconds)

    def record_cancelled(self) -> None:
        self.total += 1
        self.cancelled += 1

    @property
    def success_rate(self) -> float | None:
        """Answered without error, among those that finished (``None`` before the first)."""
        finished = self.total - self.cancelled
        return None if finished == 0 else (finished - self.failures) / finished

    def snapshot(self) -> dict[str, Any]:
        ordered = sorted(self._latencies)
        p50, p99 = percentile(ordered, 0.50), percentile(ordered, 0.99)
        return {
            "requests": self.total,
            "failures": self.failures,
            "cancelled": self.cancelled,
            "success_rate": self.success_rate,
            "latency_ms": {
                "p50": None if p50 is None else round(p50 * 1000, 3),
                "p99": None if p99 is None else round(p99 * 1000, 3),
                "samples": len(ordered),
            },
        }
