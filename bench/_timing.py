"""Timing shared by the artifact benchmarks: flowyml and its raw baseline, interleaved."""

from __future__ import annotations

import statistics
import time
from typing import Callable

Timing = tuple[float, float]  # (best, median) seconds


def compare(ours: Callable[[], object], raw: Callable[[], object], repeat: int,
            before_ours: Callable[[], object] | None = None,
            before_raw: Callable[[], object] | None = None) -> tuple[Timing, Timing]:
    """(best, median) of ``ours`` and of ``raw`` over ``repeat`` rounds each.

    The two alternate (ours-raw, then raw-ours, ...) so that drift on a shared
    machine (page cache, CPU frequency, a neighbour's load) hits both alike
    instead of whichever ran second. ``before_*`` runs untimed before each call.
    """
    times: dict[str, list[float]] = {"ours": [], "raw": []}
    cases = {"ours": (ours, before_ours), "raw": (raw, before_raw)}
    for i in range(repeat):
        for name in ("ours", "raw") if i % 2 == 0 else ("raw", "ours"):
            func, before = cases[name]
            if before is not None:
                before()
            start = time.perf_counter()
            func()
            times[name].append(time.perf_counter() - start)
    return _summary(times["ours"]), _summary(times["raw"])


def timed(func: Callable[[], object], repeat: int) -> Timing:
    """(best, median) seconds of ``func`` alone (for reference rows)."""
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return _summary(times)


def _summary(times: list[float]) -> Timing:
    return min(times), statistics.median(times)
