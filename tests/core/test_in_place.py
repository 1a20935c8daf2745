"""A step that changes a shared input in place (``rows.sort()``), as a user writes one by mistake.

In a remote run each unit loads its own copy, so the steps after it read the
value as produced; locally they get the same object. Either way, a cache entry
must hold what its step computes from the value its key describes.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pytest

from flowyml_core import Pipeline, step
from tests.core.helpers import outputs_and_cached, write


def sorting_pipeline(name: str, group: str | None = None, pause: float = 0.0) -> Pipeline:
    @step(outputs=["rows"], execution_group=group)
    def make() -> list[int]:
        return [3, 1, 2]

    @step(inputs=["rows"], outputs=["smallest"], execution_group=group)
    def smallest(rows: list[int]) -> int:
        rows.sort()  # the mistake: sorts the shared list
        return rows[0]

    @step(inputs=["rows"], outputs=["kept"], execution_group=group)
    def kept(rows: list[int]) -> list[int]:
        time.sleep(pause)
        return list(rows)

    return Pipeline(name, [make, smallest, kept])


def test_the_steps_after_read_the_value_as_produced_as_in_a_remote_run(
    project: Path, caplog: pytest.LogCaptureFixture
) -> None:
    pipeline = sorting_pipeline("in-place")
    with caplog.at_level(logging.WARNING, logger="flowyml.run"):
        outputs, cached = outputs_and_cached(pipeline)
    assert outputs["smallest"] == 1 and outputs["kept"] == [3, 1, 2]
    assert not any(cached.values())
    warning = "\n".join(r.getMessage() for r in caplog.records)
    assert "step smallest changed its input 'rows' in place" in warning
    assert "as it was produced" in warning and "Return a new value" in warning
    again, cached = outputs_and_cached(pipeline)
    assert again == outputs and all(cached.values())


def test_in_a_group_the_steps_after_are_keyed_by_the_value_they_read(project: Path) -> None:
    """A group's members share one process (remotely too): the later member reads the sorted list.
    Its entry must be keyed by that value, not by the list as produced: on a rerun the sorting
    member is cached, does not run, and the later member reads the list as produced."""
    pipeline = sorting_pipeline("in-place-group", group="all")
    outputs, _ = outputs_and_cached(pipeline)
    assert outputs["kept"] == [1, 2, 3]
    again, cached = outputs_and_cached(pipeline)
    assert cached["make"] and cached["smallest"] and not cached["kept"]
    assert again["kept"] == [3, 1, 2]  # what `kept` computes from what it read this time


def test_with_threads_an_entry_computed_from_a_value_changed_meanwhile_is_dropped(project: Path) -> None:
    """``kept`` starts with the list as produced and reads it after ``smallest`` sorted it: its key
    says the one, its value comes from the other, so it must not be stored."""
    write(project / "stacks.toml", """
        [stacks.threads]
        executor = { flavor = "local", max_workers = 2 }
        cache_store = { flavor = "local", path = ".flowyml/cache" }
    """)
    pipeline = sorting_pipeline("in-place-threads", pause=0.5)
    outputs, _ = outputs_and_cached(pipeline, stack="threads")
    assert outputs["kept"] == [1, 2, 3]
    _, cached = outputs_and_cached(pipeline, stack="threads")
    assert cached["make"] and not cached["kept"]


def test_steps_that_only_read_a_shared_input_are_cached_as_before(project: Path) -> None:
    @step(outputs=["rows"])
    def make() -> list[int]:
        return [3, 1, 2]

    @step(inputs=["rows"], outputs=["low"])
    def low(rows: list[int]) -> int:
        return min(rows)

    @step(inputs=["rows"], outputs=["high"])
    def high(rows: list[int]) -> int:
        return max(rows)

    pipeline = Pipeline("read-only", [make, low, high])
    first, _ = outputs_and_cached(pipeline)
    again, cached = outputs_and_cached(pipeline)
    assert first == again == {"rows": [3, 1, 2], "low": 1, "high": 3} and all(cached.values())
