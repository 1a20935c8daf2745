"""Run history: what ran, where, and how it ended, for ``flowyml runs list|show``.

Every run started from this machine through ``Pipeline.run`` or ``flowyml
run`` leaves one small JSON file in the project's ``.flowyml/runs/`` (next to
``.flowyml/active-stack``), whatever the stack: a local run is written when it
ends, a remote run when it is submitted (with its job id, status ``running``)
and again when the client sees it end. The history is the client's: a step
runner inside a container writes none, and a run another machine submitted is
not in it (its records are in the stack's artifact store; see ``records.py``).

File names start with the run's UTC start time (``20261203T081930.123456Z-<run
id>.json``) so that the newest runs are found from a directory listing alone,
without reading every file. Writes are atomic (temporary file, then rename)
and never fail a run: a history that cannot be written is logged once and the
run goes on. Step errors and parameters are scrubbed of the stack's secrets
before they are written. Unreadable files are skipped with a warning.
"""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Iterator, Mapping

import attrs

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.history")

HISTORY_FORMAT = "flowyml-run/1"
#: Where a project keeps its run history, relative to the project directory.
RUNS_DIR = Path(".flowyml") / "runs"
#: A failed step's error is kept up to this length (its end, which explains it best).
MAX_ERROR = 4000
#: A parameter value is kept as JSON when it is a JSON scalar; otherwise its repr, cut to this length.
MAX_PARAM_REPR = 200

#: Step statuses as the history records them.
STEP_STATUSES = ("completed", "cached", "skipped", "failed")


class RunNotFoundError(FlowymlError):
    """No run (or more than one) matches an id given on the command line."""


@attrs.define
class StepEntry:
    """How one step of a run ended."""

    status: str
    duration: float | None = None
    cached: bool = False
    retries: int = 0
    artifact_uri: str | None = None
    error: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"status": self.status}
        if self.duration is not None:
            data["duration"] = round(self.duration, 6)
        if self.cached:
            data["cached"] = True
        if self.retries:
            data["retries"] = self.retries
        if self.artifact_uri:
            data["artifact_uri"] = self.artifact_uri
        if self.error:
            data["error"] = self.error
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StepEntry:
        return cls(
            status=str(data.get("status", "unknown")),
            duration=_float_or_none(data.get("duration")),
            cached=bool(data.get("cached", False)),
            retries=int(data.get("retries", 0) or 0),
            artifact_uri=data.get("artifact_uri"),
            error=data.get("error"),
        )


@attrs.define
class RunEntry:
    """One run of the history. ``status`` is an :class:`~flowyml_core.results.ExecutionStatus` value."""

    run_id: str
    pipeline: str
    stack: str
    status: str
    started_at: float
    ended_at: float | None = None
    project: str = "default"
    executor: str | None = None
    job_id: str | None = None
    source: str | None = None
    params: dict[str, Any] = attrs.field(factory=dict)
    steps: dict[str, StepEntry] = attrs.field(factory=dict)
    #: The file the entry was read from (not written).
    path: Path | None = attrs.field(default=None, eq=False)

    @property
    def duration(self) -> float | None:
        return None if self.ended_at is None else max(0.0, self.ended_at - self.started_at)

    @property
    def finished(self) -> bool:
        from flowyml_core.results import ExecutionStatus

        try:
            return ExecutionStatus(self.status).is_finished
        except ValueError:
            return False

    def step_counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for step in self.steps.values():
            counts[step.status] = counts.get(step.status, 0) + 1
        return counts

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "format": HISTORY_FORMAT,
            "run_id": self.run_id,
            "pipeline": self.pipeline,
            "project": self.project,
            "stack": self.stack,
            "executor": self.executor,
            "status": self.status,
            "started_at": self.started_at,
            "ended_at": self.ended_at,
            "duration": None if self.duration is None else round(self.duration, 6),
            "job_id": self.job_id,
            "source": self.source,
            "params": self.params,
            "steps": {name: step.to_json() for name, step in self.steps.items()},
        }
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any], path: Path | None = None) -> RunEntry:
        if data.get("format") != HISTORY_FORMAT:
            raise ValueError(f"not a {HISTORY_FORMAT} document (format {data.get('format')!r})")
        steps = data.get("steps") or {}
        return cls(
            run_id=str(data["run_id"]),
            pipeline=str(data.get("pipeline", "")),
            stack=str(data.get("stack", "")),
            status=str(data.get("status", "unknown")),
            started_at=float(data["started_at"]),
            ended_at=_float_or_none(data.get("ended_at")),
            project=str(data.get("project", "default")),
            executor=data.get("executor"),
            job_id=data.get("job_id"),
            source=data.get("source"),
            params=dict(data.get("params") or {}),
            steps={str(name): StepEntry.from_json(step) for name, step in steps.items()},
            path=path,
        )


