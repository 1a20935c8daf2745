"""A fake Vertex AI (v1) + Cloud Logging (v2) REST server that *executes* jobs.

Why this exists
---------------
Tests of the Vertex orchestrator must prove two things that mocks cannot:

* the real client libraries (``google.cloud.aiplatform_v1`` REST transport, the
  high-level ``aiplatform`` SDK, ``google.cloud.logging``) can talk to the
  service, i.e. paths, verbs and JSON bodies are exactly right; and
* the compiled KFP pipeline and the container commands in it actually work
  together (dependency order, env, exit codes, logs).

So this fake speaks the real REST wire format -- every body is parsed and
produced with the real proto-plus types (``PipelineJob.from_json`` /
``to_json``) -- and it *runs* what it receives: each task of a submitted
pipeline spec and the first worker pool of a CustomJob become local
subprocesses.  Container images are not pulled; commands run on the host with a
minimal environment (``base_env`` + the container's env, never ``os.environ``),
which is close to what a container gives you and keeps tests honest about the
env they need.

Logs are where real Vertex puts them. Each pipeline task runs as its own
CustomJob: what the task's container prints is logged under
``resource.type="ml_job"`` with that job's numeric id, which the task detail
names in ``executor_detail.container_detail.main_job``. The pipeline's own
entries (run and task state changes) are under
``resource.type="aiplatform.googleapis.com/PipelineJob"``. A reader that only
queries the latter sees no step output.

Everything listens on 127.0.0.1 only; no other network traffic is made.

REST surface (paths taken from the installed clients' ``rest_base.py``)::

    POST /v1/projects/{p}/locations/{l}/pipelineJobs?pipelineJobId=ID  create
    GET  /v1/projects/{p}/locations/{l}/pipelineJobs                   list
    GET  /v1/projects/{p}/locations/{l}/pipelineJobs/{id}              get
    POST /v1/projects/{p}/locations/{l}/pipelineJobs/{id}:cancel       cancel
    POST /v1/projects/{p}/locations/{l}/customJobs                     create
    GET  /v1/projects/{p}/locations/{l}/customJobs                     list
    GET  /v1/projects/{p}/locations/{l}/customJobs/{id}                get
    POST /v1/projects/{p}/locations/{l}/customJobs/{id}:cancel         cancel
    POST /v2/entries:list                                              logs
    POST /v2/entries:write                                             logs

Anything else answers 404 with a Google-style JSON error body.
"""

from __future__ import annotations

import base64
import collections
import concurrent.futures
import itertools
import json
import logging
import os
import re
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, ClassVar, Mapping, Sequence
from urllib.parse import parse_qs, unquote, urlsplit

from tests.servers.loopback import serve, stop_serving

logger = logging.getLogger(__name__)

__all__ = [
    "ExecutedProcess",
    "FakeGoogleCloud",
    "LogFilterError",
    "RecordedRequest",
    "parse_log_filter",
    "parse_timestamp",
]

# Log severities in Cloud Logging order; comparisons (severity>=ERROR) use the
# numeric level, exactly as the real service does.
SEVERITY_LEVELS: dict[str, int] = {
    "DEFAULT": 0,
    "DEBUG": 100,
    "INFO": 200,
    "NOTICE": 300,
    "WARNING": 400,
    "ERROR": 500,
    "CRITICAL": 600,
    "ALERT": 700,
    "EMERGENCY": 800,
}

PIPELINE_RESOURCE_TYPE = "aiplatform.googleapis.com/PipelineJob"
CUSTOM_JOB_RESOURCE_TYPE = "ml_job"
# Real Vertex names the (single) replica of a one-pool CustomJob like this, and
# uses it both as the log name and as resource.labels.task_name.
CUSTOM_JOB_REPLICA = "workerpool0-0"

_STDERR_TAIL_LINES = 20
_STDERR_TAIL_CHARS = 2000
_DEFAULT_PAGE_SIZE = 50
_MAX_PAGE_SIZE = 1000
_POLL_SECONDS = 0.05

# google.rpc.Code values used in Status errors.
_RPC_CANCELLED = 1
_RPC_INVALID_ARGUMENT = 3
_RPC_DEADLINE_EXCEEDED = 4
_RPC_FAILED_PRECONDITION = 9


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _rfc3339(dt: datetime) -> str:
    """Format like Cloud Logging does (UTC, 'Z', sub-second digits)."""
    return dt.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


_TS_RE = re.compile(
    r"^(?P<base>\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2})"
    r"(?:\.(?P<frac>\d{1,9}))?"
    r"(?P<tz>Z|z|[+-]\d{2}:?\d{2})?$"
)


def parse_timestamp(text: str) -> datetime:
    """Parse the RFC 3339 variants clients send (``Z``, ``+0000``, nanos).

    ``google.cloud.logging`` formats its automatic ``timestamp>=`` clause with
    ``%z`` (``+0000``) and microseconds, other callers use ``Z`` and up to
    nanoseconds; ``datetime.fromisoformat`` accepts neither everywhere, so the
    text is normalised first.  Raises ValueError on anything else.
    """
    m = _TS_RE.match(text.strip())
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    frac = (m.group("frac") or "0")[:6].ljust(6, "0")
    tz = m.group("tz") or "Z"
    if tz in ("Z", "z"):
        tz = "+00:00"
    elif ":" not in tz:
        tz = f"{tz[:3]}:{tz[3:]}"
    return datetime.fromisoformat(f"{m.group('base').replace(' ', 'T')}.{frac}{tz}")


# --------------------------------------------------------------------------
# Records kept for assertions
# --------------------------------------------------------------------------


@dataclass(frozen=True)
class RecordedRequest:
    """One HTTP request as received, so tests can assert what clients sent."""

    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class ExecutedProcess:
    """One task/replica process the fake ran (argv after placeholder resolution)."""

    job_name: str
    task_name: str
    argv: list[str]
    env: dict[str, str]
    cwd: str
    image: str
    returncode: int | None = None
    started: datetime | None = None
    ended: datetime | None = None
    pid: int | None = None


class _ApiError(Exception):
    """An error answered to the client in the google.rpc.Status JSON shape."""

    def __init__(self, http_code: int, status: str, message: str):
        super().__init__(message)
        self.http_code = http_code
        self.status = status
        self.message = message


def _bad_request(message: str) -> _ApiError:
    return _ApiError(400, "INVALID_ARGUMENT", message)


def _not_found(message: str) -> _ApiError:
    return _ApiError(404, "NOT_FOUND", message)


# --------------------------------------------------------------------------
# Cloud Logging filter subset
# --------------------------------------------------------------------------


class LogFilterError(ValueError):
    """The filter uses syntax outside the supported subset.

    The fake refuses rather than guesses: silently matching everything would
    let a test pass with a filter the real service interprets differently.
    """


_QUOTED = r'"(?:[^"\\]|\\.)*"'
_FIELD_PART = rf"(?:[A-Za-z_][A-Za-z0-9_\-/]*|{_QUOTED})"
_VALUE = rf'(?:{_QUOTED}|[^\s()"]+)'
# ``field = ("a" OR "b")``: a parenthesised list of values joined by OR (Cloud Logging's value disjunction).
_VALUE_LIST = rf"\(\s*{_VALUE}(?:\s+OR\s+{_VALUE})*\s*\)"
_CLAUSE_RE = re.compile(
    rf"(?P<field>[A-Za-z_][A-Za-z0-9_]*(?:\.{_FIELD_PART})*)"
    r"\s*(?P<op>>=|<=|!=|=|>|<|:)\s*"
    rf"(?P<value>{_VALUE_LIST}|{_VALUE})"
)
_AND_RE = re.compile(r"AND(?=\s|$)")
_WS_RE = re.compile(r"\s+")

