"""Submitting a run: checks, the image, the pipeline definition, then one pipeline execution.

Each flowyml pipeline has one SageMaker pipeline (``<pipeline_prefix>-<name>``).
A run creates it, or updates it with this run's definition, and starts an
execution of exactly the version it wrote (``PipelineVersionId``), so two runs
submitted at once never start each other's definition.

Everything that can be refused is refused before an image is built (minutes)
or anything is submitted: no role, an unknown instance type, a pipeline module
flowyml cannot name, an artifact store on this machine's disk.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Mapping, Sequence

from flowyml_core.container import DockerConfig, ImageSource
from flowyml_core.errors import FlowymlError
from flowyml_core.remote import RemoteRun, module_in_project, store_url, warn_unshared_signing_keys
from flowyml_core.resources import ResourceConfig
from flowyml_core.results import RunResult, SubmissionResult

from flowyml_sagemaker.definition import StepPlan, build_definition, definition_json, plan_steps
from flowyml_sagemaker.states import execution_name, parse_execution_arn, pipeline_name, request_token

logger = logging.getLogger("flowyml.sagemaker")


class SubmissionMixin:
    """``run_pipeline`` of :class:`SageMakerOrchestrator`; relies on its ``config``, ``_client`` and ``wait``."""

    config: Any
    _client: Any
    wait: Any
    unit_failures: Any

    def run_pipeline(  # type: ignore[override]
        self,
        pipeline: Any,
        run_id: str,
        *,
        pipeline_module: str | None = None,
        docker_config: DockerConfig | None = None,
        resources: ResourceConfig | None = None,
        hooks: Any | None = None,
        run: Any | None = None,
        **kwargs: Any,
    ) -> SubmissionResult | RunResult:
        """Submit the units that must run and return at once; ``wait()`` polls the execution to its end.

        The core's :class:`~flowyml_core.remote.RemoteRun` decides what runs:
        units whose steps would all hit the cache are not submitted, and when
        none is left nothing is built or submitted.
        """
        cfg = self.config
        pipeline.build()
        role = self._require_role()
        stack = kwargs.get("stack")
        artifact_store = stack.artifact_store if stack is not None else kwargs.get("artifact_store")
        stack_name = stack.name if stack is not None else kwargs.get("stack_name")
        source = ImageSource.choose(cfg, docker_config)
        if not source.image and not cfg.registry:
            raise FlowymlError(
                "the sagemaker executor needs an image: set image (an ECR image with the project and flowyml "
                "installed) or registry (e.g. 123456789012.dkr.ecr.eu-west-1.amazonaws.com) to build and push one"
            )
        if not pipeline_module:
            raise FlowymlError(
                f"pipeline {pipeline.name!r} cannot run on SageMaker: flowyml does not know the file or module that "
                "defines it, so the containers could not import it. Run it from a file, "
                f"`flowyml run path/to/file.py:pipeline --stack {stack_name or 'STACK'}`, or from a module "
                "importable from the project"
            )
        module = module_in_project(pipeline_module, source.project_root)
        check_artifact_store(artifact_store, stack_name)
        cache_store = stack.cache_store if stack is not None else kwargs.get("cache_store")
        warn_unshared_signing_keys({"artifact_store": artifact_store, "cache_store": cache_store}, stack_name,
                                   "SageMaker processing")
        remote = RemoteRun.from_run_args(pipeline, run_id, pipeline_module=module, resources=resources, **kwargs)
        if not remote.tasks:
            return remote.nothing_to_submit(hooks=hooks, run=run)
        plans = plan_steps(remote.tasks, cfg, source.env_vars)
        self._check_instance_types(plans)
        logger.info("pipeline %r: %d of its %d steps to run, as %d SageMaker step(s)", pipeline.name,
                    sum(len(p.steps) for p in plans), len(pipeline.steps), len(plans))
        image = source.image or self._build_image(docker_config, source.build_context)
        definition = build_definition(plans, cfg, image, role)
        name = pipeline_name(cfg.pipeline_prefix, pipeline.name)
        arn = self._start(name, definition, pipeline, run_id, role)
        units = [task.name for task in remote.tasks]
        metadata = {"platform": "sagemaker", "pipeline_name": name, "image": image, "steps": [p.name for p in plans],
                    "region": parse_execution_arn(arn).region, "console_url": self.console_url(arn)}
        return remote.submission(arn, lambda timeout: self.wait(arn, timeout), metadata=metadata,
                                 unit_failures=lambda: self.unit_failures(arn, plans, units))

    # -- checks -----------------------------------------------------------------------------
    def _require_role(self) -> str:
        if not self.config.role_arn:
            raise FlowymlError(
                "role_arn is not set: SageMaker runs the pipeline and its processing jobs as an IAM role; give "
                "role_arn = \"arn:aws:iam::ACCOUNT:role/NAME\" in the sagemaker executor options"
            )
        return self.config.role_arn

    def _check_instance_types(self, plans: Sequence[StepPlan]) -> None:
        from flowyml_sagemaker.instances import check_instance_type

        for plan in plans:
            where = "instance_type" if plan.instance_type == self.config.instance_type else \
                f"unit {plan.unit!r} (machine_type in its resources)"
            check_instance_type(plan.instance_type, where)

    # -- the image ----------------------------------------------------------------------------
    def _build_image(self, docker_config: DockerConfig | None, build_context: Path) -> str:
        """Build the project into an image tagged by its content, push it, and return its reference."""
        from flowyml_docker.images import build_for_executor

        login = self._login_to_ecr if ".dkr.ecr." in self.config.registry else None
        return build_for_executor(self.config, docker_config, build_context, login=login)

    def _login_to_ecr(self, docker: Any) -> None:
        """Log the docker client in to the ECR registry with a token from ECR (valid 12 hours)."""
        import base64

        from flowyml_sagemaker.clients import api_errors

        with api_errors("getting an ECR login token"):
            data = self._client("ecr").get_authorization_token()["authorizationData"][0]
        user, _, password = base64.b64decode(data["authorizationToken"]).decode().partition(":")
        docker.login(username=user, password=password, registry=data["proxyEndpoint"])

    # -- submitting ---------------------------------------------------------------------------
    def _start(self, name: str, definition: Mapping[str, Any], pipeline: Any, run_id: str, role: str) -> str:
        """Create or update the pipeline with ``definition``, start an execution of that version, return its ARN.

        Create first, update when it exists (as the SageMaker SDK's ``upsert``):
        one request for the first run, and no window between a check and a create.
        """
        from flowyml_sagemaker.clients import SageMakerAPIError, api_errors

        cfg = self.config
        client = self._client("sagemaker")
        body = definition_json(definition)
        description = f"flowyml pipeline {pipeline.name}"[:3072]
        version: int | None = None
        tags = {**cfg.tags, "flowyml:pipeline": pipeline.name[:256]}
        try:
            with api_errors(f"creating SageMaker pipeline {name}", cfg.endpoint_url):
                client.create_pipeline(
                    PipelineName=name, PipelineDefinition=body, RoleArn=role, PipelineDescription=description,
                    ClientRequestToken=request_token("create", name, run_id),
                    Tags=[{"Key": k, "Value": v} for k, v in sorted(tags.items())],
                )
        except SageMakerAPIError as exc:
            # SageMaker says "Pipeline with name (…) already exists." as a ValidationException.
            if not (exc.code in ("ValidationException", "ResourceInUse") and "already exists" in str(exc)):
                raise
            with api_errors(f"updating SageMaker pipeline {name}", cfg.endpoint_url):
                version = client.update_pipeline(PipelineName=name, PipelineDefinition=body, RoleArn=role,
                                                 PipelineDescription=description).get("PipelineVersionId")
        request: dict[str, Any] = {
            "PipelineName": name, "PipelineExecutionDisplayName": execution_name(run_id),
            "PipelineExecutionDescription": f"flowyml run {run_id}"[:3072],
            "ClientRequestToken": request_token("start", name, run_id),
        }
        if version is not None:
            request["PipelineVersionId"] = version
        if cfg.max_parallel_steps:
            request["ParallelismConfiguration"] = {"MaxParallelExecutionSteps": cfg.max_parallel_steps}
        with api_errors(f"starting an execution of SageMaker pipeline {name}", cfg.endpoint_url):
            arn = client.start_pipeline_execution(**request)["PipelineExecutionArn"]
        logger.info("started SageMaker pipeline execution %s (%s)", arn, self.console_url(arn))
        return arn


def check_artifact_store(store: Any | None, stack_name: str | None) -> None:
    """Refuse a stack whose processing jobs could not hand data to each other (each has its own disk)."""
    stack = f"stack {stack_name!r}" if stack_name else "the stack"
    if store is None:
        raise FlowymlError(f"{stack} has no artifact_store: steps on SageMaker exchange data through one "
                           "(e.g. artifact_store = { flavor = \"s3\", url = \"s3://BUCKET/flowyml\" })")
    root = store_url(store)
    if root and ("://" not in root or root.startswith(("file://", "memory://"))):
        raise FlowymlError(
            f"{stack} keeps artifacts at {root!r}, on this machine, but each SageMaker processing job has its own "
            "disk, so no unit would see another's outputs; use an s3 artifact store "
            "(artifact_store = { flavor = \"s3\", url = \"s3://BUCKET/flowyml\" })"
        )
