"""``flowyml runs list`` and ``flowyml runs show``: the project's run history (see ``flowyml_core.history``)."""

from __future__ import annotations

import argparse
import logging
import time
from typing import Any

from flowyml_core.cli.common import out

logger = logging.getLogger("flowyml.history")


def cmd_runs_list(args: argparse.Namespace) -> int:
    from flowyml_core.errors import FlowymlError
    from flowyml_core.history import list_runs, runs_dir

    if args.limit < 0:
        raise FlowymlError(f"--limit must be 0 (all runs) or more, not {args.limit}")
    if args.status is not None:
        from flowyml_core.results import ExecutionStatus

        # A misspelt status matched no run, which read as "no such runs" rather than as a typo.
        statuses = [s.value for s in ExecutionStatus]
        if args.status not in statuses:
            raise FlowymlError(f"--status {args.status!r} is not a run status; "
                               f"use one of: {', '.join(statuses)}")
    directory = project_dir()
    entries = list_runs(directory, stack=args.stack, pipeline=args.pipeline, status=args.status,
                        limit=args.limit or None)
    data = {"history": str(runs_dir(directory)), "limit": args.limit, "runs": [_summary(e) for e in entries]}
    out(data, args.json, lambda: _table(entries, args))
    return 0


def cmd_runs_show(args: argparse.Namespace) -> int:
    from flowyml_core.history import find_run

    entry = find_run(args.run_id, project_dir())
    note = refresh(entry)
    data = {**_summary(entry), "params": entry.params, "source": entry.source,
            "steps": {name: step.to_json() for name, step in entry.steps.items()}}
    if note:
        data["note"] = note
    out(data, args.json, lambda: _details(entry) + (f"\nnote:     {note}" if note else ""))
    return 0


def refresh(entry: Any) -> str | None:
    """Bring a remote run recorded as unfinished up to date by asking its orchestrator.

    A run submitted with ``--no-wait`` (or whose client went away) stays
    ``running`` in the history until someone asks; ``runs show`` and ``runs
    status`` ask, and write the end back. Returns a note for the reader when
    the orchestrator could not be asked (the recorded status is shown then).
    """
    if entry.job_id is None or entry.finished:
        return None
    from flowyml_core.cli.runs import remote_stack
    from flowyml_core.errors import FlowymlError
    from flowyml_core.stacks import printable, scrub

    try:
        stack = remote_stack(entry.stack)
    except FlowymlError as exc:
        return f"status as recorded: stack {printable(entry.stack)} cannot be asked ({exc})"
    try:
        status = stack.executor.get_run_status(entry.job_id)
    except Exception as exc:  # the orchestrator's own error (network, credentials): shown, not raised
        return scrub(f"status as recorded: asking stack {printable(entry.stack)} failed: {type(exc).__name__}: {exc}",
                     stack.secrets)
    write_back(entry, status, stack)
    return None


def write_back(entry: Any, status: Any, stack: Any) -> None:
    """Record the end of a remote run seen by asking its orchestrator, with its steps read from their records.

    The client that submitted the run may have gone away (``--no-wait``), so
    the steps it listed as pending are read here from the records the units
    left in the stack's artifact store, as that client would have.
    """
    if entry.finished or status.value == entry.status:
        return
    entry.status = status.value
    if status.is_finished:
        from flowyml_core.history import RunJournal

        from flowyml_core.history import flush

        entry.ended_at = time.time()  # when it was seen to end: the orchestrator's own time is not asked for
        RunJournal.resume(entry, stack.secrets).record_status(status.value, _pending_steps(entry, stack, status))
        # The journal fills ``entry`` on the history's writer thread; the caller shows ``entry`` next, so
        # wait for it (else `runs show` printed a completed run whose steps were still pending).
        flush()