_EXACT_FIELDS = {"resource.type", "severity", "timestamp", "logName", "log_name",
                 "insertId", "insert_id", "textPayload", "text_payload"}
_PREFIX_FIELDS = ("resource.labels.", "labels.", "jsonPayload.", "json_payload.")


@dataclass(frozen=True)
class _Clause:
    path: tuple[str, ...]
    op: str
    value: str
    text: str
    alternatives: tuple[str, ...] = ()  # ``field = ("a" OR "b")``: any of these


def _unquote(token: str) -> str:
    if len(token) >= 2 and token[0] == '"' and token[-1] == '"':
        return re.sub(r"\\(.)", r"\1", token[1:-1])
    return token


def _split_field(field_text: str) -> tuple[str, ...]:
    parts = re.findall(rf"{_QUOTED}|[^.]+", field_text)
    return tuple(_unquote(p) for p in parts)


def parse_log_filter(text: str | None) -> list[_Clause]:
    """Parse the filter subset into clauses that are ANDed together.

    Supported: ``field OP value`` clauses separated by ``AND`` or whitespace;
    OP is ``=``, ``!=``, ``:`` (substring) on resource.type, resource.labels.*,
    labels.*, logName, insertId, textPayload, jsonPayload.*, severity; and
    ``< <= > >=`` on ``timestamp`` and ``severity``.  Values may be quoted or
    bare; label keys may be quoted (``labels."a/b"``); ``field = ("a" OR "b")``
    matches either value.  Everything else (OR between clauses, NOT, ``-``,
    other parentheses, other fields) raises LogFilterError.
    """
    clauses: list[_Clause] = []
    if not text:
        return clauses
    pos = 0
    expect_clause = True
    while pos < len(text):
        ws = _WS_RE.match(text, pos)
        if ws:
            pos = ws.end()
            continue
        if not expect_clause:
            and_m = _AND_RE.match(text, pos)
            if and_m:
                pos = and_m.end()
                expect_clause = True
                continue
        m = _CLAUSE_RE.match(text, pos)
        if not m or (m.end() < len(text) and not text[m.end()].isspace()):
            raise LogFilterError(
                f"unsupported log filter syntax at offset {pos}: {text[pos:pos + 40]!r} "
                f"(the fake supports `field=value`, `field!=value`, `field:value`, "
                f"timestamp/severity comparisons, joined by AND or whitespace)"
            )
        fld, op, raw_value = m.group("field"), m.group("op"), m.group("value")
        if fld not in _EXACT_FIELDS and not fld.startswith(_PREFIX_FIELDS):
            raise LogFilterError(f"unsupported log filter field {fld!r}")
        if raw_value in ("AND", "OR", "NOT"):
            raise LogFilterError(f"missing value for {fld!r} in filter {text!r}")
        alternatives: tuple[str, ...] = ()
        if raw_value.startswith("("):
            if op != "=" or fld in ("timestamp", "severity"):
                raise LogFilterError(f"a value list is only supported with '=' on labels and types, got {m.group(0)!r}")
            alternatives = tuple(_unquote(v) for v in re.findall(_VALUE, raw_value[1:-1]) if v != "OR")
            raw_value = alternatives[0]
        value = _unquote(raw_value)
        if op in ("<", "<=", ">", ">=") and fld not in ("timestamp", "severity"):
            raise LogFilterError(f"comparison {op!r} only supported on timestamp/severity")
        if fld == "timestamp":
            if op == ":":
                raise LogFilterError("':' is not supported on timestamp")
            try:
                parse_timestamp(value)
            except ValueError as exc:
                raise LogFilterError(str(exc)) from None
        if fld == "severity" and op != ":" and _severity_level(value) is None:
            raise LogFilterError(f"unknown severity {value!r}")
        clauses.append(_Clause(_split_field(fld), op, value, m.group(0), alternatives))
        pos = m.end()
        expect_clause = False
    if expect_clause and clauses:
        raise LogFilterError(f"filter ends with a dangling AND: {text!r}")
    return clauses


def _severity_level(value: Any) -> int | None:
    if isinstance(value, int):
        return value
    text = str(value).strip().upper()
    if text.isdigit():
        return int(text)
    return SEVERITY_LEVELS.get(text)


_FIELD_ALIASES = {"log_name": "logName", "insert_id": "insertId",
                  "text_payload": "textPayload", "json_payload": "jsonPayload"}


