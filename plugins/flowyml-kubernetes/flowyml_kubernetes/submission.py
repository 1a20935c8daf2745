"""Submitting a run: the client-side cache check, the image, then one orchestrator Job.

Everything that can be refused is refused before an image is built (minutes)
or a Job is created: an unknown pipeline module, a stack without an artifact
store. The orchestrator Job carries everything its pod needs in its
environment (the seed's ``FLOWYML_*`` variables, the stack with ``${env:…}``
references kept as references, and the plan), so the client may detach.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping

import attrs

from flowyml_core.container import DockerConfig, ImageSource
from flowyml_core.errors import FlowymlError
from flowyml_core.remote import RemoteRun, module_in_project, store_url
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import RunResult, SubmissionResult

from flowyml_kubernetes.clients import API_SERVER_ENV, KubernetesAPIError, api_errors
from flowyml_kubernetes.manifests import JobSettings, orchestrator_job
from flowyml_kubernetes.orchestrate import PLAN_ENV, UNIT_OWN, plan_document

logger = logging.getLogger("flowyml.kubernetes")
#: (stack, store root) pairs already warned about in this process: once is enough.
_WARNED: set[tuple[str, str]] = set()


def check_stores(artifact_store: Any | None, cache_store: Any | None, stack_name: str | None) -> None:
    """Refuse a stack whose pods could not hand data over; warn about what only works on one machine."""
    stack = f"stack {stack_name!r}" if stack_name else "the stack"
    if artifact_store is None:
        raise FlowymlError(
            f"{stack} has no artifact_store: the pods of a Kubernetes run exchange data through one "
            "(e.g. artifact_store = { flavor = \"s3\", url = \"s3://BUCKET/flowyml\" })")
    root = store_url(artifact_store) or ""
    if ("://" not in root or root.startswith("file://")) and (stack, root) not in _WARNED:
        _WARNED.add((stack, root))
        logger.warning(
            "%s keeps artifacts at the local path %r: every pod of the run must see that path (a volume mounted at "
            "the same place on every node); use a bucket store (s3, gcs) on a real cluster", stack, root)
    unsigned = [kind for kind, store in (("artifact_store", artifact_store), ("cache_store", cache_store))
                if store is not None and getattr(store.config, "signing_key", "") is None
                and not getattr(store.config, "allow_unsigned_pickle", False)]
    if unsigned:
        logger.info(
            "%s: the %s set no signing_key, so pods that do not share this machine's per-user key refuse each "
            "other's pickled outputs (JSON, bytes, numpy and parquet are not affected); see "
            "docs/reference/remote.md, 'Pickled outputs between units'", stack, " and ".join(unsigned))


class SubmissionMixin:
    """``run_pipeline`` of :class:`~flowyml_kubernetes.orchestrator.KubernetesOrchestrator`."""

    config: Any
    api: Any
    wait: Any
    unit_failures: Any

    def run_pipeline(  # type: ignore[override]
        self,
        pipeline: Any,
        run_id: str,
        *,
        context: Any | None = None,
        stack: Any | None = None,
        artifact_store: Any | None = None,
        cache_store: Any | None = None,
        router: Any | None = None,
        stack_name: str | None = None,
        pipeline_module: str | None = None,
        resources: ResourceConfig | None = None,
        docker_config: DockerConfig | None = None,
        inputs: Mapping[str, Any] | None = None,
        hooks: Any | None = None,
        run: Any | None = None,
        **kwargs: Any,
    ) -> SubmissionResult | RunResult:
        """Create the run's orchestrator Job and return at once; ``wait()`` polls it to the end.

        The core's :class:`~flowyml_core.remote.RemoteRun` decides what runs:
        units whose steps would all hit the cache are not submitted, and when
        none is left nothing is built or created.
        """
        cfg = self.config
        pipeline.build()
        if stack is not None:
            artifact_store, cache_store, router, stack_name = (
                stack.artifact_store, stack.cache_store, stack.router, stack.name)
        source = ImageSource.choose(cfg, docker_config)
        if not source.image and not cfg.registry:
            raise FlowymlError(
                "the kubernetes executor needs an image: set image (a pre-built image holding the project and "
                "flowyml-kubernetes) or registry (where to push one built from this directory) in its stack options")
        check_stores(artifact_store, cache_store, stack_name)
        module = pipeline_module and module_in_project(pipeline_module, source.project_root)
        remote = RemoteRun(
            pipeline, run_id, pipeline_module=module, context=context, stack=stack, cache_store=cache_store,
            artifact_store=artifact_store, router=router, stack_name=stack_name, inputs=inputs, resources=resources)
        if not remote.tasks:
            return remote.nothing_to_submit(hooks=hooks, run=run)
        image = source.image or self._build_image(docker_config, source.build_context)
        settings = attrs.evolve(JobSettings.from_config(cfg, image), env_vars=source.env_vars)
        manifest = orchestrator_job(settings, run_id=run_id, pipeline=pipeline.name, env={})
        name = manifest["metadata"]["name"]
        env = {k: v for k, v in remote.tasks[0].env.items() if k not in UNIT_OWN}
        env[PLAN_ENV] = plan_document(settings, name, {t.name: (list(t.steps), t.resources) for t in remote.tasks},
                                     seed=list(env))
        if settings.api_server:
            env[API_SERVER_ENV] = settings.api_server
        manifest["spec"]["template"]["spec"]["containers"][0]["env"] += [
            {"name": k, "value": v} for k, v in env.items()]
        self._create(manifest, run_id)
        logger.info("run %s: created orchestrator Job %s/%s for %d unit(s) (%s)", run_id, cfg.namespace, name,
                    len(remote.tasks), ", ".join(t.name for t in remote.tasks))
        metadata = {"platform": "kubernetes", "namespace": cfg.namespace, "orchestrator_job": name, "image": image,
                    "api_server": self.api.where}
        return remote.submission(
            name, lambda timeout: self.wait(name, timeout, records=remote.records), metadata=metadata,
            unit_failures=lambda: self.unit_failures(name))

    def _create(self, manifest: dict[str, Any], run_id: str) -> None:
        ns, name = self.config.namespace, manifest["metadata"]["name"]
        try:
            with api_errors(f"creating the orchestrator Job {ns}/{name}", self.api.where):
                self.api.batch.create_namespaced_job(ns, manifest)
        except KubernetesAPIError as exc:
            if exc.status == 409:
                raise FlowymlError(
                    f"run id {run_id!r} was used before in namespace {ns} (its Job {name} exists); choose another "
                    f"--run-id, or delete the old run: kubectl delete job -n {ns} {name} --cascade=foreground"
                ) from None
            if exc.status == 404:
                raise FlowymlError(f"namespace {ns!r} does not exist on the Kubernetes API at {self.api.where}; "
                                   f"create it (kubectl create namespace {ns}) or set namespace in the stack") from None
            raise

    def _build_image(self, docker_config: DockerConfig | None, build_context: Path) -> str:
        """Build the project into an image tagged by its content, push it, and return its reference."""
        from flowyml_docker.images import build_for_executor

        return build_for_executor(self.config, docker_config, build_context)
