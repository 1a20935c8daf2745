"""Options of the ``vertex`` executor, as written in ``stacks.toml``.

This module is imported whenever a vertex stack is shown or resolved, so it
imports nothing but attrs: the Google, KFP and Docker SDKs load only when a run
is submitted or inspected.

.. code-block:: toml

    [stacks.gcp-prod]
    executor = { flavor = "vertex", project_id = "acme-ml", region = "europe-west1",
                 registry = "europe-west1-docker.pkg.dev/acme-ml/flowyml",
                 staging_bucket = "gs://acme-ml-artifacts/vertex" }
"""

from __future__ import annotations

import re

import attrs

from flowyml_core.config import check_http_url, field_problems, is_loopback_url, raise_field_problems, spec_field

_REGION = re.compile(r"^[a-z]+-[a-z]+\d+$")


#: How a run is submitted: a Vertex AI pipeline with one task per execution unit, or one CustomJob for all.
SUBMIT_MODES = ("pipeline", "custom_job")


def _check_submit(value: str) -> str | None:
    if value in SUBMIT_MODES:
        return None
    return f"must be one of {', '.join(repr(m) for m in SUBMIT_MODES)}, got {value!r}"


def _check_poll_interval(value: float) -> str | None:
    return None if value > 0 else f"must be > 0 seconds, got {value!r}"


def _check_region(value: str) -> str | None:
    return None if _REGION.match(value) else f"{value!r} is not a Google Cloud region such as 'europe-west1'"


def _check_gs_url(value: str | None) -> str | None:
    if value is None or value.startswith("gs://"):
        return None
    return f"must be a gs:// URL (Vertex AI writes pipeline outputs there), got {value!r}"


_CHECKS = {
    "region": _check_region,
    "staging_bucket": _check_gs_url,
    "api_endpoint": check_http_url("europe-west1-aiplatform.googleapis.com", bare_host=True),
    "logging_endpoint": check_http_url("logging.googleapis.com", bare_host=True),
    "poll_interval": _check_poll_interval,
    "submit": _check_submit,
}


@attrs.define(frozen=True)
class VertexConfig:
    """Where and how runs are submitted to Vertex AI, and how their image is made.

    Image: ``image`` is used as is when set. Otherwise an image is built from
    the project directory (``build_context``) with a Dockerfile generated from
    ``base_image`` and ``requirements`` (or ``dockerfile`` when given), tagged
    with a hash of its content and pushed to ``registry``/``image_name``.
    """

    project_id: str | None = None
    region: str = "europe-west1"
    service_account: str | None = None
    network: str | None = None
    #: Cloud KMS key (``projects/…/cryptoKeys/…``) for customer-managed encryption.
    encryption_key: str | None = None
    #: Pipeline root: where Vertex AI writes pipeline outputs (defaults to the artifact store's gs:// URL).
    staging_bucket: str | None = None
    image: str | None = None
    registry: str | None = None
    #: Vertex AI endpoint (private endpoints, emulators); default ``{region}-aiplatform.googleapis.com``.
    api_endpoint: str | None = None
    #: Cloud Logging endpoint; defaults to Google's, or to ``api_endpoint`` when that is a loopback emulator.
    logging_endpoint: str | None = None
    poll_interval: float = attrs.field(default=10.0, converter=float)
    # -- image building -------------------------------------------------------------
    image_name: str = "flowyml"
    base_image: str = "python:3.11-slim"
    requirements: list[str] = attrs.field(factory=list)
    dockerfile: str | None = None
    build_context: str = "."
    platform: str = "linux/amd64"
    docker_host: str | None = None
    #: Set in the image and in every task's container spec, where anyone who can view the job reads
    #: them: a ``${env:…}`` (secret) reference here is refused when the stack is resolved.
    env_vars: dict[str, str] = spec_field(factory=dict)
    # -- jobs -------------------------------------------------------------------------
    #: "pipeline" (default): a Vertex AI pipeline, one task (one machine) per execution unit.
    #: "custom_job": one CustomJob runs every step, in order, on one machine.
    submit: str = "pipeline"
    #: Machine type of the CustomJob (submit = "custom_job"); chosen from CPU/memory/GPU when unset.
    machine_type: str | None = None
    labels: dict[str, str] = attrs.field(factory=dict)

    def __attrs_post_init__(self) -> None:
        """Check every option and report all problems at once, each under its field name.

        Raised as cattrs' ``ClassValidationError`` with per-attribute notes, so
        ``stacks.toml`` errors name each field (``option 'region': …``).
        """
        raise_field_problems(self, "vertex executor", field_problems(self, _CHECKS))

    @property
    def uses_emulator(self) -> bool:
        return is_loopback_url(self.api_endpoint)

    def endpoint_for(self, region: str | None = None) -> str:
        """The Vertex AI API endpoint for ``region`` (the configured one by default)."""
        if self.api_endpoint:
            return self.api_endpoint
        return f"{region or self.region}-aiplatform.googleapis.com"

    @property
    def effective_logging_endpoint(self) -> str | None:
        """None means the client library's default (logging.googleapis.com)."""
        if self.logging_endpoint:
            return self.logging_endpoint
        if self.uses_emulator:
            return self.api_endpoint
        return None
