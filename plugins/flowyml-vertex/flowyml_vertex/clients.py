"""Google clients for Vertex AI and Cloud Logging, and their errors as FlowymlErrors.

We use the generated ``google.cloud.aiplatform_v1`` clients over REST rather
than the high-level ``aiplatform`` SDK: they take an ``api_endpoint`` (private
endpoints, emulators) and make exactly the calls we ask for, while the SDK's
``PipelineJob.submit()`` also probes the pipeline-root bucket and looks up the
project number through Resource Manager.

Endpoints that are plain HTTP to a loopback address are emulators and get
anonymous credentials; everything else uses Application Default Credentials.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any, Iterator

from flowyml_core.errors import FlowymlError

from flowyml_vertex.config import is_loopback_url

logger = logging.getLogger("flowyml.vertex.clients")

SCOPES = ("https://www.googleapis.com/auth/cloud-platform",)


class VertexAPIError(FlowymlError):
    """A Vertex AI or Cloud Logging call failed; ``transient`` when retrying may help."""

    def __init__(self, message: str, transient: bool = False, code: int | None = None) -> None:
        super().__init__(message)
        self.transient = transient
        self.code = code


def _import_error(what: str, exc: ImportError) -> FlowymlError:
    return FlowymlError(
        f"{what} needs google-cloud-aiplatform, google-cloud-logging and kfp ({exc}); "
        "install them with: pip install flowyml-vertex --find-links dist "
        "(in a flowyml checkout, after bash scripts/build-wheels.sh)"
    )


def credentials_for(endpoint: str | None) -> Any:
    """Anonymous credentials for loopback emulators, Application Default Credentials otherwise."""
    try:
        import google.auth
        from google.auth.credentials import AnonymousCredentials
        from google.auth.exceptions import DefaultCredentialsError
    except ImportError as exc:
        raise _import_error("talking to Vertex AI", exc) from exc
    if is_loopback_url(endpoint):
        return AnonymousCredentials()
    try:
        credentials, _ = google.auth.default(scopes=list(SCOPES))
    except DefaultCredentialsError as exc:
        raise FlowymlError(
            f"no Google Cloud credentials found ({exc}); run `gcloud auth application-default login` "
            "or set GOOGLE_APPLICATION_CREDENTIALS to a service account key file"
        ) from None
    return credentials


def vertex_client(kind: str, endpoint: str) -> Any:
    """``PipelineServiceClient`` (kind "pipeline") or ``JobServiceClient`` ("custom") over REST."""
    try:
        from google.api_core.client_options import ClientOptions
        from google.cloud.aiplatform_v1.services.job_service import JobServiceClient
        from google.cloud.aiplatform_v1.services.pipeline_service import PipelineServiceClient
    except ImportError as exc:
        raise _import_error("talking to Vertex AI", exc) from exc
    cls = PipelineServiceClient if kind == "pipeline" else JobServiceClient
    return cls(transport="rest", client_options=ClientOptions(api_endpoint=endpoint), credentials=credentials_for(endpoint))


def logging_client(project: str, endpoint: str | None) -> Any:
    """``google.cloud.logging.Client`` over HTTP/JSON (emulators speak no gRPC)."""
    try:
        from google.cloud import logging as cloud_logging
    except ImportError as exc:
        raise _import_error("reading logs", exc) from exc
    options = {"api_endpoint": endpoint} if endpoint else None
    return cloud_logging.Client(
        project=project, credentials=credentials_for(endpoint or "https://logging.googleapis.com"),
        client_options=options, _use_grpc=False,
    )


_TRANSIENT = ("ServiceUnavailable", "DeadlineExceeded", "InternalServerError", "TooManyRequests",
              "GatewayTimeout", "BadGateway", "RetryError")


@contextlib.contextmanager
def api_errors(what: str, endpoint: str | None = None) -> Iterator[None]:
    """Turn google-api-core and transport errors into one-line VertexAPIErrors that say what failed."""
    from google.api_core import exceptions as gexc

    try:
        import requests

        connection_errors: tuple[type[BaseException], ...] = (requests.exceptions.ConnectionError, requests.exceptions.Timeout)
    except ImportError:  # pragma: no cover - requests comes with the REST transport
        connection_errors = ()
    where = f" at {endpoint}" if endpoint else ""
    try:
        yield
    except gexc.NotFound as exc:
        raise VertexAPIError(f"{what}: not found{where} ({exc.message})", code=404) from None
    except (gexc.Unauthenticated, gexc.PermissionDenied) as exc:
        raise VertexAPIError(
            f"{what}: permission denied{where} ({exc.message}); check the credentials "
            "(gcloud auth application-default login) and the roles of the account on the project",
            code=exc.code,
        ) from None
    except gexc.GoogleAPICallError as exc:
        transient = type(exc).__name__ in _TRANSIENT
        raise VertexAPIError(f"{what} failed{where}: {exc.code} {exc.message}", transient=transient, code=exc.code) from exc
    except gexc.RetryError as exc:
        raise VertexAPIError(f"{what} failed{where}: {exc}", transient=True) from exc
    except connection_errors as exc:
        raise VertexAPIError(f"{what}: cannot reach the service{where} ({type(exc).__name__}: {exc})", transient=True) from exc
