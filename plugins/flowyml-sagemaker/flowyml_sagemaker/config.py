"""Options of the ``sagemaker`` executor, as written in ``stacks.toml``.

This module is imported whenever a sagemaker stack is shown or resolved, so it
imports nothing but attrs: boto3, botocore and the Docker SDK load only when a
run is submitted or inspected.

.. code-block:: toml

    [stacks.aws-prod]
    executor = { flavor = "sagemaker", region = "eu-west-1",
                 role_arn = "arn:aws:iam::123456789012:role/flowyml-sagemaker",
                 registry = "123456789012.dkr.ecr.eu-west-1.amazonaws.com" }
    artifact_store = { flavor = "s3", url = "s3://acme-ml-artifacts/flowyml", region = "eu-west-1" }
    cache_store = { flavor = "s3", url = "s3://acme-ml-artifacts/cache", region = "eu-west-1" }

Every option is checked when the stack is resolved, and all problems are
reported at once, each under its field name (``option 'region': …``).
"""

from __future__ import annotations

import re
from typing import Any, Mapping

import attrs

from flowyml_core.config import check_http_url, check_positive, field_problems, is_loopback_url, raise_field_problems, secret_field, spec_field

#: AWS region names: "eu-west-1", "us-gov-west-1", "ap-southeast-3", "cn-north-1".
_REGION = re.compile(r"^[a-z]{2}(-gov|-iso[a-z]?)?-[a-z]+-\d{1,2}$")
#: What SageMaker accepts as an execution role (the API's own pattern).
_ROLE_ARN = re.compile(r"^arn:aws[a-z\-]*:iam::\d{12}:role/?[a-zA-Z_0-9+=,.@\-_/]+$")
#: The shape of a SageMaker instance type; the list of known ones is checked by ``validate()``.
_INSTANCE_TYPE = re.compile(r"^ml\.[a-z0-9-]+\.[a-z0-9-]+$")
#: Pipeline names: letters, digits and single dashes (the API's pattern), at most 256 characters.
_NAME_PREFIX = re.compile(r"^[a-zA-Z0-9](-*[a-zA-Z0-9]){0,63}$")


def _check_region(value: str | None) -> str | None:
    if not value or _REGION.match(value):
        return None
    return f"{value!r} is not an AWS region such as 'eu-west-1'"


def _check_role(value: str | None) -> str | None:
    if not value or _ROLE_ARN.match(value):
        return None
    return (f"{value!r} is not an IAM role ARN such as 'arn:aws:iam::123456789012:role/flowyml-sagemaker' "
            "(the role SageMaker runs the pipeline and its jobs as)")


def _check_instance_type(value: str | None) -> str | None:
    if not value or _INSTANCE_TYPE.match(value):
        return None
    return f"{value!r} is not a SageMaker instance type such as 'ml.m5.xlarge'"


def _check_volume(value: int) -> str | None:
    return None if 1 <= value <= 16384 else f"must be between 1 and 16384 GB, got {value!r}"


def _check_runtime(value: int) -> str | None:
    return None if 1 <= value <= 777600 else f"must be between 1 and 777600 seconds (9 days), got {value!r}"


def _check_parallel(value: int | None) -> str | None:
    return None if value is None or value >= 1 else f"must be at least 1, got {value!r}"


def _check_prefix(value: str) -> str | None:
    if _NAME_PREFIX.match(value):
        return None
    return f"{value!r} must be letters, digits and dashes (no leading or trailing dash), at most 64 characters"


def _check_tags(value: dict[str, str]) -> str | None:
    bad = [key for key in value if not key or len(key) > 128 or key.lower().startswith("aws:")]
    if bad:
        return f"tag keys must be 1-128 characters and not start with 'aws:', got {', '.join(map(repr, bad))}"
    long = [key for key, item in value.items() if len(str(item)) > 256]
    return f"tag values must be at most 256 characters ({', '.join(long)})" if long else None


_CHECKS = {
    "region": _check_region,
    "role_arn": _check_role,
    "instance_type": _check_instance_type,
    "endpoint_url": check_http_url("https://api.sagemaker.eu-west-1.amazonaws.com"),
    "logs_endpoint_url": check_http_url("https://logs.eu-west-1.amazonaws.com"),
    "poll_interval": check_positive,
    "volume_size_gb": _check_volume,
    "max_runtime_seconds": _check_runtime,
    "max_parallel_steps": _check_parallel,
    "pipeline_prefix": _check_prefix,
    "tags": _check_tags,
}


def _str_dict(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"must be a table of names to strings, e.g. {{ team = \"ml\" }}, got {value!r}")
    return {str(k): str(v) for k, v in value.items()}


