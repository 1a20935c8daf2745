"""The Jobs a run creates, as the plain JSON objects the API server receives.

Both the client (the orchestrator Job) and the orchestrator in the cluster
(one Job per unit) build their Jobs here, from one :class:`JobSettings` that
travels with the run, so the two kinds of Job share labels, scheduling,
pull secrets and service account, and tests can read a spec without a
cluster.

Names: Kubernetes wants Job names that are DNS labels (lowercase letters,
digits and ``-``, at most 63 characters, because they become pod labels).
Run ids, pipeline and step names are free text, so each name is cut and
given a digest of what it was made from when it had to change.

This module imports no Kubernetes code.
"""

from __future__ import annotations

import hashlib
import re
from typing import Any, Mapping

import attrs

from flowyml_core.resources import ResourceConfig

#: Labels of every object a run creates.
LABEL_RUN = "flowyml.io/run-id"
LABEL_UNIT = "flowyml.io/unit"
LABEL_ROLE = "flowyml.io/role"
LABEL_PIPELINE = "flowyml.io/pipeline"
#: Annotations that keep the exact (unsanitised) names.
ANNOTATION_RUN = "flowyml.io/run-id"
ANNOTATION_UNIT = "flowyml.io/unit"
ANNOTATION_STEPS = "flowyml.io/steps"
ANNOTATION_STOPPED = "flowyml.io/stopped"
ANNOTATION_FAILED = "flowyml.io/failed"
ROLE_ORCHESTRATOR = "orchestrator"
ROLE_UNIT = "unit"
#: The label the Job controller puts on its pods.
JOB_NAME_LABEL = "job-name"

#: What a unit's container runs.
STEP_RUNNER_COMMAND = ("flowyml", "step-runner")
#: What the orchestrator's container runs.
ORCHESTRATOR_COMMAND = ("python", "-m", "flowyml_kubernetes.orchestrate")
CONTAINER = "main"
NAME_LIMIT = 63


def dns_name(text: str, limit: int = NAME_LIMIT) -> str:
    """``text`` as a DNS label of at most ``limit`` characters; distinct inputs stay distinct."""
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    name = re.sub(r"-{2,}", "-", name)
    if name == text and len(name) <= limit and name[:1].isalpha():
        return name
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    head = name[: limit - len(digest) - 1].strip("-")
    if not head[:1].isalpha():
        head = f"x-{head}"[: limit - len(digest) - 1].strip("-")
    return f"{head}-{digest}"


def label_value(text: str) -> str:
    """A label value: at most 63 of ``[A-Za-z0-9_.-]``, alphanumeric at both ends (digest when changed)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-_.")
    if value == text and len(value) <= NAME_LIMIT:
        return value
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:8]
    return f"{value[: NAME_LIMIT - 9].strip('-_.')}-{digest}".strip("-")


def orchestrator_name(run_id: str) -> str:
    """The orchestrator Job of a run: ``flowyml-<run id>``."""
    return dns_name(f"flowyml-{run_id}")


def unit_job_name(run_id: str, unit: str) -> str:
    """A unit's Job: its orchestrator's name and the unit's, unique per (run, unit)."""
    base = orchestrator_name(run_id)
    part = dns_name(unit, 24).strip("-")
    digest = hashlib.sha256(f"{run_id}\0{unit}".encode("utf-8")).hexdigest()[:6]
    head = base[: NAME_LIMIT - len(part) - len(digest) - 2].strip("-")
    return f"{head}-{part}-{digest}"


def k8s_resources(resources: ResourceConfig | None) -> dict[str, Any]:
    """ResourceConfig as a container's ``resources``: CPU and memory requested, memory and GPUs limited.

    CPU is requested but not limited (a limit throttles a busy step for no
    gain); memory is both, so a step that needs more than it asked for is
    killed rather than starving its node. ``gpu`` names the resource
    (``nvidia.com/gpu`` by default), ``gpu_count`` how many.
    """
    if resources is None:
        return {}
    requests: dict[str, str] = {}
    limits: dict[str, str] = {}
    if resources.cpu is not None:
        requests["cpu"] = resources.cpu
    if resources.memory is not None:
        requests["memory"] = limits["memory"] = resources.memory
    if resources.disk_size is not None:
        requests["ephemeral-storage"] = resources.disk_size
    if resources.gpu_count or resources.gpu:
        name = resources.gpu if resources.gpu and "/" in resources.gpu else "nvidia.com/gpu"
        limits[name] = str(resources.gpu_count or 1)
    out: dict[str, Any] = {}
    if requests:
        out["requests"] = requests
    if limits:
        out["limits"] = limits
    return out


def resources_from_json(data: Mapping[str, Any] | None) -> ResourceConfig | None:
    return None if data is None else ResourceConfig(**data)


def resources_to_json(resources: ResourceConfig | None) -> dict[str, Any] | None:
    return None if resources is None else attrs.asdict(resources)


