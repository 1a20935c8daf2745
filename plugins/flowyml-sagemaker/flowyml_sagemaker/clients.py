"""boto3 clients for SageMaker, CloudWatch Logs and ECR, and AWS errors as one line for people.

Imported only when a run is submitted or inspected: it imports boto3.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator

from flowyml_core.errors import FlowymlError

from flowyml_sagemaker.config import SageMakerConfig

#: Error codes after which the same request may well succeed (AWS's throttling and service errors).
TRANSIENT_CODES = frozenset({
    "ThrottlingException", "Throttling", "ThrottledException", "RequestThrottledException", "TooManyRequestsException",
    "ProvisionedThroughputExceededException", "RequestLimitExceeded", "ServiceUnavailable", "InternalFailure",
    "InternalServerError", "InternalError", "ServiceUnavailableException",
})


class SageMakerAPIError(FlowymlError):
    """An AWS API call failed; ``code`` is AWS's error code, ``transient`` whether retrying may help."""

    def __init__(self, message: str, code: str = "", transient: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.transient = transient


def session(config: SageMakerConfig) -> Any:
    """A boto3 session with the configured profile or keys (else botocore's own credential chain)."""
    import boto3
    import botocore.exceptions

    kwargs: dict[str, Any] = {}
    if config.profile:
        kwargs["profile_name"] = config.profile
    if config.key:
        kwargs.update(aws_access_key_id=config.key, aws_secret_access_key=config.secret,
                      aws_session_token=config.token or None)
    if config.region:
        kwargs["region_name"] = config.region
    try:
        return boto3.Session(**kwargs)
    except botocore.exceptions.ProfileNotFound:
        raise FlowymlError(f"profile: the AWS profile {config.profile!r} is not in ~/.aws/config or "
                           "~/.aws/credentials (AWS_CONFIG_FILE, AWS_SHARED_CREDENTIALS_FILE)") from None


def region_of(config: SageMakerConfig, aws: Any) -> str:
    region = config.region or aws.region_name
    if not region:
        raise FlowymlError("region is not set: give region = \"eu-west-1\" (or the region you run in) in the "
                           "sagemaker executor options, or set AWS_REGION")
    return region


def make_client(config: SageMakerConfig, service: str, region: str | None = None) -> Any:
    """A client of ``service`` ("sagemaker", "logs", "ecr") in ``region`` (default: the configured one)."""
    from botocore.config import Config

    aws = session(config)
    endpoint = {"sagemaker": config.endpoint_url, "logs": config.effective_logs_endpoint}.get(service)
    retries = Config(retries={"max_attempts": 4, "mode": "standard"}, connect_timeout=10, read_timeout=60,
                     user_agent_extra="flowyml-sagemaker")
    return aws.client(service, region_name=region or region_of(config, aws), endpoint_url=endpoint or None,
                      config=retries)


@contextlib.contextmanager
def api_errors(action: str, endpoint: str | None = None) -> Iterator[None]:
    """Turn botocore's exceptions into one :class:`SageMakerAPIError` line that says what failed and why."""
    import botocore.exceptions as be

    where = f" at {endpoint}" if endpoint else ""
    try:
        yield
    except be.ClientError as exc:
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or "")
        message = str(error.get("Message") or exc)
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        transient = code in TRANSIENT_CODES or status >= 500
        hint = ""
        if code in ("AccessDeniedException", "AccessDenied", "UnrecognizedClientException",
                    "InvalidSignatureException", "ExpiredTokenException"):
            hint = "; check the credentials this client uses (profile, key/secret, AWS_* variables) and their policy"
        raise SageMakerAPIError(f"{action} failed: {code or status}: {message}{hint}", code, transient) from None
    except (be.EndpointConnectionError, be.ConnectTimeoutError, be.ReadTimeoutError, be.ConnectionClosedError) as exc:
        raise SageMakerAPIError(f"{action} failed: cannot reach AWS{where} ({exc})", "Connection", True) from None
    except be.NoCredentialsError:
        raise SageMakerAPIError(
            f"{action} failed: no AWS credentials found; set profile, or key and secret (as ${{env:…}} references) "
            "in the sagemaker executor options, or the AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY variables") from None
    except be.NoRegionError:
        raise SageMakerAPIError(f"{action} failed: region is not set (region = \"eu-west-1\" in the executor "
                                "options, or AWS_REGION)") from None
    except be.ParamValidationError as exc:
        raise SageMakerAPIError(f"{action} failed: the request is invalid: {exc}") from None
    except be.BotoCoreError as exc:
        raise SageMakerAPIError(f"{action} failed: {exc}") from None