@attrs.define(frozen=True)
class SageMakerConfig:
    """Where and how runs are submitted to SageMaker Pipelines, and how their image is made.

    Image: ``image`` (an ECR image with the project and flowyml installed) is
    used as is when set. Otherwise an image is built from the project
    directory (``build_context``) with a Dockerfile generated from
    ``base_image`` and ``requirements`` (or ``dockerfile`` when given), tagged
    with a hash of its content and pushed to ``registry``/``image_name``.

    Credentials: unset ``key``/``secret`` mean botocore's own chain
    (environment, ``profile``, instance or task role); when given they must be
    ``${env:…}`` references, and they are never sent with a job: the
    processing jobs run as ``role_arn``.
    """

    #: AWS region, e.g. "eu-west-1"; unset: the profile's or ``$AWS_REGION``.
    region: str | None = None
    #: IAM role the pipeline and its processing jobs run as (needs SageMaker, S3, ECR and CloudWatch Logs access).
    role_arn: str | None = None
    image: str | None = None
    #: ECR registry to push a built image to, e.g. "123456789012.dkr.ecr.eu-west-1.amazonaws.com".
    registry: str | None = None
    #: Instance type of every processing job; unset: chosen per unit from its resources (default ml.m5.large).
    instance_type: str | None = None
    #: Storage volume of each processing job; a unit's ``disk_size`` raises it.
    volume_size_gb: int = attrs.field(default=30, converter=int)
    #: KMS key that encrypts the processing jobs' volumes.
    volume_kms_key: str | None = None
    #: A unit that runs longer than this is stopped by SageMaker.
    max_runtime_seconds: int = attrs.field(default=86400, converter=int)
    #: At most this many units run at once (SageMaker's ParallelismConfiguration); unset: SageMaker's default.
    max_parallel_steps: int | None = None
    #: VPC of the processing jobs: both, or neither.
    subnets: list[str] = attrs.field(factory=list)
    security_group_ids: list[str] = attrs.field(factory=list)
    #: The SageMaker API endpoint (VPC interface endpoints, local fakes); default: AWS's for the region.
    endpoint_url: str | None = None
    #: The CloudWatch Logs endpoint; default: AWS's, or ``endpoint_url`` when that is a loopback fake.
    logs_endpoint_url: str | None = None
    #: Seconds between two status reads while waiting or following logs.
    poll_interval: float = attrs.field(default=10.0, converter=float)
    #: SageMaker pipelines are named ``<prefix>-<pipeline name>``; each run updates it and starts an execution.
    pipeline_prefix: str = "flowyml"
    #: Tags of the SageMaker pipeline (the run id and pipeline name are added).
    tags: dict[str, str] = attrs.field(factory=dict, converter=_str_dict)
    # -- credentials of this client ---------------------------------------------------
    #: Named profile of ``~/.aws/config`` to take credentials (and the region) from.
    profile: str | None = None
    key: str | None = secret_field()
    secret: str | None = secret_field()
    token: str | None = secret_field()
    # -- image building -------------------------------------------------------------
    image_name: str = "flowyml"
    base_image: str = "python:3.11-slim"
    requirements: list[str] = attrs.field(factory=list)
    dockerfile: str | None = None
    build_context: str = "."
    platform: str = "linux/amd64"
    docker_host: str | None = None
    #: Set in the image and in every processing job's environment, where anyone who can describe the
    #: pipeline reads them: a ``${env:…}`` (secret) reference here is refused when the stack is resolved.
    env_vars: dict[str, str] = spec_field(factory=dict, converter=_str_dict)

    def __attrs_post_init__(self) -> None:
        """Check every option and report all problems at once, each under its field name."""
        problems = field_problems(self, _CHECKS)
        if bool(self.subnets) != bool(self.security_group_ids):
            given, missing = ("subnets", "security_group_ids") if self.subnets else ("security_group_ids", "subnets")
            problems.append((missing, f"{missing} is empty but {given} is set: a VPC needs both"))
        if (self.key is None) != (self.secret is None):
            given, missing = ("key", "secret") if self.secret is None else ("secret", "key")
            problems.append((missing, f"{missing} is not set but {given} is: give both (as ${{env:…}} references) "
                                           "or neither"))
        raise_field_problems(self, "sagemaker executor", problems)

    @property
    def effective_logs_endpoint(self) -> str | None:
        """None means AWS's own CloudWatch Logs endpoint for the region."""
        if self.logs_endpoint_url:
            return self.logs_endpoint_url
        if is_loopback_url(self.endpoint_url):
            return self.endpoint_url
        return None
