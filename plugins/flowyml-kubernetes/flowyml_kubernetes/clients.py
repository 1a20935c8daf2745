"""The official ``kubernetes`` client, configured from the stack or from the pod it runs in.

Imported only when a run is submitted or inspected (the client costs a few
hundred milliseconds to import). API errors become one-line
:class:`KubernetesAPIError` messages that say what was being done, where,
and what to check.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
from typing import Any, Iterator

import attrs

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.kubernetes")

#: Set on the orchestrator pod when it must reach the API server at a URL (not a real cluster).
API_SERVER_ENV = "FLOWYML_K8S_API_SERVER"


class KubernetesAPIError(FlowymlError):
    """An API call failed; ``status`` is the HTTP status (0 when the server could not be reached)."""

    def __init__(self, message: str, status: int = 0) -> None:
        super().__init__(message)
        self.status = status


@attrs.define
class Api:
    """The API groups a run uses, sharing one connection pool, and where they point (for messages)."""

    batch: Any
    core: Any
    where: str

    def close(self) -> None:
        with contextlib.suppress(Exception):  # closing a pool that is already gone is not an error
            self.batch.api_client.close()


def api_from_config(config: Any) -> Api:
    """An API client from the executor's options: ``api_server``, ``in_cluster``, or kubeconfig."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    if config.api_server:
        configuration.host = config.api_server.rstrip("/")
        configuration.verify_ssl = config.verify_ssl
        if config.token:
            configuration.api_key = {"authorization": config.token}
            configuration.api_key_prefix = {"authorization": "Bearer"}
        where = configuration.host
    elif config.in_cluster:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException as exc:
            raise FlowymlError(f"kubernetes executor: in_cluster = true, but this process is not in a pod with a "
                               f"service account ({exc}); set kubeconfig/context or api_server instead") from None
        where = f"{configuration.host} (in-cluster)"
    else:
        path = os.path.expanduser(config.kubeconfig) if config.kubeconfig else None
        try:
            kube_config.load_kube_config(config_file=path, context=config.context,
                                         client_configuration=configuration)
        except (kube_config.ConfigException, OSError, TypeError, ValueError) as exc:
            source = path or os.environ.get("KUBECONFIG") or "~/.kube/config"
            context = f" (context {config.context!r})" if config.context else ""
            raise FlowymlError(
                f"kubernetes executor: cannot load the kubeconfig {source}{context}: {_first_line(exc)}; set "
                "kubeconfig and context in the stack's executor options, or api_server (e.g. the URL of "
                "`kubectl proxy`)") from None
        where = f"{configuration.host} (kubeconfig{f' context {config.context}' if config.context else ''})"
    return _api(configuration, where)


def api_in_pod(environ: Any = os.environ) -> Api:
    """The orchestrator pod's client: ``FLOWYML_K8S_API_SERVER`` when set, else the pod's service account."""
    from kubernetes import client
    from kubernetes import config as kube_config

    configuration = client.Configuration()
    url = environ.get(API_SERVER_ENV)
    if url:
        configuration.host = url.rstrip("/")
        where = configuration.host
    else:
        try:
            kube_config.load_incluster_config(client_configuration=configuration)
        except kube_config.ConfigException as exc:
            raise FlowymlError(f"the orchestrator is not running in a pod with a service account ({exc}); set "
                               "orchestrator_api_server in the stack when the cluster is not a real one") from None
        where = f"{configuration.host} (in-cluster)"
    return _api(configuration, where)


def _api(configuration: Any, where: str) -> Api:
    from kubernetes import client

    api_client = client.ApiClient(configuration)
    return Api(client.BatchV1Api(api_client), client.CoreV1Api(api_client), where)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _api_message(exc: Any) -> str:
    """The Status message the API server sent, else the HTTP reason."""
    body = getattr(exc, "body", None)
    if body:
        try:
            data = json.loads(body)
        except (TypeError, ValueError):
            data = None
        if isinstance(data, dict) and data.get("message"):
            return str(data["message"])
    return str(getattr(exc, "reason", "") or exc)


_HINTS = {
    401: "the credentials were refused; check the kubeconfig context or token",
    403: "the account is not allowed to; give it a Role for Jobs and pods in the namespace (see the plugin README)",
    404: "it does not exist",
    409: "it exists already",
}


@contextlib.contextmanager
def api_errors(action: str, where: str) -> Iterator[None]:
    """Turn API and connection errors raised while doing ``action`` into one-line messages."""
    from kubernetes.client.exceptions import ApiException
    from urllib3.exceptions import HTTPError

    try:
        yield
    except ApiException as exc:
        status = int(exc.status or 0)
        hint = _HINTS.get(status)
        raise KubernetesAPIError(
            f"{action} on the Kubernetes API at {where} failed ({status}): {_api_message(exc)}"
            + (f"; {hint}" if hint and status not in (404, 409) else ""), status) from None
    except (HTTPError, OSError) as exc:
        raise KubernetesAPIError(
            f"{action}: cannot reach the Kubernetes API at {where} ({type(exc).__name__}: {_first_line(exc)}); "
            "check that the cluster is up and the stack's kubeconfig/context or api_server point at it") from None