def _lookup(entry: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = entry
    for i, part in enumerate(path):
        if i == 0:
            part = _FIELD_ALIASES.get(part, part)
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    return node


def _compare(op: str, left: Any, right: Any) -> bool:
    if op == "=":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right
    if op == "<=":
        return left <= right
    if op == ">":
        return left > right
    if op == ">=":
        return left >= right
    raise AssertionError(op)


def _clause_matches(clause: _Clause, entry: Mapping[str, Any]) -> bool:
    actual = _lookup(entry, clause.path)
    if clause.path == ("timestamp",):
        if actual is None:
            return False
        return _compare(clause.op, parse_timestamp(actual), parse_timestamp(clause.value))
    if clause.path == ("severity",):
        if clause.op == ":":
            return clause.value.upper() in str(actual or "DEFAULT").upper()
        return _compare(clause.op, _severity_level(actual or "DEFAULT"),
                        _severity_level(clause.value))
    if clause.op == "!=":
        return actual is None or _stringify(actual) != clause.value
    if actual is None:
        return False
    if clause.op == ":":
        return clause.value.lower() in _stringify(actual).lower()
    if clause.alternatives:
        return _stringify(actual) in clause.alternatives
    return _stringify(actual) == clause.value


def _stringify(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, (dict, list)):
        return json.dumps(value, sort_keys=True)
    return str(value)


# --------------------------------------------------------------------------
# Log store
# --------------------------------------------------------------------------


class _LogStore:
    """Thread-safe append-only store of Cloud Logging entries (API JSON shape)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: list[dict[str, Any]] = []
        self._ids = itertools.count(1)
        self._prefix = base64.b32encode(os.urandom(5)).decode().lower()

    def add(self, entry: dict[str, Any]) -> dict[str, Any]:
        now = _utcnow()
        with self._lock:
            entry = dict(entry)
            entry.setdefault("insertId", f"{self._prefix}{next(self._ids):08d}")
            entry.setdefault("timestamp", _rfc3339(now))
            entry["receiveTimestamp"] = _rfc3339(now)
            entry.setdefault("severity", "DEFAULT")
            self._entries.append(entry)
            return entry

    def snapshot(self) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(json.dumps(e)) for e in self._entries]


def _make_log_entry(line: str, stream: str, *, log_name: str, resource: dict[str, Any],
                    labels: dict[str, str]) -> dict[str, Any] | None:
    """Turn one output line into a LogEntry the way Vertex's log agent does.

    A line holding a JSON object becomes ``jsonPayload``; its ``severity`` key
    is promoted to the entry severity (and removed from the payload).  Other
    lines become ``textPayload`` with INFO for stdout and ERROR for stderr.
    Blank lines are dropped, like the agent does.
    """
    text = line.rstrip("\r\n")
    if not text.strip():
        return None
    default_severity = "INFO" if stream == "stdout" else "ERROR"
    entry: dict[str, Any] = {
        "logName": log_name,
        "resource": json.loads(json.dumps(resource)),
        "labels": dict(labels),
    }
    payload: Any = None
    stripped = text.strip()
    if stripped.startswith("{") and stripped.endswith("}"):
        try:
            payload = json.loads(stripped)
        except ValueError:
            payload = None
    if isinstance(payload, dict):
        severity = payload.pop("severity", None)
        level_name = str(severity).upper() if severity is not None else ""
        entry["severity"] = level_name if level_name in SEVERITY_LEVELS else default_severity
        entry["jsonPayload"] = payload
    else:
        entry["severity"] = default_severity
        entry["textPayload"] = text
    return entry


# --------------------------------------------------------------------------
# Process execution
# --------------------------------------------------------------------------


@dataclass
class _ProcessOutcome:
    returncode: int | None
    stderr_tail: str
    cancelled: bool = False
    timed_out: bool = False
    launch_error: str | None = None

    @property
    def ok(self) -> bool:
        return (self.returncode == 0 and not self.cancelled and not self.timed_out
                and self.launch_error is None)

    def describe(self) -> str:
        """Human message for google.rpc.Status: why it failed + stderr tail."""
        if self.launch_error:
            reason = f"could not start the container command: {self.launch_error}"
        elif self.timed_out:
            reason = "the task exceeded the fake's task_timeout and was killed"
        elif self.cancelled:
            reason = "cancelled"
        else:
            reason = f"the container exited with a non-zero status of {self.returncode}"
        if self.stderr_tail:
            return f"{reason}. stderr: {self.stderr_tail}"
        return f"{reason}."


def _kill_group(pid: int, sig: int) -> None:
    try:
        os.killpg(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def _run_process(
    argv: Sequence[str],
    env: Mapping[str, str],
    cwd: str,
    *,
    on_line: Callable[[str, str], None],
    cancel_event: threading.Event,
    timeout: float | None,
    grace: float,
    record: ExecutedProcess,
) -> _ProcessOutcome:
    """Run one "container" as a process group and stream its lines to on_line.

    The process gets its own session so cancel/timeout can kill the whole
    group (a shell's children included), as stopping a container would; after
    the main process exits the group is killed too, because a container stops
    when its entrypoint ends.
    """
    tail: collections.deque[str] = collections.deque(maxlen=_STDERR_TAIL_LINES)
    record.started = _utcnow()
    try:
        proc = subprocess.Popen(
            list(argv), env=dict(env), cwd=cwd, stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
        )
    except OSError as exc:
        record.ended = _utcnow()
        return _ProcessOutcome(None, "", launch_error=f"{type(exc).__name__}: {exc}")
    record.pid = proc.pid
    logger.debug("started pid %s for %s/%s: %s", proc.pid, record.job_name,
                 record.task_name, argv)

    def pump(stream: Any, name: str) -> None:
        for raw in iter(stream.readline, b""):
            text = raw.decode("utf-8", errors="replace")
            if name == "stderr" and text.strip():
                tail.append(text.rstrip("\r\n"))
            try:
                on_line(text, name)
            except Exception:  # a logging bug must not wedge the pipe
                logger.exception("failed to record a log line")
        stream.close()

    readers = [threading.Thread(target=pump, args=(proc.stdout, "stdout"), daemon=True),
               threading.Thread(target=pump, args=(proc.stderr, "stderr"), daemon=True)]
    for reader in readers:
        reader.start()

    deadline = None if timeout is None else time.monotonic() + timeout
    cancelled = timed_out = False
    while True:
        try:
            proc.wait(timeout=_POLL_SECONDS)
            break
        except subprocess.TimeoutExpired:
            pass
        if cancel_event.is_set():
            cancelled = True
        elif deadline is not None and time.monotonic() > deadline:
            timed_out = True
        if cancelled or timed_out:
            _kill_group(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=grace)
            except subprocess.TimeoutExpired:
                _kill_group(proc.pid, signal.SIGKILL)
                proc.wait()
            break
    _kill_group(proc.pid, signal.SIGKILL)
    for reader in readers:
        reader.join(timeout=5)
    record.returncode = proc.returncode
    record.ended = _utcnow()
    stderr_tail = "\n".join(tail)
    if len(stderr_tail) > _STDERR_TAIL_CHARS:
        stderr_tail = "..." + stderr_tail[-_STDERR_TAIL_CHARS:]
    return _ProcessOutcome(proc.returncode, stderr_tail, cancelled=cancelled,
                           timed_out=timed_out)


# --------------------------------------------------------------------------
# Pipeline spec handling
# --------------------------------------------------------------------------

_INPUT_PARAM_RE = re.compile(r"\{\{\$\.inputs\.parameters\[(['\"])(?P<name>.+?)\1\]\}\}")
_PLACEHOLDER_RE = re.compile(r"\{\{\$[^}]*\}\}")
_SIMPLE_PLACEHOLDERS = (
    "{{$.pipeline_job_name}}",
    "{{$.pipeline_job_resource_name}}",
    "{{$.pipeline_job_uuid}}",
    "{{$.pipeline_task_name}}",
    "{{$.pipeline_task_uuid}}",
    "{{$.pipeline_root}}",
    "{{$.pipeline_job_create_time_utc}}",
    "{{$.pipeline_job_schedule_time_utc}}",
)


def _render_parameter(value: Any, parameter_type: str | None) -> str:
    """Render a parameter value as the KFP launcher does for command lines."""
    if parameter_type == "NUMBER_INTEGER" and isinstance(value, (int, float)) \
            and not isinstance(value, bool):
        return str(int(value))
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (dict, list)):
        return json.dumps(value)
    if isinstance(value, float) and value.is_integer() and parameter_type != "NUMBER_DOUBLE":
        return str(int(value))
    return str(value)


@dataclass
class _TaskPlan:
    """A runnable task extracted (and validated) from the pipeline spec."""

    key: str
    name: str
    deps: list[str]
    image: str
    command: list[str]
    args: list[str]
    env: dict[str, str]
    inputs: dict[str, str]  # already rendered strings


def _runtime_parameters(runtime_config: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = dict(runtime_config.get("parameterValues") or {})
    # Legacy ``parameters`` map of aiplatform.Value {stringValue|intValue|doubleValue}.
    for key, wrapped in (runtime_config.get("parameters") or {}).items():
        if key not in values and isinstance(wrapped, Mapping) and wrapped:
            values[key] = next(iter(wrapped.values()))
    return values


def _plan_pipeline(spec: Mapping[str, Any], runtime_config: Mapping[str, Any]) -> list[_TaskPlan]:
    """Validate the KFP IR and turn root.dag.tasks into _TaskPlans.

    Real Vertex rejects malformed specs at create time with 400, so the fake
    does too -- and it also refuses, with a clear 400, IR features it cannot
    execute (nested DAGs, artifact/output placeholders, task outputs) instead
    of running something different from what Vertex would run.
    """
    if not spec:
        raise _bad_request("PipelineJob.pipeline_spec is required")
    try:
        dag_tasks = spec["root"]["dag"]["tasks"]
    except (KeyError, TypeError):
        raise _bad_request("pipeline_spec.root.dag.tasks is missing") from None
    if not isinstance(dag_tasks, Mapping) or not dag_tasks:
        raise _bad_request("pipeline_spec.root.dag.tasks is empty")
    components = spec.get("components") or {}
    executors = (spec.get("deploymentSpec") or {}).get("executors") or {}
    root_params = ((spec["root"].get("inputDefinitions") or {}).get("parameters") or {})
    runtime_values = _runtime_parameters(runtime_config)
    unknown_params = set(runtime_values) - set(root_params)
    if unknown_params:
        raise _bad_request(
            f"runtime parameters not defined by the pipeline: {sorted(unknown_params)}")

    plans: list[_TaskPlan] = []
    for key, task in dag_tasks.items():
        comp_name = (task.get("componentRef") or {}).get("name")
        if comp_name not in components:
            raise _bad_request(f"task {key!r}: component {comp_name!r} not found in components")
        component = components[comp_name]
        if "dag" in component:
            raise _bad_request(f"task {key!r}: nested DAG components (conditions, loops, "
                               "sub-pipelines) are not supported by the fake")
        if task.get("triggerPolicy") or task.get("iteratorPolicy") or task.get("parameterIterator"):
            raise _bad_request(
                f"task {key!r}: trigger/iterator policies are not supported by the fake")
        label = component.get("executorLabel")
        executor = executors.get(label)
        if executor is None:
            raise _bad_request(f"task {key!r}: executor {label!r} not found in deploymentSpec")
        container = executor.get("container")
        if not container:
            raise _bad_request(f"task {key!r}: executor {label!r} is not a container executor "
                               "(importer/resolver are not supported by the fake)")
        if not container.get("image"):
            raise _bad_request(f"task {key!r}: container image is required")
        command = [str(c) for c in container.get("command") or []]
        args = [str(a) for a in container.get("args") or []]
        if not command and not args:
            raise _bad_request(f"task {key!r}: container has neither command nor args")
        deps = [str(d) for d in task.get("dependentTasks") or []]
        for dep in deps:
            if dep not in dag_tasks:
                raise _bad_request(f"task {key!r} depends on unknown task {dep!r}")

        param_types = {n: d.get("parameterType") for n, d in
                       ((component.get("inputDefinitions") or {}).get("parameters") or {}).items()}
        if (component.get("inputDefinitions") or {}).get("artifacts"):
            raise _bad_request(f"task {key!r}: input artifacts are not supported by the fake")
        inputs: dict[str, str] = {}
        for pname, pspec in ((task.get("inputs") or {}).get("parameters") or {}).items():
            if "runtimeValue" in pspec:
                value = (pspec["runtimeValue"] or {}).get("constant")
            elif "componentInputParameter" in pspec:
                root_name = pspec["componentInputParameter"]
                if root_name in runtime_values:
                    value = runtime_values[root_name]
                elif "defaultValue" in (root_params.get(root_name) or {}):
                    value = root_params[root_name]["defaultValue"]
                else:
                    raise _bad_request(f"pipeline parameter {root_name!r} has no value "
                                       "(not in runtime_config and no default)")
            else:
                raise _bad_request(f"task {key!r}: input {pname!r} uses task outputs or other "
                                   "sources the fake does not support")
            inputs[pname] = _render_parameter(value, param_types.get(pname))

        for text in command + args:
            leftover = _INPUT_PARAM_RE.sub("", text)
            for simple in _SIMPLE_PLACEHOLDERS:
                leftover = leftover.replace(simple, "")
            bad = _PLACEHOLDER_RE.search(leftover)
            if bad or leftover.lstrip().startswith(("{\"IfPresent\"", "{\"Concat\"")):
                raise _bad_request(
                    f"task {key!r}: placeholder {text!r} is not supported by the fake")
            for m in _INPUT_PARAM_RE.finditer(text):
                if m.group("name") not in inputs:
                    raise _bad_request(f"task {key!r}: placeholder for input {m.group('name')!r} "
                                       "but the task has no such input")

        env = {str(e["name"]): str(e.get("value", "")) for e in container.get("env") or []}
        name = (task.get("taskInfo") or {}).get("name") or key
        plans.append(_TaskPlan(key, name, deps, container["image"], command, args, env, inputs))

    # Cycle check (Kahn) -- a cyclic DAG would otherwise hang the runner.
    remaining = {p.key: set(p.deps) for p in plans}
    while remaining:
        ready = [k for k, d in remaining.items() if not d]
        if not ready:
            raise _bad_request(f"dependency cycle among tasks {sorted(remaining)}")
        for k in ready:
            del remaining[k]
        for d in remaining.values():
            d.difference_update(ready)
    return plans


# --------------------------------------------------------------------------
# Job runs
# --------------------------------------------------------------------------


@dataclass
class _TaskRun:
    plan: _TaskPlan
    task_id: int
    state: str = "PENDING"  # PipelineTaskDetail.State name
    custom_job_id: str | None = None  # the CustomJob that runs the task's container, once it started
    create_time: datetime | None = None
    start_time: datetime | None = None
    end_time: datetime | None = None
    error: str | None = None


@dataclass(frozen=True)
class _JobKind:
    """What differs between the two job resources the fake runs: names and state enum."""

    collection: str  # in resource names: pipelineJobs / customJobs
    label: str  # in messages: PipelineJob / CustomJob
    enum: str  # aiplatform_v1 state enum: PipelineState / JobState
    prefix: str  # of its state names: PIPELINE_STATE_ / JOB_STATE_

    def state(self, short: str) -> Any:
        """The enum member for ``short`` ("RUNNING", "CANCELLED"...)."""
        from google.cloud.aiplatform_v1 import types as v1

        return getattr(v1, self.enum)[self.prefix + short]

    def is_terminal(self, state_name: str) -> bool:
        return state_name[len(self.prefix):] in ("SUCCEEDED", "FAILED", "CANCELLED")


_PIPELINE_JOB = _JobKind("pipelineJobs", "PipelineJob", "PipelineState", "PIPELINE_STATE_")
_CUSTOM_JOB = _JobKind("customJobs", "CustomJob", "JobState", "JOB_STATE_")


@dataclass
class _PipelineRun:
    kind: ClassVar[_JobKind] = _PIPELINE_JOB
    job: Any  # aiplatform_v1.PipelineJob, guarded by FakeGoogleCloud._lock
    project: str
    location: str
    job_id: str
    root_task_id: int
    pipeline_name: str
    tasks: dict[str, _TaskRun]
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


@dataclass
class _CustomRun:
    kind: ClassVar[_JobKind] = _CUSTOM_JOB
    job: Any  # aiplatform_v1.CustomJob
    project: str
    location: str
    job_id: str
    cancel_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None


# What real Vertex accepts as a pipelineJobId: a letter first.
_JOB_ID_RE = re.compile(r"^[a-z][-a-z0-9]{0,127}$")
_DISPLAY_NAME_LIMIT = 128


# --------------------------------------------------------------------------
# The server
# --------------------------------------------------------------------------


class FakeGoogleCloud:
    """Fake Vertex AI + Cloud Logging on 127.0.0.1 that executes submitted jobs.

    Args:
        workdir: cwd of every executed process.  Defaults to a temporary
            directory created on start() and removed on stop().
        base_env: environment every process starts from (the container env is
            merged on top).  ``os.environ`` is deliberately NOT inherited, so a
            test must say what its commands need (PATH, emulator hosts, ...).
        image_map: None (default) accepts every image and ignores it.  A
            mapping makes images strict, like a registry: an image that is not
            a key fails the task as an image pull error would; the value (None
            or an argv list) is prepended to the command, e.g. a wrapper.
        task_timeout: seconds after which a task/replica is killed and failed.
        max_parallel_tasks: how many ready pipeline tasks run at once (Vertex
            runs independent tasks in parallel; 1 makes runs sequential).
        cancel_grace: seconds between SIGTERM and SIGKILL on cancel/timeout.

    Attributes:
        url: ``http://127.0.0.1:PORT`` once started -- the ``api_endpoint``.
        requests: every RecordedRequest received, in order.
        executions: every ExecutedProcess started, in order.
    """

    def __init__(
        self,
        workdir: str | os.PathLike[str] | None = None,
        base_env: Mapping[str, str] | None = None,
        image_map: Mapping[str, Sequence[str] | None] | None = None,
        task_timeout: float | None = 300.0,
        *,
        max_parallel_tasks: int = 4,
        cancel_grace: float = 1.0,
    ) -> None:
        self._workdir_arg = os.fspath(workdir) if workdir is not None else None
        self.workdir: str | None = self._workdir_arg
        self.base_env: dict[str, str] = {str(k): str(v) for k, v in (base_env or {}).items()}
        self.image_map = dict(image_map) if image_map is not None else None
        self.task_timeout = task_timeout
        self.max_parallel_tasks = max(1, int(max_parallel_tasks))
        self.cancel_grace = cancel_grace
        self.requests: list[RecordedRequest] = []
        self.executions: list[ExecutedProcess] = []
        self.logs = _LogStore()
        self._lock = threading.RLock()
        self._pipeline_runs: dict[str, _PipelineRun] = {}
        self._custom_runs: dict[str, _CustomRun] = {}
        self._task_ids = itertools.count(int(time.time()) * 1000)
        self._custom_ids = itertools.count(int(time.time()) * 1000)
        self._server: ThreadingHTTPServer | None = None
        self._owns_workdir = False
        self.url: str = ""

    # ----------------------------------------------------------- lifecycle

    def start(self) -> "FakeGoogleCloud":
        if self._server is not None:
            return self
        if self._workdir_arg is None:
            self.workdir = tempfile.mkdtemp(prefix="fake-gcp-")
            self._owns_workdir = True
        self._server, self.url = serve(_Handler, self, "fake-gcp")
        logger.info("fake Google Cloud listening on %s (workdir %s)", self.url, self.workdir)
        return self

    def stop(self) -> None:
        """Cancel whatever still runs (killing processes), then shut down."""
        with self._lock:
            runs: list[Any] = [*self._pipeline_runs.values(), *self._custom_runs.values()]
        for run in runs:
            run.cancel_event.set()
        for run in runs:
            if run.thread is not None:
                run.thread.join(timeout=self.cancel_grace + 5)
        stop_serving(self._server)
        self._server = None
        if self._owns_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)
            self._owns_workdir = False

    def __enter__(self) -> "FakeGoogleCloud":
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # ----------------------------------------------------- test conveniences

    @property
    def log_entries(self) -> list[dict[str, Any]]:
        """All stored log entries (API JSON shape), oldest first."""
        return self.logs.snapshot()

    def requests_to(self, method: str, path_regex: str) -> list[RecordedRequest]:
        """Recorded requests whose method matches and path matches the regex."""
        rx = re.compile(path_regex)
        return [r for r in list(self.requests) if r.method == method and rx.search(r.path)]

    def wait_idle(self, timeout: float = 10.0) -> None:
        """Block until every submitted job reached a terminal state."""
        deadline = time.monotonic() + timeout
        with self._lock:
            runs: list[Any] = [*self._pipeline_runs.values(), *self._custom_runs.values()]
        for run in runs:
            if run.thread is not None:
                run.thread.join(max(0.0, deadline - time.monotonic()))
                if run.thread.is_alive():
                    raise TimeoutError(f"job {run.job_id} still running after {timeout}s")

    # ------------------------------------------------------- pipeline jobs

    def _create_pipeline_job(self, project: str, location: str, query: Mapping[str, list[str]],
                             body: bytes) -> str:
        from google.cloud.aiplatform_v1 import types as v1
        from google.protobuf import json_format

        job = _parse_proto(v1.PipelineJob, body)
        _check_display_name(job.display_name)
        pb = v1.PipelineJob.pb(job)
        spec = json_format.MessageToDict(pb.pipeline_spec) if pb.HasField("pipeline_spec") else {}
        runtime_config = json_format.MessageToDict(pb.runtime_config)
        plans = _plan_pipeline(spec, runtime_config)
        pipeline_name = (spec.get("pipelineInfo") or {}).get("name") or "pipeline"

        requested = (query.get("pipelineJobId") or [""])[0]
        with self._lock:
            if requested:
                if not _JOB_ID_RE.match(requested):
                    raise _bad_request(f"invalid pipelineJobId {requested!r}: must match "
                                       f"{_JOB_ID_RE.pattern}")
                job_id = requested
            else:
                stem = re.sub(r"[^a-z0-9-]", "-", pipeline_name.lower()).strip("-") or "pipeline"
                if not stem[0].isalpha():
                    stem = f"pipeline-{stem}"
                base = f"{stem[:100]}-{_utcnow():%Y%m%d%H%M%S}"
                job_id, n = base, 1
                while f"projects/{project}/locations/{location}/pipelineJobs/{job_id}" \
                        in self._pipeline_runs:
                    n += 1
                    job_id = f"{base}-{n}"
            name = f"projects/{project}/locations/{location}/pipelineJobs/{job_id}"
            if name in self._pipeline_runs:
                raise _ApiError(409, "ALREADY_EXISTS", f"PipelineJob {name} already exists")
            now = _utcnow()
            job.name = name
            if not job.display_name:
                job.display_name = pipeline_name
            job.state = v1.PipelineState.PIPELINE_STATE_PENDING
            job.create_time = now
            job.update_time = now
            tasks = {p.key: _TaskRun(p, next(self._task_ids)) for p in plans}
            run = _PipelineRun(job, project, location, job_id, next(self._task_ids),
                               pipeline_name, tasks)
            self._pipeline_runs[name] = run
            run.thread = threading.Thread(target=self._execute_pipeline, args=(run,),
                                          name=f"pipeline-{job_id}", daemon=True)
            run.thread.start()
            return self._pipeline_json(run)

    def _get_run(self, kind: _JobKind, project: str, location: str, job_id: str) -> Any:
        name = f"projects/{project}/locations/{location}/{kind.collection}/{job_id}"
        runs = self._pipeline_runs if kind is _PIPELINE_JOB else self._custom_runs
        run = runs.get(name)
        if run is None:
            raise _not_found(f"{kind.label} {name} not found")
        return run

    def _pipeline_json(self, run: _PipelineRun) -> str:
        """Serialize the job with a fresh job_detail (caller holds the lock)."""
        from google.cloud.aiplatform_v1 import types as v1

        root_state = {
            "PIPELINE_STATE_PENDING": "PENDING", "PIPELINE_STATE_RUNNING": "RUNNING",
            "PIPELINE_STATE_SUCCEEDED": "SUCCEEDED", "PIPELINE_STATE_FAILED": "FAILED",
            "PIPELINE_STATE_CANCELLING": "CANCELLING", "PIPELINE_STATE_CANCELLED": "CANCELLED",
        }.get(run.job.state.name, "PENDING")
        details = []
        if run.job.state.name != "PIPELINE_STATE_PENDING":
            # Like Vertex, the root DAG is itself a task detail (named after
            # the pipeline) and every real task points at it as its parent.
            root = v1.PipelineTaskDetail(
                task_id=run.root_task_id, task_name=run.pipeline_name,
                create_time=run.job.start_time or run.job.create_time,
                state=v1.PipelineTaskDetail.State[root_state])
            if run.job.start_time:
                root.start_time = run.job.start_time
            if run.job.end_time:
                root.end_time = run.job.end_time
            if run.job.error.message:
                root.error = run.job.error
            details.append(root)
        for task in run.tasks.values():
            if task.create_time is None:
                continue
            detail = v1.PipelineTaskDetail(
                task_id=task.task_id, parent_task_id=run.root_task_id,
                task_name=task.plan.name, task_unique_name=task.plan.key,
                create_time=task.create_time,
                state=v1.PipelineTaskDetail.State[task.state])
            if task.start_time:
                detail.start_time = task.start_time
            if task.end_time:
                detail.end_time = task.end_time
            if task.error:
                detail.error = {"code": _RPC_FAILED_PRECONDITION, "message": task.error}
            if task.custom_job_id:
                detail.executor_detail = {"container_detail": {"main_job": (
                    f"projects/{run.project}/locations/{run.location}/customJobs/{task.custom_job_id}")}}
            details.append(detail)
        run.job.job_detail = v1.PipelineJobDetail(task_details=details)
        return v1.PipelineJob.to_json(run.job)

    @staticmethod
    def _set_state(run: _PipelineRun | _CustomRun, short: str) -> None:
        """Move a job to state ``short`` ("RUNNING"...), stamping the times Vertex stamps (caller holds the lock)."""
        now = _utcnow()
        run.job.state = run.kind.state(short)
        run.job.update_time = now
        if short == "RUNNING":
            run.job.start_time = now
        if run.kind.is_terminal(run.kind.prefix + short):
            run.job.end_time = now

    def _cancel(self, kind: _JobKind, project: str, location: str, job_id: str) -> None:
        with self._lock:
            run = self._get_run(kind, project, location, job_id)
            state = run.job.state.name
            if kind.is_terminal(state):
                raise _ApiError(400, "FAILED_PRECONDITION",
                                f"Cannot cancel {kind.label} {run.job.name} in state {state}")
            if state != kind.prefix + "CANCELLING":
                self._set_state(run, "CANCELLING")
            run.cancel_event.set()

    def _execute_pipeline(self, run: _PipelineRun) -> None:
        """Run the DAG: ready tasks (all deps SUCCEEDED) are launched, up to
        max_parallel_tasks at once; dependants of failed tasks are SKIPPED."""
        from google.cloud.aiplatform_v1 import types as v1

        with self._lock:
            if not run.cancel_event.is_set():
                self._set_state(run, "RUNNING")
                self._pipeline_event(run, "INFO", f"PipelineJob {run.job_id} is running")
            fail_fast = (run.job.runtime_config.failure_policy
                         == v1.PipelineFailurePolicy.PIPELINE_FAILURE_POLICY_FAIL_FAST)
        order = list(run.tasks)
        running: dict[concurrent.futures.Future[_ProcessOutcome], _TaskRun] = {}
        failed: list[_TaskRun] = []
        with concurrent.futures.ThreadPoolExecutor(
                max_workers=self.max_parallel_tasks,
                thread_name_prefix=f"task-{run.job_id}") as pool:
            while True:
                stop_scheduling = run.cancel_event.is_set() or (fail_fast and failed)
                with self._lock:
                    if not run.cancel_event.is_set():  # on cancel, leftovers become CANCELLED
                        self._skip_unreachable(run)
                    if not stop_scheduling:
                        for key in order:
                            task = run.tasks[key]
                            if len(running) >= self.max_parallel_tasks:
                                break
                            if task.state != "PENDING" or not all(
                                    run.tasks[d].state == "SUCCEEDED" for d in task.plan.deps):
                                continue
                            now = _utcnow()
                            task.state, task.create_time, task.start_time = "RUNNING", now, now
                            task.custom_job_id = str(next(self._custom_ids))
                            run.job.update_time = now
                            self._pipeline_event(run, "INFO", f"Task {task.plan.name} started "
                                                 f"(CustomJob {task.custom_job_id})", task)
                            running[pool.submit(self._run_pipeline_task, run, task)] = task
                if not running:
                    break
                done, _ = concurrent.futures.wait(
                    running, timeout=0.2, return_when=concurrent.futures.FIRST_COMPLETED)
                for fut in done:
                    task = running.pop(fut)
                    try:
                        outcome = fut.result()
                    except Exception as exc:  # a bug in the fake: fail loudly, not hang
                        logger.exception("task runner crashed")
                        outcome = _ProcessOutcome(None, "", launch_error=f"fake bug: {exc!r}")
                    with self._lock:
                        now = _utcnow()
                        task.end_time = now
                        run.job.update_time = now
                        if outcome.ok:
                            task.state = "SUCCEEDED"
                        elif outcome.cancelled:
                            task.state = "CANCELLED"
                            task.error = "The task was cancelled."
                        else:
                            task.state = "FAILED"
                            task.error = outcome.describe()
                            failed.append(task)
                            logger.info("pipeline %s task %s failed: %s", run.job_id,
                                        task.plan.name, task.error)
                        self._pipeline_event(
                            run, "ERROR" if task.state == "FAILED" else "INFO",
                            f"Task {task.plan.name} {task.state.lower()}", task)

        with self._lock:
            leftover_state = "CANCELLED" if run.cancel_event.is_set() else "SKIPPED"
            for task in run.tasks.values():
                if task.state == "PENDING":
                    task.state = leftover_state
                    task.create_time = task.create_time or _utcnow()
            if run.cancel_event.is_set() and not failed:
                run.job.error = {"code": _RPC_CANCELLED,
                                 "message": "The pipeline job was cancelled."}
                self._set_state(run, "CANCELLED")
            elif failed:
                names = ", ".join(t.plan.name for t in failed)
                reasons = "; ".join(f"Task {t.plan.name} failed: {t.error}" for t in failed)
                run.job.error = {
                    "code": _RPC_FAILED_PRECONDITION,
                    "message": (f"The DAG failed because some tasks failed. The failed tasks "
                                f"are: [{names}].; {reasons}"),
                }
                self._set_state(run, "FAILED")
            else:
                self._set_state(run, "SUCCEEDED")
            logger.info("pipeline %s finished: %s", run.job_id, run.job.state.name)
            state = run.job.state.name[len("PIPELINE_STATE_"):]
            self._pipeline_event(run, "ERROR" if state == "FAILED" else "INFO",
                                 f"PipelineJob {run.job_id} {state.lower()}")

    @staticmethod
    def _skip_unreachable(run: _PipelineRun) -> None:
        changed = True
        while changed:
            changed = False
            for task in run.tasks.values():
                if task.state == "PENDING" and any(
                        run.tasks[d].state in ("FAILED", "SKIPPED", "CANCELLED")
                        for d in task.plan.deps):
                    now = _utcnow()
                    task.state, task.create_time, task.end_time = "SKIPPED", now, now
                    changed = True

    def _run_pipeline_task(self, run: _PipelineRun, task: _TaskRun) -> _ProcessOutcome:
        plan = task.plan
        values = {
            "{{$.pipeline_job_name}}": run.job_id,
            "{{$.pipeline_job_resource_name}}": run.job.name,
            "{{$.pipeline_job_uuid}}": str(run.root_task_id),
            "{{$.pipeline_task_name}}": plan.name,
            "{{$.pipeline_task_uuid}}": str(task.task_id),
            "{{$.pipeline_root}}": run.job.runtime_config.gcs_output_directory,
            "{{$.pipeline_job_create_time_utc}}": _rfc3339(run.job.create_time),
            "{{$.pipeline_job_schedule_time_utc}}": _rfc3339(run.job.create_time),
        }

        def resolve(text: str) -> str:
            text = _INPUT_PARAM_RE.sub(lambda m: plan.inputs[m.group("name")], text)
            for placeholder, value in values.items():
                text = text.replace(placeholder, value)
            return text

        argv = [resolve(t) for t in plan.command + plan.args]
        # As on Vertex, the task's container runs as a CustomJob and logs under it, not under the pipeline.
        resource = _custom_job_resource(run.project, str(task.custom_job_id))
        return self._launch(run.job.name, plan.name, plan.image, argv, plan.env, run.cancel_event,
                            lambda line, stream: _make_log_entry(
                                line, stream, log_name=f"projects/{run.project}/logs/{CUSTOM_JOB_REPLICA}",
                                resource=resource, labels={}))

    def _pipeline_event(self, run: _PipelineRun, severity: str, message: str,
                        task: _TaskRun | None = None) -> None:
        """An entry of the pipeline's own log (state changes), under the PipelineJob resource."""
        labels = {"task_name": task.plan.name, "task_id": str(task.task_id)} if task else {}
        self.logs.add({
            "logName": f"projects/{run.project}/logs/aiplatform.googleapis.com%2Fpipeline_job_events",
            "resource": {"type": PIPELINE_RESOURCE_TYPE,
                         "labels": {"pipeline_job_id": run.job_id, "location": run.location,
                                    "resource_container": f"projects/{run.project}"}},
            "labels": labels, "severity": severity, "jsonPayload": {"message": message},
        })

    def _launch(self, job_name: str, task_name: str, image: str, argv: list[str],
                container_env: Mapping[str, str], cancel_event: threading.Event,
                to_entry: Callable[[str, str], dict[str, Any] | None]) -> _ProcessOutcome:
        env = {**self.base_env, **container_env}
        if self.image_map is not None:
            if image not in self.image_map:
                return _ProcessOutcome(None, "", launch_error=(
                    f"image {image!r} could not be pulled (not in the fake's image_map)"))
            argv = [*(self.image_map[image] or []), *argv]
        record = ExecutedProcess(job_name, task_name, list(argv), dict(env),
                                 self.workdir or ".", image)
        with self._lock:
            self.executions.append(record)

        def on_line(line: str, stream: str) -> None:
            entry = to_entry(line, stream)
            if entry is not None:
                self.logs.add(entry)

        return _run_process(argv, env, self.workdir or ".", on_line=on_line,
                            cancel_event=cancel_event, timeout=self.task_timeout,
                            grace=self.cancel_grace, record=record)

    # --------------------------------------------------------- custom jobs

    def _create_custom_job(self, project: str, location: str, body: bytes) -> str:
        from google.cloud.aiplatform_v1 import types as v1

        job = _parse_proto(v1.CustomJob, body)
        if not job.display_name:
            raise _bad_request("CustomJob.display_name is required")
        _check_display_name(job.display_name)
        pools = list(job.job_spec.worker_pool_specs)
        if not pools:
            raise _bad_request("CustomJob.job_spec.worker_pool_specs must not be empty")
        if "python_package_spec" in pools[0] or not pools[0].container_spec.image_uri:
            raise _bad_request("worker_pool_specs[0].container_spec.image_uri is required "
                               "(python_package_spec is not supported by the fake)")
        with self._lock:
            job_id = str(next(self._custom_ids))
            name = f"projects/{project}/locations/{location}/customJobs/{job_id}"
            now = _utcnow()
            job.name = name
            job.state = v1.JobState.JOB_STATE_PENDING
            job.create_time = now
            job.update_time = now
            run = _CustomRun(job, project, location, job_id)
            self._custom_runs[name] = run
            run.thread = threading.Thread(target=self._execute_custom_job, args=(run,),
                                          name=f"custom-{job_id}", daemon=True)
            run.thread.start()
            return v1.CustomJob.to_json(job)

    def _execute_custom_job(self, run: _CustomRun) -> None:
        """Run worker pool 0's container once (replica_count is not simulated)."""
        with self._lock:
            if not run.cancel_event.is_set():
                self._set_state(run, "RUNNING")
            spec = run.job.job_spec.worker_pool_specs[0].container_spec
            image, argv = spec.image_uri, [*spec.command, *spec.args]
            env = {e.name: e.value for e in spec.env}
        resource = _custom_job_resource(run.project, run.job_id)
        if run.cancel_event.is_set():
            outcome = _ProcessOutcome(None, "", cancelled=True)
        elif not argv:
            outcome = _ProcessOutcome(None, "", launch_error=(
                "container_spec has no command/args and the fake cannot run image entrypoints"))
        else:
            outcome = self._launch(run.job.name, CUSTOM_JOB_REPLICA, image, argv, env,
                                   run.cancel_event,
                                   lambda line, stream: _make_log_entry(
                                       line, stream,
                                       log_name=f"projects/{run.project}/logs/{CUSTOM_JOB_REPLICA}",
                                       resource=resource, labels={}))
        with self._lock:
            if outcome.ok:
                self._set_state(run, "SUCCEEDED")
            elif outcome.cancelled:
                run.job.error = {"code": _RPC_CANCELLED, "message": "CANCELED"}
                self._set_state(run, "CANCELLED")
            else:
                code = _RPC_DEADLINE_EXCEEDED if outcome.timed_out else _RPC_INVALID_ARGUMENT
                run.job.error = {"code": code, "message": (
                    f"The replica {CUSTOM_JOB_REPLICA} failed: {outcome.describe()}")}
                self._set_state(run, "FAILED")
            logger.info("custom job %s finished: %s", run.job_id, run.job.state.name)

    # ------------------------------------------------------------- listing

    def _list_json(self, kind: str, project: str, location: str,
                   query: Mapping[str, list[str]]) -> str:
        from google.cloud.aiplatform_v1 import types as v1

        if (query.get("filter") or [""])[0]:
            raise _bad_request(f"the fake does not support filter on {kind} list")
        page_size = _page_size((query.get("pageSize") or ["0"])[0], default=100)
        offset = _decode_token((query.get("pageToken") or [""])[0])
        prefix = f"projects/{project}/locations/{location}/{kind}/"
        with self._lock:
            if kind == "pipelineJobs":
                runs = [r for n, r in self._pipeline_runs.items() if n.startswith(prefix)]
                page = runs[offset:offset + page_size]
                items = [json.loads(self._pipeline_json(r)) for r in page]
                result_key, more = "pipelineJobs", offset + page_size < len(runs)
            else:
                runs = [r for n, r in self._custom_runs.items() if n.startswith(prefix)]
                page = runs[offset:offset + page_size]
                items = [json.loads(v1.CustomJob.to_json(r.job)) for r in page]
                result_key, more = "customJobs", offset + page_size < len(runs)
        out: dict[str, Any] = {result_key: items}
        if more:
            out["nextPageToken"] = _encode_token(offset + page_size)
        return json.dumps(out)

    # ----------------------------------------------------------- logging

    def _list_entries(self, body: Mapping[str, Any]) -> str:
        resource_names = body.get("resourceNames") or []
        if not resource_names:
            raise _bad_request("resourceNames is required")
        projects = []
        for rn in resource_names:
            m = re.fullmatch(r"projects/([^/]+)", rn)
            if not m:
                raise _bad_request(f"unsupported resource name {rn!r} (only projects/PROJECT)")
            projects.append(m.group(1))
        try:
            clauses = parse_log_filter(body.get("filter"))
        except LogFilterError as exc:
            raise _bad_request(f"Invalid filter: {exc}") from None
        order_by = (body.get("orderBy") or "timestamp asc").strip().lower()
        if order_by not in ("timestamp asc", "timestamp desc", "timestamp"):
            raise _bad_request(f"unsupported orderBy {body.get('orderBy')!r}")
        page_size = _page_size(body.get("pageSize") or body.get("maxResults") or 0,
                               default=_DEFAULT_PAGE_SIZE)
        offset = _decode_token(body.get("pageToken") or "")

        entries = [
            e for e in self.logs.snapshot()
            if any(e.get("logName", "").startswith(f"projects/{p}/logs/") for p in projects)
            and all(_clause_matches(c, e) for c in clauses)
        ]
        # Stable sort: equal timestamps keep insertion order.
        entries.sort(key=lambda e: parse_timestamp(e["timestamp"]),
                     reverse=order_by == "timestamp desc")
        page = entries[offset:offset + page_size]
        out: dict[str, Any] = {"entries": page}
        if offset + page_size < len(entries):
            out["nextPageToken"] = _encode_token(offset + page_size)
        return json.dumps(out)

    def _write_entries(self, body: Mapping[str, Any]) -> str:
        entries = body.get("entries")
        if not isinstance(entries, list) or not entries:
            raise _bad_request("entries must be a non-empty list")
        for raw in entries:
            entry = dict(raw)
            if "logName" not in entry:
                if "logName" not in body:
                    raise _bad_request("logName is required (on the entry or the request)")
                entry["logName"] = body["logName"]
            if "resource" not in entry and "resource" in body:
                entry["resource"] = body["resource"]
            if body.get("labels"):
                entry["labels"] = {**body["labels"], **(entry.get("labels") or {})}
            if "timestamp" in entry:
                try:
                    entry["timestamp"] = _rfc3339(parse_timestamp(entry["timestamp"]))
                except ValueError as exc:
                    raise _bad_request(str(exc)) from None
            if not body.get("dryRun") and not body.get("dry_run"):
                self.logs.add(entry)
        return "{}"


def _custom_job_resource(project: str, job_id: str) -> dict[str, Any]:
    """The monitored resource a CustomJob's replica logs under (real Vertex's ``ml_job``)."""
    return {"type": CUSTOM_JOB_RESOURCE_TYPE,
            "labels": {"job_id": job_id, "project_id": project, "task_name": CUSTOM_JOB_REPLICA}}


def _check_display_name(name: str) -> None:
    if len(name) > _DISPLAY_NAME_LIMIT:
        raise _bad_request(f"display_name is {len(name)} characters long; it can be at most {_DISPLAY_NAME_LIMIT}")


def _parse_proto(message_cls: Any, body: bytes) -> Any:
    """Parse a REST body strictly: unknown fields are a client bug -> 400."""
    try:
        return message_cls.from_json(body.decode("utf-8") or "{}", ignore_unknown_fields=False)
    except Exception as exc:  # json_format.ParseError, UnicodeDecodeError, ...
        raise _bad_request(f"Invalid JSON payload received. {exc}") from None


def _page_size(raw: Any, *, default: int) -> int:
    try:
        size = int(raw)
    except (TypeError, ValueError):
        raise _bad_request(f"invalid page size {raw!r}") from None
    if size < 0:
        raise _bad_request(f"invalid page size {raw!r}")
    return min(size or default, _MAX_PAGE_SIZE)


def _encode_token(offset: int) -> str:
    return base64.urlsafe_b64encode(f"offset:{offset}".encode()).decode()


def _decode_token(token: str) -> int:
    if not token:
        return 0
    try:
        text = base64.urlsafe_b64decode(token.encode()).decode()
        if not text.startswith("offset:"):
            raise ValueError(text)
        return int(text[len("offset:"):])
    except ValueError:
        raise _bad_request(f"invalid page token {token!r}") from None


# --------------------------------------------------------------------------
# HTTP plumbing
# --------------------------------------------------------------------------

_SEG = r"[^/:]+"
_LOC = rf"/v1/projects/(?P<project>{_SEG})/locations/(?P<location>{_SEG})"

_ROUTES: list[tuple[str, re.Pattern[str], str]] = [
    ("POST", re.compile(rf"^{_LOC}/pipelineJobs$"), "create_pipeline_job"),
    ("GET", re.compile(rf"^{_LOC}/pipelineJobs$"), "list_pipeline_jobs"),
    ("GET", re.compile(rf"^{_LOC}/pipelineJobs/(?P<job>{_SEG})$"), "get_pipeline_job"),
    ("POST", re.compile(rf"^{_LOC}/pipelineJobs/(?P<job>{_SEG}):cancel$"), "cancel_pipeline_job"),
    ("POST", re.compile(rf"^{_LOC}/customJobs$"), "create_custom_job"),
    ("GET", re.compile(rf"^{_LOC}/customJobs$"), "list_custom_jobs"),
    ("GET", re.compile(rf"^{_LOC}/customJobs/(?P<job>{_SEG})$"), "get_custom_job"),
    ("POST", re.compile(rf"^{_LOC}/customJobs/(?P<job>{_SEG}):cancel$"), "cancel_custom_job"),
    ("POST", re.compile(r"^/v2/entries:list$"), "list_entries"),
    ("POST", re.compile(r"^/v2/entries:write$"), "write_entries"),
]


class _Handler(BaseHTTPRequestHandler):
    """Routes REST calls to the FakeGoogleCloud bound as the class attribute."""

    fake: FakeGoogleCloud  # set on a per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as requests.Session expects
    server_version = "FakeGoogleCloud/1.0"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        logger.debug("%s %s", self.address_string(), format % args)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch("GET")

    def do_POST(self) -> None:  # noqa: N802
        self._dispatch("POST")

    def do_DELETE(self) -> None:  # noqa: N802
        self._dispatch("DELETE")

    def do_PATCH(self) -> None:  # noqa: N802
        self._dispatch("PATCH")

    def do_PUT(self) -> None:  # noqa: N802
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        parts = urlsplit(self.path)
        path = unquote(parts.path)
        query = parse_qs(parts.query, keep_blank_values=True)
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        try:
            parsed: Any = json.loads(raw) if raw.strip() else None
        except ValueError:
            parsed = raw.decode("utf-8", errors="replace")
        self.fake.requests.append(RecordedRequest(method, path, query, parsed))
        try:
            if isinstance(parsed, str):
                raise _bad_request("Invalid JSON payload received.")
            payload = self._route(method, path, query, raw, parsed or {})
            self._send(200, payload)
        except _ApiError as err:
            logger.debug("%s %s -> %s %s", method, path, err.http_code, err.message)
            self._send(err.http_code, json.dumps({"error": {
                "code": err.http_code, "message": err.message, "status": err.status}}))
        except Exception as exc:  # a fake bug must surface as a 500, not a hang
            logger.exception("fake Google Cloud crashed on %s %s", method, path)
            self._send(500, json.dumps({"error": {
                "code": 500, "message": f"fake server error: {exc!r}", "status": "INTERNAL"}}))

    def _route(self, method: str, path: str, query: Mapping[str, list[str]], raw: bytes,
               body: Any) -> str:
        fake = self.fake
        for verb, rx, name in _ROUTES:
            m = rx.match(path)
            if not m or verb != method:
                continue
            g = m.groupdict()
            if name == "create_pipeline_job":
                return fake._create_pipeline_job(g["project"], g["location"], query, raw)
            if name == "get_pipeline_job":
                with fake._lock:
                    return fake._pipeline_json(
                        fake._get_run(_PIPELINE_JOB, g["project"], g["location"], g["job"]))
            if name == "cancel_pipeline_job":
                fake._cancel(_PIPELINE_JOB, g["project"], g["location"], g["job"])
                return "{}"
            if name == "list_pipeline_jobs":
                return fake._list_json("pipelineJobs", g["project"], g["location"], query)
            if name == "create_custom_job":
                return fake._create_custom_job(g["project"], g["location"], raw)
            if name == "get_custom_job":
                from google.cloud.aiplatform_v1 import types as v1
                with fake._lock:
                    run = fake._get_run(_CUSTOM_JOB, g["project"], g["location"], g["job"])
                    return v1.CustomJob.to_json(run.job)
            if name == "cancel_custom_job":
                fake._cancel(_CUSTOM_JOB, g["project"], g["location"], g["job"])
                return "{}"
            if name == "list_custom_jobs":
                return fake._list_json("customJobs", g["project"], g["location"], query)
            if name == "list_entries":
                return fake._list_entries(body)
            if name == "write_entries":
                return fake._write_entries(body)
        raise _not_found(f"The fake Google Cloud does not implement {method} {path}")

    def _send(self, code: int, payload: str) -> None:
        data = payload.encode("utf-8")
        self.send_response(code)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