def _float_or_none(value: Any) -> float | None:
    return None if value is None else float(value)


def runs_dir(project_dir: str | os.PathLike[str]) -> Path:
    return Path(project_dir) / RUNS_DIR


def _stamp(epoch: float) -> str:
    seconds = int(epoch)
    micros = int(round((epoch - seconds) * 1_000_000))
    if micros == 1_000_000:
        seconds, micros = seconds + 1, 0
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(seconds)) + f".{micros:06d}Z"


class RunJournal:
    """Writes one run's entry: at submission (remote runs) and when the run's end is known.

    Built by ``run_on_stack`` before the run starts; costs no I/O until
    :meth:`record`. Knows the stack's secrets, which it scrubs from every
    error and parameter it writes, and never raises: a history that cannot be
    written must not fail the run it describes.
    """

    _warned: set[str] = set()

    def __init__(self, entry: RunEntry, path: Path, secrets: list[str] | None = None) -> None:
        self.entry = entry
        self.path = path
        self.directory = path.parent
        self._secrets = list(secrets or ())

    @classmethod
    def begin(
        cls,
        project_dir: str | os.PathLike[str],
        *,
        run_id: str,
        pipeline: str,
        project: str,
        stack: str,
        executor: str | None,
        source: str | None,
        params: Mapping[str, Any],
        secrets: list[str],
    ) -> RunJournal:
        """The journal of a run starting now (nothing is written yet)."""
        entry = RunEntry(run_id=run_id, pipeline=pipeline, stack=stack, status="running", started_at=time.time(),
                         project=project, executor=executor, source=source)
        path = runs_dir(project_dir) / f"{_stamp(entry.started_at)}-{_safe_name(run_id)}.json"
        journal = cls(entry, path, secrets)
        entry.params = {str(k): journal._param(v) for k, v in params.items()}
        return journal

    @classmethod
    def resume(cls, entry: RunEntry, secrets: list[str] | None = None) -> RunJournal:
        """The journal of a run read from the history, to record what became of it."""
        if entry.path is None:
            raise ValueError("resume() takes an entry read from the history (its path is unknown)")
        return cls(entry, entry.path, secrets)

    def record(self, result: Any) -> None:
        """Write the entry for a :class:`~flowyml_core.results.RunResult` (final, or a submission)."""
        try:
            self._update(result)
            self._write()
        except Exception as exc:  # the history is a convenience: the run's own outcome stands
            self._warn_once(exc)

    def record_status(self, status: str) -> None:
        """Write a new status alone (a remote run seen to end by ``flowyml runs status``)."""
        self.entry.status = status
        if self.entry.finished and self.entry.ended_at is None:
            self.entry.ended_at = time.time()
        try:
            self._write()
        except Exception as exc:
            self._warn_once(exc)

    def _update(self, result: Any) -> None:
        entry = self.entry
        status = getattr(result.status, "value", result.status)
        entry.status = str(status)
        submission = getattr(result, "submission", None)
        if submission is not None:
            entry.job_id = submission.job_id
        if entry.finished:
            entry.ended_at = time.time()
        for name, step in result.steps.items():
            entry.steps[name] = self._step(step)

    def _step(self, step: Any) -> StepEntry:
        if not step.success:
            status = "failed"
        elif step.skipped:
            status = "skipped"
        elif step.cached:
            status = "cached"
        else:
            status = "completed"
        error = step.error
        if error:
            error = self._scrub(error)[-MAX_ERROR:]
        return StepEntry(
            status=status, duration=step.duration_seconds, cached=bool(step.cached),
            retries=int(step.retries or 0), artifact_uri=step.artifact_uri and self._scrub(step.artifact_uri),
            error=error,
        )

    def _param(self, value: Any) -> Any:
        if value is None or isinstance(value, (bool, int, float)):
            return value
        text = value if isinstance(value, str) else repr(value)[:MAX_PARAM_REPR]
        return self._scrub(text)

    def _scrub(self, text: str) -> str:
        if not self._secrets:
            return text
        from flowyml_core.stacks import scrub

        return scrub(text, self._secrets)

    def _write(self) -> None:
        data = json.dumps(self.entry.to_json(), separators=(",", ":"), default=str)
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        except FileNotFoundError:
            self.directory.mkdir(parents=True, exist_ok=True)
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        try:
            os.write(fd, data.encode("utf-8"))
        finally:
            os.close(fd)
        os.replace(tmp, self.path)

    def _warn_once(self, exc: Exception) -> None:
        key = str(self.directory)
        if key not in RunJournal._warned:
            RunJournal._warned.add(key)
            logger.warning("run history: could not write to %s (%s: %s); runs go on without it",
                           self.directory, type(exc).__name__, self._scrub(str(exc)))


