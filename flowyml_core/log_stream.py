"""The entries of ``RemoteOrchestrator.stream_logs``, and the poll loop of a follower that reads logs behind a run.

Every orchestrator yields the same entry, so that ``flowyml runs logs
--follow`` (and a GUI reading ``--json``) shows every stack alike:

``timestamp``
    ISO 8601 string, or None when the source gives none.
``severity``
    ``DEFAULT``, ``DEBUG``, ``INFO``, ``WARNING``, ``ERROR``, ``CRITICAL``.
``message``
    The line, without the unit's name (see :func:`format_entry`).
``unit``
    The execution unit (a group name or a step name) whose container wrote the
    line; ``None`` for the run's own lines (the orchestrator's, the end).
``is_finished``
    True on the last entry only, which also has ``status`` (an
    :class:`~flowyml_core.results.ExecutionStatus` value).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any, Callable, Iterator

from flowyml_core.errors import FlowymlError

if TYPE_CHECKING:  # pragma: no cover
    from flowyml_core.results import ExecutionStatus


def log_entry(message: str, *, unit: str | None = None, severity: str = "INFO",
              timestamp: str | None = None) -> dict[str, Any]:
    """One line of a run's logs, as every ``stream_logs`` yields it."""
    return {"timestamp": timestamp, "severity": severity, "message": message, "unit": unit, "is_finished": False}


def end_entry(what: str, status: ExecutionStatus) -> dict[str, Any]:
    """The last entry of a stream: ``<what> finished: <status>``, ``is_finished`` true, with the final ``status``."""
    return {**log_entry(f"{what} finished: {status.value}", severity="ERROR" if status.is_failed else "INFO"),
            "is_finished": True, "status": status.value}


def format_entry(entry: dict[str, Any]) -> str:
    """``[timestamp] [severity] [unit] message``: how the CLI prints an entry."""
    unit = entry.get("unit")
    source = f" [{unit}]" if unit else ""
    return f"[{entry.get('timestamp') or '-'}] [{entry.get('severity') or 'INFO'}]{source} {entry.get('message', '')}"


def follow(what: str, poll: Callable[[], ExecutionStatus], read: Callable[[], list[tuple[str, dict[str, Any]]]], *,
           interval: float, drain_seconds: float) -> Iterator[dict[str, Any]]:
    """Follow a run (``what``: "job <name>", for the messages) whose logs are read behind it from a log service (Cloud Logging, CloudWatch).

    ``poll()`` asks the run's state (and learns its units); ``read()`` returns
    ``(key, entry)`` pairs, oldest first, that may repeat earlier ones: each
    key is yielded once. The state is asked *before* the logs, so the read
    after the run is seen finished holds all it wrote; one more read follows
    after up to ``drain_seconds`` because such services deliver the last lines
    a moment late. A transient error (``FlowymlError.transient``) is retried
    up to :data:`~flowyml_core.remote.MAX_TRANSIENT_ERRORS` times in a row.
    """
    from flowyml_core.remote import count_transient

    seen: set[str] = set()
    transient = 0
    status: ExecutionStatus | None = None
    draining = False
    while True:
        try:
            if not draining:
                status = poll()
            entries = read()
            transient = 0
        except FlowymlError as exc:
            transient = count_transient(exc, transient, what)
            time.sleep(interval)
            continue
        for key, entry in entries:
            if key not in seen:
                seen.add(key)
                yield entry
        assert status is not None
        if status.is_finished:
            if draining:
                yield end_entry(what, status)
                return
            draining = True
            time.sleep(min(interval, drain_seconds))
            continue
        time.sleep(interval)
