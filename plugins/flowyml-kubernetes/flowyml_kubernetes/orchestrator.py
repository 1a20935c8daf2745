"""``KubernetesOrchestrator``: flowyml runs as Jobs in a Kubernetes namespace.

``run_pipeline`` (:mod:`flowyml_kubernetes.submission`) checks the cache on
the client, then creates one orchestrator Job whose pod walks the DAG in the
cluster (:mod:`flowyml_kubernetes.orchestrate`) and starts one Job per
execution unit. The client may wait, or detach and come back by run id:
everything a later process needs is on the cluster (the Jobs, their labels
and environment) and in the run's records.

A job id is the orchestrator Job's name (``flowyml-<run id>``); a run id is
accepted too.

This module imports no Kubernetes code at import time; building the
orchestrator from a stack does not either.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any, Iterator

from flowyml_core.components import RemoteOrchestrator
from flowyml_core.errors import FlowymlError
from flowyml_core.log_stream import end_entry, format_entry
from flowyml_core.results import ExecutionStatus

from flowyml_kubernetes.config import KubernetesConfig
from flowyml_kubernetes.submission import SubmissionMixin

logger = logging.getLogger("flowyml.kubernetes")
_PROPAGATION = "Background"


class RunNotFoundError(FlowymlError):
    """No orchestrator Job for the job id: never created, in another namespace, or deleted."""


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


class KubernetesOrchestrator(SubmissionMixin, RemoteOrchestrator):
    """Runs pipelines as Jobs in one namespace and tracks them by orchestrator Job name."""

    def __init__(self, config: KubernetesConfig | None = None) -> None:
        super().__init__(config if config is not None else KubernetesConfig())
        self.config: KubernetesConfig
        self._api: Any = None
        self._lock = threading.Lock()

    @property
    def api(self) -> Any:
        """The API client, made on first use (importing the kubernetes client costs time)."""
        with self._lock:
            if self._api is None:
                from flowyml_kubernetes.clients import api_from_config

                self._api = api_from_config(self.config)
            return self._api

    def close(self) -> None:
        if self._api is not None:
            self._api.close()
            self._api = None

    # -- checks ---------------------------------------------------------------------------
    def validate(self) -> None:
        """One message listing what is wrong: the image settings, then whether the namespace is reachable."""
        import importlib.util

        from flowyml_kubernetes.clients import KubernetesAPIError, api_errors

        cfg = self.config
        if importlib.util.find_spec("kubernetes") is None:
            from flowyml_core.plugins import install_command

            raise FlowymlError(f"kubernetes executor: the kubernetes client is not installed ({install_command('flowyml-kubernetes')})")
        if not cfg.image and not cfg.registry:
            raise FlowymlError("kubernetes executor: neither image (a pre-built image) nor registry (where to push "
                               "one built from the project) is set")
        api = self.api
        try:
            with api_errors(f"reading namespace {cfg.namespace}", api.where):
                api.core.read_namespace(cfg.namespace)
        except KubernetesAPIError as exc:
            if exc.status == 404:
                raise FlowymlError(f"kubernetes executor: namespace {cfg.namespace!r} does not exist on the API at "
                                   f"{api.where}; create it (kubectl create namespace {cfg.namespace}) or set "
                                   "namespace in the stack") from None
            if exc.status != 403:
                raise
            # Not allowed to read namespaces (common): listing Jobs there is what runs need anyway.
            with api_errors(f"listing Jobs in namespace {cfg.namespace}", api.where):
                api.batch.list_namespaced_job(cfg.namespace, limit=1)

    def to_dict(self) -> dict[str, Any]:
        data = super().to_dict()
        data.update({"type": "kubernetes", "namespace": self.config.namespace,
                     "context": self.config.context, "api_server": self.config.api_server})
        return data

    # -- finding a run --------------------------------------------------------------------
    def _job(self, job_id: str) -> Any:
        """The orchestrator Job ``job_id`` names (its name, ``namespace/name``, or the run id)."""
        from flowyml_kubernetes.clients import KubernetesAPIError, api_errors
        from flowyml_kubernetes.manifests import orchestrator_name

        namespace, _, name = job_id.rpartition("/")
        namespace = namespace or self.config.namespace
        candidates = [name] if name.startswith("flowyml-") else [orchestrator_name(name), name]
        for candidate in candidates:
            try:
                with api_errors(f"reading Job {namespace}/{candidate}", self.api.where):
                    return self.api.batch.read_namespaced_job(candidate, namespace)
            except KubernetesAPIError as exc:
                if exc.status != 404:
                    raise
        raise RunNotFoundError(
            f"no run {job_id!r} in namespace {namespace} on the Kubernetes API at {self.api.where}: it ran in another "
            "namespace or cluster, was fully cached (nothing was created), or its Jobs were deleted "
            "(ttl_seconds_after_finished)")

    def _records(self, job: Any) -> Any:
        """The run's records, from the stack its orchestrator Job carries (``${env:…}`` read here)."""
        import os

        from flowyml_core.records import RunRecords
        from flowyml_core.shipping import STACK_CONFIG_ENV, stack_from_payload

        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env or [] if e.value is not None}
        payload = env.get(STACK_CONFIG_ENV)
        if not payload:
            raise FlowymlError(f"Job {job.metadata.name} carries no stack: it was not created by flowyml-kubernetes")
        stack = stack_from_payload(payload, os.environ, kinds=("artifact_store",))
        return RunRecords(stack.artifact_store, env.get("FLOWYML_RUN_ID", ""), env.get("FLOWYML_PROJECT_NAME") or "default")

    def _unit_jobs(self, job: Any) -> list[Any]:
        from flowyml_kubernetes.clients import api_errors
        from flowyml_kubernetes.manifests import LABEL_ROLE, LABEL_RUN, ROLE_UNIT

        run_label = job.metadata.labels[LABEL_RUN]
        with api_errors(f"listing the unit Jobs of run {run_label}", self.api.where):
            jobs = self.api.batch.list_namespaced_job(
                job.metadata.namespace, label_selector=f"{LABEL_RUN}={run_label},{LABEL_ROLE}={ROLE_UNIT}").items
        return sorted(jobs, key=lambda j: (j.metadata.creation_timestamp is None, j.metadata.creation_timestamp or 0,
                                           j.metadata.name))

    # -- status ---------------------------------------------------------------------------
    def get_run_status(self, job_id: str) -> ExecutionStatus:
        """The orchestrator Job's status; a run whose orchestrator pod cannot start is given up (FAILED)."""
        from flowyml_kubernetes.logs import job_stuck
        from flowyml_kubernetes.status import run_status

        job = self._job(job_id)
        status = run_status(job)
        if status.is_finished or job.status.ready:
            return status
        stuck = job_stuck(self.api, job.metadata.namespace or self.config.namespace, job.metadata.name)
        if stuck is None:
            return status
        self._give_up(job, f"its pod cannot start ({stuck}); check image and image_pull_secrets")
        return ExecutionStatus.FAILED

    def _give_up(self, job: Any, reason: str) -> None:
        """Mark the run failed and suspend its orchestrator, whose pod would otherwise wait (and hold a node) forever."""
        from flowyml_kubernetes.clients import api_errors
        from flowyml_kubernetes.manifests import ANNOTATION_FAILED

        name, namespace = job.metadata.name, job.metadata.namespace or self.config.namespace
        logger.error("run %s: %s; suspending its orchestrator Job", name, reason)
        with api_errors(f"suspending Job {namespace}/{name}", self.api.where):
            self.api.batch.patch_namespaced_job(
                name, namespace, {"metadata": {"annotations": {ANNOTATION_FAILED: reason}}, "spec": {"suspend": True}})

    def wait(self, job_id: str, timeout: float | None = None, poll_interval: float | None = None, *,
             records: Any = None) -> ExecutionStatus:
        """Poll every ``poll_interval`` seconds until the run ends; TimeoutError after ``timeout``.

        A run whose Job disappears while waited for was stopped when its
        records say so (``records``: the waiting client's), else it is an error.
        """
        interval = poll_interval or self.config.poll_interval
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            try:
                status = self.get_run_status(job_id)
            except FlowymlError:
                if records is not None and records.stop_requested():
                    return ExecutionStatus.STOPPED
                raise
            if status.is_finished:
                return status
            if deadline is not None:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(
                        f"Kubernetes run {job_id} is still {status.value} after {timeout:.1f}s; it keeps running "
                        f"(check it with `flowyml runs status {job_id}`, stop it with `flowyml runs stop {job_id}`)")
                time.sleep(min(interval, remaining))
            else:
                time.sleep(interval)

    def get_run_details(self, job_id: str) -> dict[str, Any]:
        """The orchestrator Job's state, and each unit Job with its pods."""
        from flowyml_kubernetes.logs import run_pods
        from flowyml_kubernetes.manifests import ANNOTATION_RUN, ANNOTATION_STEPS, ANNOTATION_UNIT, LABEL_RUN
        from flowyml_kubernetes.status import given_up, job_outcome, run_status, unit_status

        job = self._job(job_id)
        namespace = job.metadata.namespace or self.config.namespace
        pods_by_job: dict[str, list[dict[str, Any]]] = {}
        for pod in run_pods(self.api, namespace, job.metadata.labels[LABEL_RUN]):
            pods_by_job.setdefault((pod.metadata.labels or {}).get("job-name", ""), []).append(_pod_info(pod))
        units = []
        for unit in self._unit_jobs(job):
            outcome = job_outcome(unit)
            annotations = unit.metadata.annotations or {}
            units.append({
                "unit": annotations.get(ANNOTATION_UNIT), "job": unit.metadata.name,
                "steps": [s for s in (annotations.get(ANNOTATION_STEPS) or "").split(",") if s],
                "status": unit_status(unit).value,
                "error": outcome if outcome not in (None, "complete") else None,
                "start_time": _iso(unit.status.start_time), "completion_time": _iso(unit.status.completion_time),
                "pods": pods_by_job.get(unit.metadata.name, []),
            })
        outcome = given_up(job) or job_outcome(job)
        return {
            "job_id": job.metadata.name, "platform": "kubernetes", "namespace": namespace,
            "run_id": (job.metadata.annotations or {}).get(ANNOTATION_RUN),
            "status": run_status(job).value,
            "error": outcome if outcome not in (None, "complete") else None,
            "create_time": _iso(job.metadata.creation_timestamp), "start_time": _iso(job.status.start_time),
            "completion_time": _iso(job.status.completion_time),
            "image": job.spec.template.spec.containers[0].image,
            "labels": dict(job.metadata.labels or {}),
            "orchestrator_pods": pods_by_job.get(job.metadata.name, []),
            "units": units,
            "failed_units": {u["unit"]: u["error"] for u in units if u["error"]},
        }

    def unit_failures(self, job_id: str) -> dict[str, str]:
        """Why each failed unit failed, as its Job says (for units that left no record)."""
        from flowyml_kubernetes.logs import last_lines

        try:
            details = self.get_run_details(job_id)
        except RunNotFoundError:  # deleted (stopped without grace): the records are all there is
            return {}
        failures = dict(details["failed_units"])
        if details.get("error") and not failures:  # the orchestrator itself failed before any unit did
            said = last_lines(self.api, details["namespace"], details["job_id"], 1)
            reason = f"the orchestrator of the run failed ({details['error']})" + (f": {said[-1]}" if said else "")
            failures.update(dict.fromkeys(self._planned_units(job_id), reason))
        return failures

    def _planned_units(self, job_id: str) -> list[str]:
        import json

        from flowyml_kubernetes.orchestrate import PLAN_ENV

        job = self._job(job_id)
        env = {e.name: e.value for e in job.spec.template.spec.containers[0].env or []}
        try:
            return list(json.loads(env.get(PLAN_ENV) or "{}").get("units", {}))
        except ValueError:
            return []

    # -- logs -----------------------------------------------------------------------------
    def get_run_logs(self, job_id: str, max_entries: int = 200) -> str:
        """The last ``max_entries`` lines of the orchestrator's and the units' pods, in time order."""
        from flowyml_kubernetes.logs import run_entries
        from flowyml_kubernetes.manifests import LABEL_RUN

        job = self._job(job_id)
        entries = run_entries(self.api, job.metadata.namespace or self.config.namespace, job.metadata.labels[LABEL_RUN])
        return "\n".join(format_entry(e) for e in entries[-max_entries:])

    def stream_logs(self, job_id: str, poll_interval: float | None = None) -> Iterator[dict[str, Any]]:
        """Yield new log entries as the pods write them, then one ``is_finished`` entry when the run ends."""
        from flowyml_kubernetes.logs import PodLogFollower
        from flowyml_kubernetes.manifests import LABEL_RUN

        interval = poll_interval or self.config.poll_interval
        job = self._job(job_id)
        follower = PodLogFollower(self.api, job.metadata.namespace or self.config.namespace, job.metadata.labels[LABEL_RUN])
        while True:
            status = self.get_run_status(job_id)  # a run whose orchestrator cannot start ends the stream too
            yield from follower.read()
            if status.is_finished:
                yield end_entry(f"run {job_id}", status)
                return
            time.sleep(interval)

    # -- control --------------------------------------------------------------------------
    def stop_run(self, job_id: str, graceful: bool = True) -> None:
        """Write the run's stop request, delete its unit Jobs (and their pods), and suspend its orchestrator.

        The stop record stops an orchestrator that is between two polls from
        starting anything more; the unit Jobs are deleted with their pods; the
        orchestrator Job is suspended (its pod is ended) and marked, so it stays
        listed as STOPPED until it is deleted. ``graceful=False`` deletes the
        orchestrator Job too.
        """
        import datetime

        from flowyml_kubernetes.clients import KubernetesAPIError, api_errors
        from flowyml_kubernetes.manifests import ANNOTATION_STOPPED
        from flowyml_kubernetes.status import run_status

        job = self._job(job_id)
        name, namespace = job.metadata.name, job.metadata.namespace or self.config.namespace
        status = run_status(job)
        if status.is_finished:
            raise FlowymlError(f"run {job_id} already finished ({status.value}); nothing to stop")
        self._records(job).request_stop(f"stopped by flowyml runs stop ({job_id})")
        for unit in self._unit_jobs(job):
            try:
                with api_errors(f"deleting Job {namespace}/{unit.metadata.name}", self.api.where):
                    self.api.batch.delete_namespaced_job(unit.metadata.name, namespace, propagation_policy=_PROPAGATION)
            except KubernetesAPIError as exc:
                if exc.status != 404:  # already gone is what we want
                    raise
        if not graceful:
            with api_errors(f"deleting Job {namespace}/{name}", self.api.where):
                self.api.batch.delete_namespaced_job(name, namespace, propagation_policy=_PROPAGATION)
            logger.info("run %s: deleted its Jobs", job_id)
            return
        stamp = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
        with api_errors(f"suspending Job {namespace}/{name}", self.api.where):
            self.api.batch.patch_namespaced_job(
                name, namespace, {"metadata": {"annotations": {ANNOTATION_STOPPED: stamp}}, "spec": {"suspend": True}})
        logger.info("run %s: stop requested; unit Jobs deleted, orchestrator Job %s suspended", job_id, name)


def _pod_info(pod: Any) -> dict[str, Any]:
    info: dict[str, Any] = {"name": pod.metadata.name, "phase": pod.status.phase, "node": pod.spec.node_name}
    for status in pod.status.container_statuses or []:
        terminated = status.state.terminated if status.state is not None else None
        if terminated is not None:
            info["exit_code"] = terminated.exit_code
            info["reason"] = terminated.reason
    return info
