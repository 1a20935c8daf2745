"""The contracts that plugins implement.

A component is built as ``Implementation(config)`` where ``config`` is an
instance of the attrs class registered with it (or ``None`` when the flavor has
no options). Only ``Executor.execute_step`` is required of an executor: groups
and whole pipelines are walked by the defaults here.
"""

from __future__ import annotations

import abc
from typing import Any, Iterator, Mapping

import attrs

from flowyml_core.calling import keyword_caller
from flowyml_core.results import ExecutionResult, ExecutionStatus, RunResult, SubmissionResult

__all__ = [
    "ArtifactStore", "CacheEntry", "CacheStore", "Component", "Executor", "RemoteOrchestrator", "Router",
    "keyword_caller",
]


class Component:
    """Common base: holds the config and offers validate/to_dict."""

    def __init__(self, config: Any = None) -> None:
        self.config = config

    def validate(self) -> None:
        """Check that the component can work (credentials, buckets…); raise FlowymlError if not."""

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": type(self).__name__}
        if self.config is not None and attrs.has(type(self.config)):
            for field in attrs.fields(type(self.config)):
                value = getattr(self.config, field.name)
                data[field.name] = "****" if field.metadata.get("secret") and value else value
        return data


class Executor(Component):
    """Runs steps. Implement ``execute_step``; the rest has working defaults."""

    #: How many execution units the default walk may run at once.
    max_workers: int = 1

    @abc.abstractmethod
    def execute_step(
        self,
        step: Any,
        inputs: dict[str, Any],
        context_params: dict[str, Any],
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        run_id: str | None = None,
        project_name: str = "default",
        all_outputs: dict[str, Any] | None = None,
    ) -> ExecutionResult:
        """Run one step and report the outcome; a step's failure is a result, not an exception.

        Implementations may also accept ``router`` and ``input_fingerprints``;
        callers pass them only to implementations that declare them.
        """

    def execute_step_group(
        self,
        step_group: Any,
        inputs: dict[str, Any],
        context: Any | None = None,
        context_params: dict[str, Any] | None = None,
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        run_id: str | None = None,
        project_name: str = "default",
        **extra: Any,
    ) -> list[ExecutionResult]:
        """Run a group's steps in order, in one environment (see docs/reference/executor.md)."""
        from flowyml_core.execution import run_step_group

        return run_step_group(
            keyword_caller(self.execute_step),
            step_group,
            inputs,
            context=context,
            context_params=context_params,
            fingerprints=extra.pop("input_fingerprints", None),
            cache_store=cache_store,
            artifact_store=artifact_store,
            run_id=run_id,
            project_name=project_name,
            **extra,
        )

    def run_pipeline(
        self,
        pipeline: Any,
        run_id: str,
        *,
        context: Any | None = None,
        cache_store: Any | None = None,
        artifact_store: Any | None = None,
        router: Any | None = None,
        run: Any | None = None,
        hooks: Any | None = None,
        inputs: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> RunResult | SubmissionResult:
        """Walk the execution units in dependency order with this executor's methods.

        ``inputs`` are initial assets: a step whose parameter has the name of
        one receives it (as in the seed's groups).
        """
        from flowyml_core.walker import PipelineWalker

        return PipelineWalker(
            self,
            pipeline,
            run_id,
            context=context,
            cache_store=cache_store,
            artifact_store=artifact_store,
            router=router,
            run=run,
            hooks=hooks,
            max_workers=self.max_workers,
            initial=inputs,
        ).run()


class RemoteOrchestrator(Executor):
    """An executor that submits whole pipelines elsewhere and tracks them by job id."""

    def execute_step(self, step: Any, inputs: dict[str, Any], context_params: dict[str, Any], **kwargs: Any) -> ExecutionResult:
        raise NotImplementedError(f"{type(self).__name__} runs whole pipelines; use run_pipeline")

    @abc.abstractmethod
    def run_pipeline(self, pipeline: Any, run_id: str, **kwargs: Any) -> SubmissionResult:  # type: ignore[override]
        """Submit the pipeline and return at once with its job id."""

    @abc.abstractmethod
    def get_run_status(self, job_id: str) -> ExecutionStatus: ...

    @abc.abstractmethod
    def get_run_details(self, job_id: str) -> dict[str, Any]: ...

    @abc.abstractmethod
    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str: ...

    @abc.abstractmethod
    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield log entries (:func:`flowyml_core.log_stream.log_entry`) as they arrive, then one with
        ``is_finished`` true and the final ``status`` (:func:`~flowyml_core.log_stream.end_entry`)."""

    @abc.abstractmethod
    def stop_run(self, job_id: str, graceful: bool = True) -> None: ...


@attrs.define(frozen=True)
class CacheEntry:
    """A cache hit. ``value`` may be ``None``: a hit is the entry, not its value."""

    value: Any
    step_name: str
    code_hash: str
    fingerprint: str | None = None
    created: float = 0.0


class CacheStore(Component):
    """Step results by cache key."""

    @abc.abstractmethod
    def get(self, key: str) -> CacheEntry | None:
        """The entry, or None on a miss. A corrupt or untrusted entry is a miss, logged."""

    def lookup(self, key: str) -> CacheEntry | None:
        """The entry for ``key``, where its ``value`` is not needed (it may be None).

        A remote run decides on the client which units are cached from the
        entries' fingerprints alone; a store that can read an entry's metadata
        without its value should override this so that deciding loads no data.
        """
        return self.get(key)

    @abc.abstractmethod
    def set_value(
        self, key: str, value: Any, step_name: str, code_hash: str, fingerprint: str | None = None
    ) -> None:
        """Store atomically: a reader sees the old entry, the new one, or none."""

    @abc.abstractmethod
    def invalidate(self, key: str | None = None, step_name: str | None = None) -> int:
        """Drop one key, or every entry of a step; returns how many were dropped."""

    @abc.abstractmethod
    def clear(self) -> None: ...

    @abc.abstractmethod
    def stats(self) -> Mapping[str, Any]:
        """At least ``entries`` and ``bytes``; stores may add hits/misses."""

    def prune(self, older_than: float | None = None, *, dry_run: bool = False) -> Mapping[str, Any]:
        """Free storage (``flowyml cache prune``); returns what was removed (``dry_run``: would be).

        Stores remove what no reader will use (temp files of interrupted
        writes, old enough not to be writes in progress) and, with
        ``older_than`` (seconds), entries written longer ago. The result has
        ``removed`` (a count per kind of thing, e.g. ``{"entries": 3}``),
        ``bytes`` freed and ``dry_run``. A store that cannot prune keeps this
        default, which removes nothing and says so with ``supported: False``.
        """
        return {"removed": {}, "bytes": 0, "dry_run": dry_run, "supported": False}


class ArtifactStore(Component):
    """Step outputs, one per (project, run, step, name); ``uri_for`` says where (the layout is the store's)."""

    @abc.abstractmethod
    def materialize(self, obj: Any, name: str, run_id: str, step_name: str, project_name: str = "default") -> str:
        """Write ``obj`` and return its URI; atomic, with an integrity record."""

    @abc.abstractmethod
    def load(self, uri: str) -> Any:
        """Read back what ``materialize`` wrote; refuse altered or untrusted bytes."""

    @abc.abstractmethod
    def uri_for(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> str:
        """Where ``materialize`` puts (or put) that asset."""

    def exists(self, uri: str) -> bool:
        raise NotImplementedError

    def load_artifact(self, run_id: str, step_name: str, name: str, project_name: str = "default") -> Any:
        return self.load(self.uri_for(run_id, step_name, name, project_name))

    def prune(self, older_than: float | None = None, keep_runs: int | None = None, *,
              dry_run: bool = False) -> Mapping[str, Any]:
        """Free storage (``flowyml cache prune``); returns what was removed (``dry_run``: would be).

        Stores remove what no reader will use (leftovers of interrupted
        writes); with ``older_than`` (seconds), the artifacts of runs older
        than that, and with ``keep_runs``, of all but the newest ``keep_runs``
        runs of each project (both: older runs beyond the newest ones). The
        result is shaped as :meth:`CacheStore.prune`'s; this default removes
        nothing and says ``supported: False``.
        """
        return {"removed": {}, "bytes": 0, "dry_run": dry_run, "supported": False}


class Router(Component):
    """Sends some outputs elsewhere (another store, path or format) by their type."""

    @abc.abstractmethod
    def route(
        self,
        output: Any,
        *,
        name: str,
        step_name: str,
        run_id: str,
        project_name: str = "default",
        return_type: Any = None,
    ) -> str | None:
        """Store ``output`` and return its URI when a rule matches, else None."""

    def load(self, uri: str) -> Any:
        """Read back an output this router stored at ``uri``.

        Needed when units run elsewhere: a downstream unit finds a routed
        output through its producer's record and loads it here.
        """
        raise NotImplementedError(f"{type(self).__name__} cannot load what it routed")
