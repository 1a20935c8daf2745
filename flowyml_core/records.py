"""Step records: how execution units that run elsewhere hand data to each other.

A remote unit (a container of a Docker, Vertex AI or Kubernetes run) never
guesses where an upstream output is. When a step finishes, ``flowyml
step-runner`` writes a small JSON record for it into the run's area of the
stack's artifact store; a downstream unit reads the records of the steps it
depends on. A record says, for each declared output, where its value lives:

``artifact``  written by this run to the artifact store (``uri``)
``routed``    written by the stack's router to the store its rule chose (``uri``)
``cached``    the value of an earlier run, reached through a cache hit: the
              step's whole return value is the cache entry ``cache_key``
``none``      the output is ``None`` (nothing is stored)

plus the step's status (``completed``, ``cached``, ``skipped``, ``failed``),
its error, and the fingerprint of each output, so that downstream cache keys
are the ones a local run computes without re-hashing any value.

Records are written through the artifact store's public contract
(``materialize``/``load``/``uri_for``) as JSON, a format whose loading runs no
code: whoever can write to a shared bucket can point a record at another
artifact, but every artifact and cache entry is still loaded under the store's
own integrity and signing rules. The format is documented in
``docs/reference/remote.md``.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Literal, Mapping

import attrs

from flowyml_core.errors import FlowymlError
from flowyml_core.execution import asset_fingerprints, split_outputs
from flowyml_core.results import ExecutionResult

logger = logging.getLogger("flowyml.records")

RECORD_FORMAT = "flowyml-record/1"
#: The pseudo step under which a run's records are stored (``<run>/__flowyml__/<step>``).
RECORDS_DIR = "__flowyml__"
#: The record of a run's initial assets (``run_pipeline(inputs=...)``).
INPUTS_RECORD = "__inputs__"
#: The record a ``stop`` request leaves (see :meth:`RunRecords.request_stop`).
STOP_RECORD = "__stop__"
#: Captured output kept in a record: the end of it, which explains a failure best.
MAX_RECORD_LOGS = 64 * 1024

Status = Literal["completed", "cached", "skipped", "failed"]
OutputKind = Literal["artifact", "routed", "cached", "none"]


class RecordError(FlowymlError):
    """A record is missing, unreadable, or points at something that cannot be loaded."""


@attrs.define(frozen=True)
class OutputRef:
    """Where one output of a step lives."""

    kind: OutputKind
    uri: str | None = None
    cache_key: str | None = None
    fingerprint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {k: v for k, v in attrs.asdict(self).items() if v is not None}


@attrs.define
class StepRecord:
    """What one step of a run left for the units after it."""

    step: str
    status: Status
    unit: str = ""
    outputs: dict[str, OutputRef] = attrs.field(factory=dict)
    error: str | None = None
    duration_seconds: float = 0.0
    retries: int = 0
    output_fingerprint: str | None = None
    cache_key: str | None = None
    artifact_uris: dict[str, str] = attrs.field(factory=dict)
    logs: str | None = None
    #: Why steps that consume this step's outputs are not run (a failed or skipped step).
    blocks: str | None = None
    written: float = 0.0

    @property
    def succeeded(self) -> bool:
        return self.status in ("completed", "cached")

    def to_json(self) -> dict[str, Any]:
        data = {
            "format": RECORD_FORMAT,
            "step": self.step,
            "unit": self.unit,
            "status": self.status,
            "outputs": {name: ref.to_json() for name, ref in self.outputs.items()},
            "duration_seconds": self.duration_seconds,
            "retries": self.retries,
            "written": self.written or time.time(),
        }
        for key in ("error", "output_fingerprint", "cache_key", "logs", "blocks"):
            if getattr(self, key) is not None:
                data[key] = getattr(self, key)
        if self.artifact_uris:
            data["artifact_uris"] = dict(self.artifact_uris)
        return data

    @classmethod
    def from_json(cls, data: Any, where: str) -> StepRecord:
        if not isinstance(data, Mapping) or data.get("format") != RECORD_FORMAT:
            found = data.get("format") if isinstance(data, Mapping) else type(data).__name__
            raise RecordError(f"{where} is not a flowyml step record ({RECORD_FORMAT}), found {found!r}")
        try:
            outputs = {name: OutputRef(**ref) for name, ref in dict(data.get("outputs") or {}).items()}
            return cls(
                step=str(data["step"]), status=data["status"], unit=str(data.get("unit", "")), outputs=outputs,
                error=data.get("error"), duration_seconds=float(data.get("duration_seconds", 0.0)),
                retries=int(data.get("retries", 0)), output_fingerprint=data.get("output_fingerprint"),
                cache_key=data.get("cache_key"), artifact_uris=dict(data.get("artifact_uris") or {}),
                logs=data.get("logs"), blocks=data.get("blocks"), written=float(data.get("written", 0.0)),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise RecordError(f"{where} is a damaged step record ({type(exc).__name__}: {exc})") from None

    def to_result(self, output: Any = None) -> ExecutionResult:
        """The :class:`ExecutionResult` a local run would have reported for this step."""
        return ExecutionResult(
            step_name=self.step,
            success=self.status != "failed",
            output=output,
            error=self.error,
            duration_seconds=self.duration_seconds,
            cached=self.status == "cached",
            skipped=self.status == "skipped",
            artifact_uri=next(iter(self.artifact_uris.values()), None),
            retries=self.retries,
            output_fingerprint=self.output_fingerprint,
            artifact_uris=dict(self.artifact_uris),
            logs=self.logs,
        )


def record_of(step: Any, result: ExecutionResult, unit: str = "", *, blocks: str | None = None,
              artifact_store: Any = None, run_id: str | None = None, project_name: str = "default") -> StepRecord:
    """The record of a step's result, as the step runner writes it.

    A cached result points at its cache entry; a computed one at the URIs its
    outputs were written to. An output stored anywhere but the artifact
    store's own place for it (``uri_for``) was routed there. An output that
    is ``None`` is stored nowhere and says so.
    """
    if not result.success:
        status: Status = "failed"
    elif result.skipped:
        status = "skipped"
    elif result.cached:
        status = "cached"
    else:
        status = "completed"
    outputs: dict[str, OutputRef] = {}
    if status in ("completed", "cached"):
        assets = split_outputs(step, result.output)
        fps = asset_fingerprints(step, result.output_fingerprint, assets)
        for name, value in assets.items():
            fp = fps.get(name)
            if value is None:
                outputs[name] = OutputRef("none", fingerprint=fp)
            elif status == "cached" and result.cache_key:
                outputs[name] = OutputRef("cached", cache_key=result.cache_key, fingerprint=fp)
            elif name in result.artifact_uris:
                uri = result.artifact_uris[name]
                own = artifact_store is not None and run_id is not None and \
                    uri == artifact_store.uri_for(run_id, step.name, name, project_name)
                outputs[name] = OutputRef("artifact" if own else "routed", uri=uri, fingerprint=fp)
            else:
                raise RecordError(
                    f"step {step.name!r}: output {name!r} was neither stored nor cached, so no other unit "
                    "could read it; remote runs need an artifact store in the stack"
                )
    logs = result.logs
    if logs is not None and len(logs) > MAX_RECORD_LOGS:
        logs = "[flowyml] earlier output cut\n" + logs[-MAX_RECORD_LOGS:]
    return StepRecord(
        step=step.name, status=status, unit=unit, outputs=outputs, error=result.error,
        duration_seconds=result.duration_seconds, retries=result.retries,
        output_fingerprint=result.output_fingerprint, cache_key=result.cache_key,
        artifact_uris=dict(result.artifact_uris), logs=logs, blocks=blocks,
    )


class RunRecords:
    """The records of one run, in its area of an artifact store."""

    def __init__(self, artifact_store: Any, run_id: str, project_name: str = "default") -> None:
        if artifact_store is None:
            raise FlowymlError(
                "this stack has no artifact_store: units that run elsewhere hand their outputs to each other "
                "through one (add e.g. artifact_store = { flavor = \"local\", path = \".flowyml/artifacts\" })"
            )
        self.store = artifact_store
        self.run_id = run_id
        self.project_name = project_name

    def uri(self, step_name: str) -> str:
        return self.store.uri_for(self.run_id, RECORDS_DIR, step_name, self.project_name)

    def write(self, record: StepRecord) -> str:
        data = record.to_json()
        return self.store.materialize(
            obj=data, name=record.step, run_id=self.run_id, step_name=RECORDS_DIR, project_name=self.project_name
        )

    def read(self, step_name: str) -> StepRecord | None:
        """The step's record in this run, or None when it has written none (yet)."""
        uri = self.uri(step_name)
        try:
            data = self.store.load(uri)
        except FileNotFoundError:
            return None
        return StepRecord.from_json(data, f"record {uri}")

    def read_all(self, step_names: Any) -> dict[str, StepRecord]:
        found = {}
        for name in step_names:
            record = self.read(name)
            if record is not None:
                found[name] = record
        return found

    # -- values --------------------------------------------------------------------------
    def load_output(self, record: StepRecord, asset: str, step: Any, *, cache_store: Any = None,
                    router: Any = None) -> Any:
        """The value of output ``asset`` of the step ``record`` describes."""
        ref = record.outputs.get(asset)
        where = f"output {asset!r} of step {record.step!r} in run {self.run_id}"
        if ref is None:
            raise RecordError(f"{where}: its record lists no such output (it has {sorted(record.outputs) or 'none'})")
        if ref.kind == "none":
            return None
        if ref.kind == "cached":
            if cache_store is None:
                raise RecordError(f"{where} is a cache entry, but this stack has no cache_store to read it from")
            entry = cache_store.get(ref.cache_key)
            if entry is None:
                raise RecordError(
                    f"{where} was a cache hit on entry {ref.cache_key}, which is gone from the cache store now "
                    "(pruned or invalidated); run the pipeline again"
                )
            assets = split_outputs(step, entry.value)
            return assets[asset] if asset in assets else entry.value
        if ref.kind == "routed":
            if router is None:
                raise RecordError(f"{where} was written by a router to {ref.uri}, but this stack has no router")
            try:
                return router.load(ref.uri)
            except NotImplementedError:
                raise RecordError(f"{where} was written by the stack's router to {ref.uri}, and that router cannot "
                                  "load it back (it does not implement Router.load)") from None
        if ref.kind == "artifact":
            try:
                return self.store.load(ref.uri)
            except FileNotFoundError:
                raise RecordError(f"{where} was written to {ref.uri}, which is gone from the artifact store") from None
        raise RecordError(f"{where}: unknown output kind {ref.kind!r} in its record")

    # -- initial assets and stop requests ------------------------------------------------
    def write_inputs(self, inputs: Mapping[str, Any]) -> StepRecord:
        """Store a run's initial assets (``run_pipeline(inputs=...)``) for every unit to read."""
        from flowyml_core.fingerprint import fingerprint

        outputs = {}
        for name, value in inputs.items():
            if value is None:
                outputs[name] = OutputRef("none", fingerprint=fingerprint(None))
                continue
            uri = self.store.materialize(obj=value, name=name, run_id=self.run_id, step_name=INPUTS_RECORD,
                                         project_name=self.project_name)
            outputs[name] = OutputRef("artifact", uri=uri, fingerprint=fingerprint(value))
        record = StepRecord(step=INPUTS_RECORD, status="completed", outputs=outputs)
        self.write(record)
        return record

    def request_stop(self, reason: str = "stop requested") -> None:
        """Ask whoever walks this run to start nothing more (``flowyml runs stop``)."""
        self.write(StepRecord(step=STOP_RECORD, status="failed", error=reason))

    def stop_requested(self) -> str | None:
        record = self.read(STOP_RECORD)
        return record.error if record is not None else None