@attrs.define(frozen=True)
class JobSettings:
    """What every Job of a run shares: taken from the stack's executor options, sent to the orchestrator."""

    namespace: str
    image: str
    service_account: str | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: list[str] = attrs.field(factory=list)
    node_selector: dict[str, str] = attrs.field(factory=dict)
    tolerations: list[dict[str, Any]] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict)
    annotations: dict[str, str] = attrs.field(factory=dict)
    env_vars: dict[str, str] = attrs.field(factory=dict)
    env_from_secrets: list[str] = attrs.field(factory=list)
    backoff_limit: int = 0
    ttl_seconds_after_finished: int | None = None
    active_deadline_seconds: int | None = None
    max_parallel: int = 4
    poll_interval: float = 5.0
    #: How the orchestrator pod reaches the API server (None: its in-cluster service account).
    api_server: str | None = None

    @classmethod
    def from_config(cls, config: Any, image: str) -> JobSettings:
        names = [f.name for f in attrs.fields(cls) if f.name not in ("image", "api_server")]
        return cls(image=image, api_server=config.orchestrator_api_server,
                   **{name: getattr(config, name) for name in names})

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobSettings:
        known = {f.name for f in attrs.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})


def _env_list(env: Mapping[str, str]) -> list[dict[str, str]]:
    return [{"name": str(k), "value": str(v)} for k, v in env.items()]


def _job(settings: JobSettings, *, name: str, labels: dict[str, str], annotations: dict[str, str],
         command: tuple[str, ...], env: Mapping[str, str], resources: dict[str, Any], backoff_limit: int,
         owner: Mapping[str, str] | None = None, ttl: bool = True, deadline: bool = False) -> dict[str, Any]:
    container: dict[str, Any] = {"name": CONTAINER, "image": settings.image, "command": list(command),
                                 "env": _env_list({**settings.env_vars, **env})}
    if settings.env_from_secrets:
        container["envFrom"] = [{"secretRef": {"name": name}} for name in settings.env_from_secrets]
    if settings.image_pull_policy:
        container["imagePullPolicy"] = settings.image_pull_policy
    if resources:
        container["resources"] = resources
    pod: dict[str, Any] = {"restartPolicy": "Never", "containers": [container]}
    if settings.service_account:
        pod["serviceAccountName"] = settings.service_account
    if settings.image_pull_secrets:
        pod["imagePullSecrets"] = [{"name": s} for s in settings.image_pull_secrets]
    if settings.node_selector:
        pod["nodeSelector"] = dict(settings.node_selector)
    if settings.tolerations:
        pod["tolerations"] = [dict(t) for t in settings.tolerations]
    all_labels = {**settings.labels, **labels}
    all_annotations = {**settings.annotations, **annotations}
    metadata: dict[str, Any] = {"name": name, "namespace": settings.namespace, "labels": all_labels,
                                "annotations": all_annotations}
    if owner is not None:
        metadata["ownerReferences"] = [{
            "apiVersion": "batch/v1", "kind": "Job", "name": owner["name"], "uid": owner["uid"],
            "controller": False, "blockOwnerDeletion": True,
        }]
    spec: dict[str, Any] = {
        "backoffLimit": backoff_limit,
        "template": {"metadata": {"labels": all_labels, "annotations": all_annotations}, "spec": pod},
    }
    if ttl and settings.ttl_seconds_after_finished is not None:
        spec["ttlSecondsAfterFinished"] = settings.ttl_seconds_after_finished
    if deadline and settings.active_deadline_seconds is not None:
        spec["activeDeadlineSeconds"] = settings.active_deadline_seconds
    return {"apiVersion": "batch/v1", "kind": "Job", "metadata": metadata, "spec": spec}


def orchestrator_job(settings: JobSettings, *, run_id: str, pipeline: str, env: Mapping[str, str]) -> dict[str, Any]:
    """The run's orchestrator Job: one pod that walks the DAG and starts the unit Jobs.

    Never retried by the cluster (a second walk would start units twice);
    its unit Jobs are owned by it, so deleting it deletes them.
    """
    labels = {LABEL_RUN: label_value(run_id), LABEL_ROLE: ROLE_ORCHESTRATOR, LABEL_PIPELINE: label_value(pipeline)}
    return _job(settings, name=orchestrator_name(run_id), labels=labels, annotations={ANNOTATION_RUN: run_id},
                command=ORCHESTRATOR_COMMAND, env=env, resources={}, backoff_limit=0, deadline=True)


def unit_job(settings: JobSettings, *, run_id: str, pipeline: str, unit: str, steps: list[str] | tuple[str, ...],
             env: Mapping[str, str], resources: ResourceConfig | None, owner: Mapping[str, str] | None) -> dict[str, Any]:
    """One execution unit's Job: ``flowyml step-runner`` with the unit's environment and resources.

    ``owner`` (the orchestrator Job's name and uid) makes the cluster delete
    it with its orchestrator. Its own TTL is left to that cascade, so its
    pods' logs live as long as the run's.
    """
    labels = {LABEL_RUN: label_value(run_id), LABEL_ROLE: ROLE_UNIT, LABEL_UNIT: label_value(unit),
              LABEL_PIPELINE: label_value(pipeline)}
    annotations = {ANNOTATION_RUN: run_id, ANNOTATION_UNIT: unit, ANNOTATION_STEPS: ",".join(steps)}
    return _job(settings, name=unit_job_name(run_id, unit), labels=labels, annotations=annotations,
                command=STEP_RUNNER_COMMAND, env=env, resources=k8s_resources(resources),
                backoff_limit=settings.backoff_limit, owner=owner, ttl=owner is None)