def _pending_steps(entry: Any, stack: Any, status: Any) -> dict[str, Any]:
    """The results of the steps still pending in ``entry``, from their records; a step without one did not run.

    Why it did not run is said from how the run ended: a run that was stopped
    or failed starts nothing more, which is the reason the user looks for.
    """
    from flowyml_core.errors import FlowymlError
    from flowyml_core.records import RunRecords
    from flowyml_core.results import ExecutionResult

    pending = [name for name, step in entry.steps.items() if step.status == "pending"]
    if not pending or stack.artifact_store is None:
        return {}
    records = RunRecords(stack.artifact_store, entry.run_id, entry.project)
    why = {"stopped": "not run: the run was stopped first", "cancelled": "not run: the run was cancelled first",
           "failed": "not run: the run failed first"}.get(status.value, "not run: it left no record")
    results = {}
    for name in pending:
        try:
            record = records.read(name)
        except FlowymlError as exc:  # a damaged record, an unreachable store: the step stays pending
            logger.warning("run %s: the record of step %s cannot be read (%s)", entry.run_id, name, exc)
            continue
        results[name] = record.to_result() if record is not None else ExecutionResult(
            step_name=name, success=True, skipped=True, error=why)
    return results


def project_dir() -> Any:
    from flowyml_core.stacks import StackRegistry

    return StackRegistry.load(missing_ok=True).project_dir


def _summary(entry: Any) -> dict[str, Any]:
    return {
        "run_id": entry.run_id,
        "pipeline": entry.pipeline,
        "project": entry.project,
        "stack": entry.stack,
        "executor": entry.executor,
        "status": entry.status,
        "started_at": _iso(entry.started_at),
        "ended_at": _iso(entry.ended_at),
        "duration": entry.duration,
        "job_id": entry.job_id,
        "step_counts": entry.step_counts(),
    }


def _iso(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    micros = int(round((epoch % 1) * 1_000_000)) % 1_000_000
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(int(epoch))) + f".{micros:06d}Z"


def _local(epoch: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(epoch))


def _seconds(value: float | None) -> str:
    from flowyml_core.display import format_duration

    return "-" if value is None else format_duration(value)


def _counts(entry: Any) -> str:
    counts = entry.step_counts()
    words = {"completed": "ran", "cached": "cached", "skipped": "skipped", "failed": "failed"}
    parts = [f"{counts[s]} {words.get(s, s)}" for s in ("completed", "cached", "skipped", "failed") if counts.get(s)]
    parts += [f"{n} {s}" for s, n in counts.items() if s not in words]
    return ", ".join(parts) or "-"


def _table(entries: list[Any], args: argparse.Namespace) -> str:
    from flowyml_core.stacks import printable

    if not entries:
        filters = [f"--{k} {printable(str(v))}" for k in ("stack", "pipeline", "status") if (v := getattr(args, k))]
        return "no runs recorded in this project" + (f" matching {' '.join(filters)}" if filters else "") + \
            " (each run of `flowyml run` or Pipeline.run() is recorded in .flowyml/runs/)"
    rows = [("RUN ID", "PIPELINE", "STACK", "STATUS", "STARTED", "DURATION", "STEPS")]
    rows += [(printable(e.run_id), printable(e.pipeline), printable(e.stack), e.status, _local(e.started_at),
              _seconds(e.duration), _counts(e)) for e in entries]
    return _columns(rows)


def _columns(rows: list[tuple[str, ...]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in rows)


def _details(entry: Any) -> str:
    from flowyml_core.stacks import printable

    lines = [
        f"run {printable(entry.run_id)}: pipeline {printable(entry.pipeline)} on stack {printable(entry.stack)}"
        + (f" (executor {printable(entry.executor)})" if entry.executor else ""),
        f"status:   {entry.status}",
        f"started:  {_local(entry.started_at)}"
        + (f", took {_seconds(entry.duration)}" if entry.duration is not None else ", not ended"),
    ]
    if entry.job_id:
        lines.append(f"job:      {printable(entry.job_id)}")
    if entry.source:
        lines.append(f"source:   {printable(entry.source)}")
    if entry.params:
        lines.append("params:   " + " ".join(f"{printable(k)}={printable(str(v))}" for k, v in entry.params.items()))
    if not entry.steps:
        note = "no step results yet (the run goes on remotely)" if not entry.finished else "no step ran"
        lines.append(f"steps:    {note}")
        return "\n".join(lines)
    lines.append("steps:")
    rows = []
    for name, step in entry.steps.items():
        where = step.error.strip().splitlines()[-1] if step.error else (step.artifact_uri or "")
        rows.append(("  " + printable(name), step.status, _seconds(step.duration), printable(where)))
    lines.append(_columns(rows))
    return "\n".join(lines)
