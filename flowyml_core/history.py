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
from typing import Any, Iterator, Mapping, Sequence

import attrs

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.history")

HISTORY_FORMAT = "flowyml-run/1"
#: Where a project keeps its run history, relative to the project directory.
RUNS_DIR = Path(".flowyml") / "runs"
_RUNS_DIR = RUNS_DIR.as_posix()
#: A failed step's error is kept up to this length (its end, which explains it best).
MAX_ERROR = 4000
#: A parameter value is kept as JSON when it is a JSON scalar; otherwise its repr, cut to this length.
MAX_PARAM_REPR = 200

#: Step statuses as the history records them.
STEP_STATUSES = ("completed", "cached", "skipped", "failed")


class RunNotFoundError(FlowymlError):
    """No run matches an id given on the command line."""


class AmbiguousRunIdError(FlowymlError):
    """More than one run id starts with what was given."""


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

    Built by ``run_on_stack`` before the run starts. Everything past noting
    the time (turning results into entries, scrubbing the stack's secrets from
    errors and parameters, writing) happens on the history's writer thread:
    a run pays a few microseconds for its history, not a file write. Never
    raises: a history that cannot be written must not fail the run it describes.
    """

    _warned: set[str] = set()

    def __init__(self, entry: RunEntry, path: str | None = None, secrets: list[str] | None = None,
                 project_dir: str | os.PathLike[str] | None = None, steps: Sequence[Any] = ()) -> None:
        self.entry = entry
        self._path = path
        self._project_dir = project_dir
        self._secrets = list(secrets or ())
        #: The pipeline's steps: a submitted run lists them as pending until its end is known.
        self._steps = steps
        #: Whether a job was submitted for the run (known at once; the entry is updated on the writer thread).
        self.submitted = entry.job_id is not None

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
        steps: Sequence[Any] = (),
    ) -> RunJournal:
        """The journal of a run starting now (nothing is written yet). ``steps``: the pipeline's."""
        entry = RunEntry(run_id=run_id, pipeline=pipeline, stack=stack, status="running", started_at=time.time(),
                         project=project, executor=executor, source=source, params=dict(params))
        return cls(entry, secrets=secrets, project_dir=project_dir, steps=steps)

    @classmethod
    def resume(cls, entry: RunEntry, secrets: list[str] | None = None) -> RunJournal:
        """The journal of a run read from the history, to record what became of it."""
        if entry.path is None:
            raise ValueError("resume() takes an entry read from the history (its path is unknown)")
        return cls(entry, os.fspath(entry.path), secrets)

    @property
    def path(self) -> str:
        """``<project>/.flowyml/runs/<UTC start>-<run id>.json`` (plain strings: pathlib costs µs on every run)."""
        if self._path is None:
            entry = self.entry
            self._path = f"{os.fspath(self._project_dir)}/{_RUNS_DIR}/{_stamp(entry.started_at)}-" \
                         f"{_safe_name(entry.run_id)}.json"
        return self._path

    def record(self, result: Any) -> None:
        """Write the entry for a :class:`~flowyml_core.results.RunResult` (final, or a submission)."""
        if getattr(result, "submission", None) is not None:
            self.submitted = True
        _WRITER.submit(self, self._apply, result, time.time())

    def record_status(self, status: str, steps: Mapping[str, Any] | None = None) -> None:
        """Write a new status (a remote run seen to end by ``flowyml runs status``), with the
        :class:`~flowyml_core.results.ExecutionResult` of the steps known by then."""
        _WRITER.submit(self, self._apply_end, status, dict(steps or {}), time.time())

    def _apply_end(self, status: str, steps: Mapping[str, Any], now: float) -> None:
        for name, step in steps.items():
            self.entry.steps[name] = self._step(step)
        self._apply_status(status, now)

    def _apply(self, result: Any, now: float) -> None:
        entry = self.entry
        entry.params = {str(k): self._param(v) for k, v in entry.params.items()}
        status = getattr(result.status, "value", result.status)
        submission = getattr(result, "submission", None)
        if submission is not None:
            entry.job_id = submission.job_id
            for step in self._steps:  # what runs remotely, until its records are read
                entry.steps.setdefault(step.name, StepEntry(status="pending"))
        for name, step in result.steps.items():
            entry.steps[name] = self._step(step)
        self._apply_status(str(status), now)

    def _apply_status(self, status: str, now: float) -> None:
        self.entry.status = status
        if self.entry.finished and self.entry.ended_at is None:
            self.entry.ended_at = now
        _write_file(self.path, self.entry.to_json())

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

    def _warn_once(self, exc: Exception) -> None:
        directory = os.path.dirname(self.path)
        if directory not in RunJournal._warned:
            RunJournal._warned.add(directory)
            logger.warning("run history: could not write to %s (%s: %s); runs go on without it",
                           directory, type(exc).__name__, self._scrub(str(exc)))


