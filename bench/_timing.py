"""Timing shared by the artifact benchmarks: best and median of repeated runs."""

from __future__ import annotations

import statistics
import time
from typing import Callable


def timed(func: Callable[[], object], repeat: int, before: Callable[[], object] | None = None) -> tuple[float, float]:
    """(best, median) seconds of ``func`` over ``repeat`` runs; ``before`` runs untimed first each time."""
    times = []
    for _ in range(repeat):
        if before is not None:
            before()
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return min(times), statistics.median(times)
