"""The orchestrator pod: ``python -m flowyml_kubernetes.orchestrate``.

The client creates one orchestrator Job per run and may then go away. Its pod
walks the DAG *in the cluster*: it imports the pipeline (the image holds the
project, as for every unit), builds the stack the client shipped, and walks
the units with the core's :meth:`flowyml_core.remote.RemoteRun.walk`, which
gives it the local run's semantics for free: independent units at once (at
most ``max_parallel``), nothing below a failed step, nothing more after a
``__stop__`` record. "Running" a unit is creating its Job (owned by this
one, so deleting the orchestrator deletes it) and polling it to its end.

What it reads from its environment:

* the seed's ``FLOWYML_*`` variables that every unit gets too (module, run id,
  parameters, the shipped stack with ``${env:…}`` references only);
* ``FLOWYML_K8S_PLAN``: the Job settings and the units the client decided to
  run (the client already wrote the records of the cached ones);
* ``FLOWYML_K8S_API_SERVER``: only outside a real cluster (tests).

Exit status: 0 when no step failed, 1 when one did (the records say which),
3 when the orchestrator could not do its work (its last log line says why).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, Mapping

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.kubernetes.orchestrate")

PLAN_ENV = "FLOWYML_K8S_PLAN"
PLAN_FORMAT = "flowyml-k8s-plan/1"
#: Variables that are the unit's own, never copied from the orchestrator's environment.
UNIT_OWN = ("FLOWYML_STEP_NAMES", "FLOWYML_EXECUTION_GROUP")
#: Variables of the orchestrator that units must not get.
ORCHESTRATOR_OWN = (PLAN_ENV, "FLOWYML_K8S_API_SERVER")
EXIT_FAILED_STEP = 1
EXIT_ORCHESTRATOR_ERROR = 3


def seed_env(environ: Mapping[str, str], names: list[str]) -> dict[str, str]:
    """The variables every unit of the run shares: those the client named in the plan, nothing else.

    Only named ones: the pod's environment may hold more (secrets the
    platform injects), and a unit Job's spec must never copy them.
    """
    return {k: environ[k] for k in names if k in environ and k not in UNIT_OWN and k not in ORCHESTRATOR_OWN}


def plan_document(settings: Any, job_name: str, units: Mapping[str, tuple[list[str], Any]],
                  seed: list[str]) -> str:
    """The ``FLOWYML_K8S_PLAN`` text: settings, the orchestrator Job's name, the shared variables'
    names, and the units with their steps and resources."""
    from flowyml_kubernetes.manifests import resources_to_json

    return json.dumps({
        "format": PLAN_FORMAT, "job": settings.to_json(), "orchestrator": job_name, "seed": sorted(seed),
        "units": {name: {"steps": list(steps), "resources": resources_to_json(resources)}
                  for name, (steps, resources) in units.items()},
    }, sort_keys=True)


def read_plan(environ: Mapping[str, str]) -> dict[str, Any]:
    text = environ.get(PLAN_ENV)
    if not text:
        raise FlowymlError(f"{PLAN_ENV} is not set: this command runs inside the orchestrator Job that "
                           "flowyml's kubernetes executor creates")
    try:
        plan = json.loads(text)
    except ValueError as exc:
        raise FlowymlError(f"{PLAN_ENV} is not JSON ({exc})") from None
    if not isinstance(plan, dict) or plan.get("format") != PLAN_FORMAT:
        raise FlowymlError(f"{PLAN_ENV} is not a {PLAN_FORMAT} document: the image's flowyml-kubernetes differs "
                           "from the client's")
    return plan


class ClusterWalk:
    """One run's walk in the cluster: the units of the plan, each a Job polled to its end."""

    def __init__(self, environ: Mapping[str, str], api: Any) -> None:
        from flowyml_kubernetes.manifests import JobSettings

        self.environ = environ
        self.api = api
        self.plan = read_plan(environ)
        self.settings = JobSettings.from_json(self.plan["job"])
        self.run_id = environ.get("FLOWYML_RUN_ID") or ""
        self.owner: dict[str, str] | None = None
        self.remote: Any = None

    def run(self) -> int:
        from flowyml_core.loader import load_pipeline
        from flowyml_core.remote import RemoteRun
        from flowyml_core.shipping import STACK_CONFIG_ENV, stack_from_payload

        from flowyml_kubernetes.clients import api_errors

        ns, name = self.settings.namespace, self.plan["orchestrator"]
        with api_errors(f"reading the orchestrator Job {ns}/{name}", self.api.where):
            me = self.api.batch.read_namespaced_job(name, ns)
        self.owner = {"name": name, "uid": me.metadata.uid}
        payload = self.environ.get(STACK_CONFIG_ENV)
        if not payload:
            raise FlowymlError(f"{STACK_CONFIG_ENV} is not set: the client ships the stack with the run")
        stack = stack_from_payload(payload, self.environ)
        module = self.environ.get("FLOWYML_PIPELINE_MODULE") or ""
        try:
            pipeline = load_pipeline(module).build()
        except FlowymlError as exc:
            raise FlowymlError(f"cannot load pipeline {module} here ({exc}); the image must hold the project "
                               "and the packages it imports") from None
        try:
            params = json.loads(self.environ.get("FLOWYML_CONTEXT") or "{}")
        except ValueError as exc:
            raise FlowymlError(f"FLOWYML_CONTEXT is not JSON ({exc})") from None
        if not isinstance(params, dict):
            raise FlowymlError(f"FLOWYML_CONTEXT is not a JSON object: got a {type(params).__name__}")
        self.remote = remote = RemoteRun(
            pipeline, self.run_id, pipeline_module=module, context=pipeline.context.with_updates(params),
            artifact_store=stack.artifact_store, cache_store=stack.cache_store, router=stack.router,
            stack_name=stack.name, check_cache=False)
        remote.records.project_name = self.environ.get("FLOWYML_PROJECT_NAME") or pipeline.project_name
        wanted = self.plan["units"]
        remote.tasks = [task for task in remote.tasks if task.name in wanted]
        logger.info("run %s: walking %d unit(s) of pipeline %s in namespace %s (at most %d at once)",
                    self.run_id, len(remote.tasks), pipeline.name, ns, self.settings.max_parallel)
        result = remote.walk(self.launch, max_parallel=self.settings.max_parallel)
        failed = sorted(n for n, r in result.steps.items() if not r.success)
        logger.info("run %s ended %s%s", self.run_id, result.status.value,
                    f" (failed: {', '.join(failed)})" if failed else "")
        return EXIT_FAILED_STEP if failed else 0

    # -- one unit ---------------------------------------------------------------------------
    def launch(self, task: Any) -> str | None:
        """Create the unit's Job, wait for it, and say why it failed when its records may not."""
        from flowyml_kubernetes.clients import KubernetesAPIError, api_errors
        from flowyml_kubernetes.manifests import resources_from_json, unit_job

        spec = self.plan["units"][task.name]
        env = {**task.env, **seed_env(self.environ, self.plan.get("seed") or [])}  # the unit's own vars are kept
        manifest = unit_job(self.settings, run_id=self.run_id, pipeline=self.environ.get("FLOWYML_PIPELINE_NAME", ""),
                            unit=task.name, steps=spec["steps"], env=env,
                            resources=resources_from_json(spec.get("resources")), owner=self.owner)
        name, ns = manifest["metadata"]["name"], self.settings.namespace
        try:
            with api_errors(f"creating the Job {ns}/{name} of unit {task.name}", self.api.where):
                self.api.batch.create_namespaced_job(ns, manifest)
            logger.info("unit %s: started Job %s", task.name, name)
            outcome = self._wait(name)
        except KubernetesAPIError as exc:
            return self._failed(task, f"unit {task.name}: {exc}")
        if outcome is None:
            logger.info("unit %s: Job %s completed", task.name, name)
            return None
        return self._failed(task, outcome)

    def _wait(self, name: str) -> str | None:
        """None once the Job completed; why it did not otherwise."""
        from flowyml_kubernetes.clients import KubernetesAPIError, api_errors
        from flowyml_kubernetes.logs import job_stuck
        from flowyml_kubernetes.status import job_outcome

        ns = self.settings.namespace
        while True:
            try:
                with api_errors(f"reading the Job {ns}/{name}", self.api.where):
                    job = self.api.batch.read_namespaced_job(name, ns)
            except KubernetesAPIError as exc:
                if exc.status == 404:
                    return f"its Job {name} was deleted before it finished (the run was stopped)"
                raise
            outcome = job_outcome(job)
            if outcome == "complete":
                return None
            if outcome is not None:
                return f"its Job {name} failed: {outcome}{self._log_tail(name)}"
            if not job.status.active or not job.status.ready:
                stuck = job_stuck(self.api, ns, name)
                if stuck is not None:  # it would wait forever: free the node and say why
                    with api_errors(f"deleting the Job {ns}/{name}", self.api.where):
                        self.api.batch.delete_namespaced_job(name, ns, propagation_policy="Background")
                    return f"its Job {name} cannot start its pod ({stuck}); check image and image_pull_secrets"
            time.sleep(self.settings.poll_interval)

    def _log_tail(self, job_name: str) -> str:
        from flowyml_kubernetes.clients import KubernetesAPIError
        from flowyml_kubernetes.logs import last_lines

        try:
            lines = last_lines(self.api, self.settings.namespace, job_name, 3)
        except KubernetesAPIError as exc:
            logger.warning("cannot read the logs of Job %s: %s", job_name, exc)
            return ""
        return f"; last log lines: {' | '.join(lines)}" if lines else ""

    def _failed(self, task: Any, reason: str) -> str:
        """Record the first step of the unit that left no record as failed with ``reason``.

        The client reads only records: without this, a unit whose pod never
        started (image pull, scheduling, a deleted Job) would fail with no
        explanation. The steps after it are reported skipped, as in a group.
        """
        from flowyml_core.records import StepRecord
        from flowyml_core.walker import failure_reason

        logger.error("%s", reason)
        records = self.remote.records
        for step in task.steps:
            record = records.read(step)
            if record is None:
                records.write(StepRecord(step=step, status="failed", unit=task.name, error=reason,
                                         blocks=failure_reason(step)))
                break
            if record.status == "failed":
                break
        return reason


def main(environ: Mapping[str, str] | None = None) -> int:
    from flowyml_core.pipeline import mark_unit_runner
    from flowyml_core.step_runner import JsonLineFormatter

    environ = dict(os.environ if environ is None else environ)
    mark_unit_runner()  # before the pipeline's module is imported: it must not start a run of its own
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(JsonLineFormatter({"run_id": environ.get("FLOWYML_RUN_ID", ""), "execution_group": "orchestrator"}))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        from flowyml_kubernetes.clients import api_in_pod

        return ClusterWalk(environ, api_in_pod(environ)).run()
    except FlowymlError as exc:
        logger.error("the orchestrator of run %s cannot go on: %s", environ.get("FLOWYML_RUN_ID", "?"), exc)
        return EXIT_ORCHESTRATOR_ERROR


if __name__ == "__main__":
    sys.exit(main())