def _write_file(path: str, document: dict[str, Any]) -> None:
    """Atomically: a reader sees the previous entry or this one, never a torn file."""
    data = _ENCODER.encode(document).encode("utf-8")
    directory = os.path.dirname(path)
    tmp = f"{directory}/.{os.path.basename(path)}.{os.getpid()}.tmp"
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    except FileNotFoundError:
        os.makedirs(directory, exist_ok=True)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    try:
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)  # no temporary file left behind by a failed write
        raise


class _BackgroundWriter:
    """Writes history files from one daemon thread, so that a run does not wait for the disk.

    Writing a run's file took 70-130 µs on this project's machines (more as
    the directory grows): as much as a whole 1-step run. Writes keep their
    order (a remote run's ``running`` entry before its final one); whatever is
    pending is written before this process reads the history (:func:`flush`)
    and when the interpreter exits. A forked child starts with no writer: the
    parent's pending writes are the parent's.
    """

    def __init__(self) -> None:
        self._reset()
        if hasattr(os, "register_at_fork"):
            os.register_at_fork(after_in_child=self._reset)

    def _reset(self) -> None:
        import queue
        import threading

        self._queue: Any = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: Any = None

    def submit(self, journal: RunJournal, work: Any, *args: Any) -> None:
        """Run ``work(*args)`` on the writer thread; a failure is logged once per directory."""
        if self._thread is None:
            self._start()
        self._queue.put((journal, work, args))

    def _start(self) -> None:
        import atexit
        import threading

        with self._lock:
            if self._thread is None:
                thread = threading.Thread(target=self._work, name="flowyml-history", daemon=True)
                thread.start()
                atexit.register(self.flush)
                self._thread = thread

    def _work(self) -> None:
        while True:
            journal, work, args = self._queue.get()
            if journal is None:
                work.set()  # a flush() waiting for everything before it
                continue
            try:
                work(*args)
            except Exception as exc:  # the history is a convenience: the run's own outcome stands
                journal._warn_once(exc)

    def flush(self, timeout: float = 30.0) -> bool:
        """Wait until every write submitted so far is done (False: still pending after ``timeout``)."""
        if self._thread is None or not self._thread.is_alive():
            return True
        import threading

        done = threading.Event()
        self._queue.put((None, done, ()))
        return done.wait(timeout)


_WRITER = _BackgroundWriter()


def flush(timeout: float = 30.0) -> bool:
    """Finish the history writes of this process's runs (the CLI and the readers below call it)."""
    return _WRITER.flush(timeout)


def _safe_name(run_id: str) -> str:
    """A run id as a file name: ids are the user's (``--run-id``), so path separators are replaced."""
    if run_id.isalnum() and run_id.isascii() and len(run_id) <= 200:
        return run_id  # generated ids: hex
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in run_id)[:200] or "_"


#: Built once: json.dumps with options builds a new encoder on every call (~10 µs, on every run).
_ENCODER = json.JSONEncoder(separators=(",", ":"), default=str)


# -- reading --------------------------------------------------------------------------
def _files_newest_first(directory: Path) -> list[str]:
    flush()  # this process's own runs first
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
        raise AmbiguousRunIdError(f"run id {run_id!r} is ambiguous: it starts {len(ids)} run ids ({shown}); give more of it")
    for name in candidates:  # newest first
        entry = _read(directory / name)
        if entry is not None:
            return entry
    raise RunNotFoundError(f"the history file of run {run_id!r} in {directory} cannot be read (see the warning above)")


def _id_part(name: str) -> str:
    stamp, _, rest = name.partition("-")
    return rest[:-5] if rest.endswith(".json") else rest

