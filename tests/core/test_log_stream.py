"""``flowyml_core.log_stream``: the entries every ``stream_logs`` yields, and the follower's loop."""

from __future__ import annotations

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_core.log_stream import end_entry, follow, format_entry, log_entry
from flowyml_core.remote import MAX_TRANSIENT_ERRORS
from flowyml_core.results import ExecutionStatus


class _Flaky(FlowymlError):
    transient = True


class _Service:
    """A run seen through a log service: states in turn, and lines that arrive by polls (some late, some twice)."""

    def __init__(self, states: list[ExecutionStatus], reads: list[list[str] | Exception]) -> None:
        self.states, self.reads = list(states), list(reads)
        self.polls = 0

    def poll(self) -> ExecutionStatus:
        self.polls += 1
        return self.states.pop(0) if len(self.states) > 1 else self.states[0]

    def read(self) -> list[tuple[str, dict]]:
        batch = self.reads.pop(0) if self.reads else []
        if isinstance(batch, Exception):
            raise batch
        return [(line, log_entry(line, unit="u")) for line in batch]


def _follow(service: _Service) -> list[dict]:
    return list(follow("job j", service.poll, service.read, interval=0.001, drain_seconds=0.001))


def test_each_line_once_then_the_late_lines_then_the_end():
    running, done = ExecutionStatus.RUNNING, ExecutionStatus.COMPLETED
    service = _Service([running, running, done], [["a"], ["a", "b"], ["a", "b", "c"], ["a", "b", "c", "late"]])
    entries = _follow(service)
    assert [e["message"] for e in entries] == ["a", "b", "c", "late", "job j finished: completed"]
    assert [e["is_finished"] for e in entries] == [False] * 4 + [True]
    assert entries[-1]["status"] == "completed" and entries[-1]["unit"] is None
    assert service.polls == 3, "the state is not asked again while draining the last lines"


def test_a_transient_error_is_retried_and_a_lasting_one_raised():
    running, failed = ExecutionStatus.RUNNING, ExecutionStatus.FAILED
    entries = _follow(_Service([running, failed], [["a"], _Flaky("throttled"), ["a", "b"], []]))
    assert [e["message"] for e in entries] == ["a", "b", "job j finished: failed"]
    assert entries[-1]["severity"] == "ERROR"

    with pytest.raises(_Flaky, match="throttled"):
        _follow(_Service([running], [_Flaky("throttled")] * MAX_TRANSIENT_ERRORS))
    with pytest.raises(FlowymlError, match="denied"):
        _follow(_Service([running], [FlowymlError("denied")]))  # not transient: at once


def test_the_printed_line_names_the_unit_once():
    assert format_entry(log_entry("fitting", unit="train", severity="WARNING", timestamp="2026-12-03T10:00:00Z")) \
        == "[2026-12-03T10:00:00Z] [WARNING] [train] fitting"
    assert format_entry(end_entry("run r1", ExecutionStatus.COMPLETED)) == "[-] [INFO] run r1 finished: completed"
