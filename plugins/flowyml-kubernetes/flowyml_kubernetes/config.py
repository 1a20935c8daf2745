"""Options of the ``kubernetes`` executor, as written in ``stacks.toml``.

This module is imported whenever a kubernetes stack is shown or resolved, so it
imports nothing but attrs: the ``kubernetes`` client and the docker SDK load
only when a run is submitted or inspected.

.. code-block:: toml

    [stacks.k8s-prod]
    executor = { flavor = "kubernetes", namespace = "ml", context = "prod",
                 registry = "registry.acme.io/flowyml", service_account = "flowyml-runner" }
"""

from __future__ import annotations

import re
from typing import Any

import attrs

from flowyml_core.config import check_http_url, check_positive, field_problems, raise_field_problems, secret_field, spec_field

#: RFC 1123 label: what Kubernetes accepts as a namespace or service account name.
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")
#: A label or annotation key: an optional DNS-subdomain prefix, then a name of up to 63 characters.
_KEY = re.compile(r"^([a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?$")
_PULL_POLICIES = ("Always", "IfNotPresent", "Never")
_TOLERATION_KEYS = {"key", "operator", "value", "effect", "tolerationSeconds"}


def _check_name(value: str | None) -> str | None:
    if value is None or _DNS_LABEL.match(value):
        return None
    return f"{value!r} is not a Kubernetes name (lowercase letters, digits and '-', at most 63 characters)"


def _check_optional_count(value: int | None) -> str | None:
    return None if value is None or value >= 0 else f"must be >= 0, got {value!r}"


def _check_count(value: int) -> str | None:
    return None if value >= 0 else f"must be >= 0, got {value!r}"


def _check_labels(value: dict[str, str]) -> str | None:
    for key, item in value.items():
        if not _KEY.match(key):
            return f"key {key!r} is not a Kubernetes label key (letters, digits, '-', '_', '.', optional 'prefix/')"
        if not _LABEL_VALUE.match(str(item)):
            return f"value {item!r} of {key!r} is not a Kubernetes label value (at most 63 letters, digits, '-', '_', '.')"
    return None


def _check_annotations(value: dict[str, str]) -> str | None:
    bad = [key for key in value if not _KEY.match(key)]
    return f"key {bad[0]!r} is not a Kubernetes annotation key" if bad else None


def _check_pull_policy(value: str | None) -> str | None:
    if value is None or value in _PULL_POLICIES:
        return None
    return f"must be one of {', '.join(_PULL_POLICIES)}, got {value!r}"


def _check_tolerations(value: list[dict[str, Any]]) -> str | None:
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            return f"entry {i} must be a table such as {{ key = \"gpu\", operator = \"Exists\", effect = \"NoSchedule\" }}"
        unknown = sorted(set(item) - _TOLERATION_KEYS)
        if unknown:
            return f"entry {i} has unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(_TOLERATION_KEYS))})"
    return None


def _check_secret_names(value: list[str]) -> str | None:
    bad = [name for name in value if not _DNS_LABEL.match(name) and not re.match(r"^[a-z0-9][-a-z0-9.]{0,252}$", name)]
    return f"{bad[0]!r} is not a Kubernetes secret name" if bad else None


_CHECKS = {
    "namespace": _check_name,
    "service_account": _check_name,
    "api_server": check_http_url("https://10.0.0.1:6443"),
    "orchestrator_api_server": check_http_url("https://kubernetes.default.svc"),
    "poll_interval": check_positive,
    "max_parallel": lambda v: None if v >= 1 else f"must be >= 1, got {v!r}",
    "backoff_limit": _check_count,
    "ttl_seconds_after_finished": _check_optional_count,
    "active_deadline_seconds": _check_optional_count,
    "labels": _check_labels,
    "annotations": _check_annotations,
    "node_selector": _check_labels,
    "image_pull_policy": _check_pull_policy,
    "tolerations": _check_tolerations,
    "image_pull_secrets": _check_secret_names,
    "env_from_secrets": _check_secret_names,
}


@attrs.define(frozen=True)
class KubernetesConfig:
    """Which cluster and namespace runs go to, and how their Jobs and image are made.

    Cluster access, first match wins: ``api_server`` (a URL, e.g. ``kubectl
    proxy``'s ``http://127.0.0.1:8001``, with ``token`` when it needs one),
    ``in_cluster`` (the pod's service account, when flowyml itself runs in a
    pod), else the kubeconfig file (``kubeconfig``, ``$KUBECONFIG`` or
    ``~/.kube/config``) and its ``context``.

    Image: ``image`` is used as is when set. Otherwise an image is built from
    the project directory with flowyml-docker and pushed to
    ``registry``/``image_name``, tagged by its content.
    """

    namespace: str = "default"
    kubeconfig: str | None = None
    context: str | None = None
    in_cluster: bool = False
    api_server: str | None = None
    #: Bearer token for ``api_server``; a ``${env:…}`` reference. It stays on this machine.
    token: str | None = secret_field()
    #: Verify the API server's TLS certificate (``api_server`` only; kubeconfig files say it themselves).
    verify_ssl: bool = True
    #: The API server URL the orchestrator pod uses instead of its service account's in-cluster
    #: address. For clusters that are not one (a loopback fake in tests); leave unset in real clusters.
    orchestrator_api_server: str | None = None
    # -- image ------------------------------------------------------------------------------
    image: str | None = None
    registry: str | None = None
    image_name: str = "flowyml"
    base_image: str = "python:3.11-slim"
    requirements: list[str] = attrs.field(factory=list)
    dockerfile: str | None = None
    build_context: str = "."
    platform: str = "linux/amd64"
    docker_host: str | None = None
    image_pull_policy: str | None = None
    image_pull_secrets: list[str] = attrs.field(factory=list)
    # -- jobs and pods ----------------------------------------------------------------------
    #: The pods' service account. The orchestrator's must be allowed to create, get, list and
    #: delete Jobs and to read pods in the namespace (see the plugin's README for a Role).
    service_account: str | None = None
    node_selector: dict[str, str] = attrs.field(factory=dict)
    tolerations: list[dict[str, Any]] = attrs.field(factory=list)
    labels: dict[str, str] = attrs.field(factory=dict)
    annotations: dict[str, str] = attrs.field(factory=dict)
    #: Set in every pod's spec, where anyone who can read the Job sees them: ``${env:…}`` is refused.
    env_vars: dict[str, str] = spec_field(factory=dict)
    #: Secrets of the namespace whose keys become every pod's environment (``envFrom``): how the
    #: values of the stack's ``${env:…}`` references (a store's credentials, FLOWYML_SIGNING_KEY)
    #: reach the pods without being written into a Job spec.
    env_from_secrets: list[str] = attrs.field(factory=list)
    #: Pod retries of a unit's Job. Steps have their own ``retry``; 0 keeps one attempt per unit.
    backoff_limit: int = attrs.field(default=0, converter=int)
    #: Seconds after which finished Jobs (and their pods and logs) are deleted by the cluster.
    ttl_seconds_after_finished: int | None = None
    #: Seconds after which the orchestrator Job (the whole run) is killed by the cluster.
    active_deadline_seconds: int | None = None
    #: Units started at once by the orchestrator (independent ones only).
    max_parallel: int = attrs.field(default=4, converter=int)
    #: Seconds between two looks at a Job, by the client and by the orchestrator.
    poll_interval: float = attrs.field(default=5.0, converter=float)

    def __attrs_post_init__(self) -> None:
        """Check every option and report all problems at once, each under its field name."""
        raise_field_problems(self, "kubernetes executor", field_problems(self, _CHECKS))