def _safe_name(run_id: str) -> str:
    """A run id as a file name: ids are the user's (``--run-id``), so path separators are replaced."""
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:200] or "_"


# -- reading --------------------------------------------------------------------------
def _files_newest_first(directory: Path) -> list[str]:
    try:
        names = [e.name for e in os.scandir(directory) if e.name.endswith(".json") and not e.name.startswith(".")]
    except FileNotFoundError:
        return []
    names.sort(reverse=True)
    return names


def _read(path: Path) -> RunEntry | None:
    try:
        with open(path, "rb") as fh:
            return RunEntry.from_json(json.loads(fh.read()), path)
    except FileNotFoundError:
        return None  # removed since the listing
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        logger.warning("run history: skipped %s: %s: %s", path, type(exc).__name__, exc)
        return None


def iter_runs(project_dir: str | os.PathLike[str]) -> Iterator[RunEntry]:
    """The project's runs, newest first; each file is read only when reached."""
    directory = runs_dir(project_dir)
    for name in _files_newest_first(directory):
        entry = _read(directory / name)
        if entry is not None:
            yield entry


def list_runs(
    project_dir: str | os.PathLike[str],
    *,
    stack: str | None = None,
    pipeline: str | None = None,
    status: str | None = None,
    limit: int | None = None,
) -> list[RunEntry]:
    """The newest runs matching every filter given (``limit`` None or 0: all of them)."""
    found: list[RunEntry] = []
    for entry in iter_runs(project_dir):
        if stack is not None and entry.stack != stack:
            continue
        if pipeline is not None and entry.pipeline != pipeline:
            continue
        if status is not None and entry.status != status:
            continue
        found.append(entry)
        if limit and len(found) >= limit:
            break
    return found


def find_run(run_id: str, project_dir: str | os.PathLike[str] | None = None) -> RunEntry:
    """The run whose id is ``run_id``, or the one run whose id starts with it.

    A run id used twice (``--run-id``) names its newest run.
    """
    if project_dir is None:
        from flowyml_core.stacks import StackRegistry

        project_dir = StackRegistry.load(missing_ok=True).project_dir
    directory = runs_dir(project_dir)
    names = _files_newest_first(directory)
    wanted = _safe_name(run_id)
    exact = [n for n in names if _id_part(n) == wanted]
    candidates = exact or [n for n in names if _id_part(n).startswith(wanted)]
    if not run_id or not candidates:
        hint = "list them with: flowyml runs list" if names else "no run has been recorded in this project yet"
        raise RunNotFoundError(f"no run {run_id!r} in {directory}; {hint}")
    ids = sorted({_id_part(n) for n in candidates})
    if len(ids) > 1:
        shown = ", ".join(ids[:10]) + (", ..." if len(ids) > 10 else "")
        raise RunNotFoundError(f"run id {run_id!r} is ambiguous: it starts {len(ids)} run ids ({shown}); give more of it")
    for name in candidates:  # newest first
        entry = _read(directory / name)
        if entry is not None:
            return entry
    raise RunNotFoundError(f"the history file of run {run_id!r} in {directory} cannot be read (see the warning above)")


def _id_part(name: str) -> str:
    stamp, _, rest = name.partition("-")
    return rest[:-5] if rest.endswith(".json") else rest

