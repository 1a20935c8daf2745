"""The Docker engine a stack runs on: which one, whether it is this machine, and one-line errors."""

from __future__ import annotations

import os
from typing import Any
from urllib.parse import urlsplit

from flowyml_core.errors import FlowymlError

DEFAULT_SOCKET = "unix:///var/run/docker.sock"


def engine_url(docker_host: str | None) -> tuple[str, str]:
    """The engine's URL and where it came from (for messages)."""
    if docker_host:
        return docker_host, "docker_host"
    if os.environ.get("DOCKER_HOST"):
        return os.environ["DOCKER_HOST"], "DOCKER_HOST"
    return DEFAULT_SOCKET, "the default socket"


def is_local_engine(url: str) -> bool:
    """Whether the engine runs on this machine, so that it can bind-mount this machine's paths."""
    parts = urlsplit(url)
    if parts.scheme in ("unix", "npipe"):
        return True
    return parts.scheme in ("tcp", "http", "https") and (parts.hostname or "") in ("127.0.0.1", "localhost", "::1")


def unreachable(url: str, origin: str, stack: str | None, reason: Any) -> FlowymlError:
    where = f" of stack {stack!r}" if stack else ""
    text = " ".join(str(reason).split())
    return FlowymlError(
        f"cannot reach the docker engine at {url} (from {origin}; option docker_host{where}): {text}. "
        "Start the engine (dockerd, Docker Desktop), or set docker_host in the executor options "
        "(or DOCKER_HOST) to a running one"
    )


def connect(docker_host: str | None, stack: str | None = None, timeout: int = 120) -> Any:
    """A docker SDK client that has answered a ping, or one line saying which engine and how to fix it."""
    import docker
    import requests

    url, origin = engine_url(docker_host)
    try:
        client = docker.DockerClient(base_url=url, version="auto", timeout=timeout, max_pool_size=32)
    except docker.errors.DockerException as exc:
        raise unreachable(url, origin, stack, exc) from None
    try:
        client.ping()
    except (docker.errors.DockerException, requests.exceptions.RequestException) as exc:
        client.close()
        raise unreachable(url, origin, stack, exc) from None
    return client
