"""A loopback Kubernetes API server (JSON over HTTP) that *executes* the Jobs it is given.

No API server can be installed on this machine (no kube-apiserver, kind, k3s
or kwok), so tests of the kubernetes orchestrator talk to this one through
the real ``kubernetes`` Python client. It speaks the REST paths and JSON the
client uses and answers errors with ``Status`` objects, like the real server:

    GET    /version
    GET    /api/v1/namespaces/{ns}
    GET    /apis/batch/v1/namespaces/{ns}/jobs[?labelSelector=…]
    POST   /apis/batch/v1/namespaces/{ns}/jobs
    GET    /apis/batch/v1/namespaces/{ns}/jobs/{name}
    PATCH  /apis/batch/v1/namespaces/{ns}/jobs/{name}        (merge patches: labels, annotations, spec.suspend)
    DELETE /apis/batch/v1/namespaces/{ns}/jobs/{name}[?propagationPolicy=…]
    GET    /api/v1/namespaces/{ns}/pods[?labelSelector=…]
    GET    /api/v1/namespaces/{ns}/pods/{name}
    GET    /api/v1/namespaces/{ns}/pods/{name}/log[?timestamps=&tailLines=&sinceSeconds=&follow=]

What it executes: each Job gets a pod (labels ``job-name``, ``controller-uid``,
an owner reference), whose first container's ``command + args`` run as a
local process with ``base_env`` and the container's ``env`` values, never
``os.environ`` (reusing the process runner of :mod:`tests.servers.fake_vertex`).
Its stdout and stderr are the pod's log. The Job controller is emulated: pod
phases, ``active``/``succeeded``/``failed``, ``Complete``/``Failed`` conditions,
``backoffLimit`` retries, ``activeDeadlineSeconds``, ``suspend`` (ends the
running pod). Deletion follows ``propagationPolicy``: ``Background`` or
``Foreground`` kill and remove the pods and every Job owned by the deleted
one (transitively); no policy or ``Orphan`` keeps them running, as batch/v1
does. A Job created with an owner that does not exist is garbage-collected
at once, as the cluster's collector would.

Processes started from a pod reach this server like any client: that is how
the orchestrator pod of a run proves its in-cluster walk.

For the ``k8s-local`` example stack, serve it from the project directory
(pods run there, with it on ``PYTHONPATH`` as in a built image)::

    .venv/bin/python -m tests.servers.fake_kubernetes --port 8001
    export FLOWYML_K8S_ENDPOINT=http://127.0.0.1:8001
    .venv/bin/flowyml run examples/quickstart.py:pipeline --stack k8s-local
"""

from __future__ import annotations

import copy
import itertools
import json
import logging
import os
import random
import re
import shutil
import string
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Mapping, Sequence
from urllib.parse import parse_qs, urlsplit

from .fake_vertex import ExecutedProcess, _ProcessOutcome, _run_process
from .loopback import serve, stop_serving

logger = logging.getLogger(__name__)

__all__ = ["FakeKubernetes", "RecordedCall", "matches_selector"]

_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _stamp(dt: datetime) -> str:
    return dt.strftime("%Y-%m-%dT%H:%M:%SZ")


def _log_stamp(dt: datetime) -> str:
    """What the kubelet prefixes log lines with (``timestamps=true``): RFC 3339 with nanoseconds."""
    return dt.strftime("%Y-%m-%dT%H:%M:%S.%f000Z")


def matches_selector(labels: Mapping[str, str], selector: str | None) -> bool:
    """Equality-based label selectors: ``a=b``, ``a==b``, ``a!=b``, ``a``, ``!a``, comma-separated."""
    if not selector:
        return True
    for term in (t.strip() for t in selector.split(",")):
        if not term:
            continue
        if "!=" in term:
            key, value = term.split("!=", 1)
            if labels.get(key.strip()) == value.strip():
                return False
        elif "=" in term:
            key, value = term.replace("==", "=").split("=", 1)
            if labels.get(key.strip()) != value.strip():
                return False
        elif term.startswith("!"):
            if term[1:] in labels:
                return False
        elif term not in labels:
            return False
    return True


def _merge(target: dict[str, Any], patch: Mapping[str, Any]) -> None:
    """A JSON merge patch (RFC 7386): objects merge, ``null`` removes, anything else replaces."""
    for key, value in patch.items():
        if value is None:
            target.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(target.get(key), dict):
            _merge(target[key], value)
        else:
            target[key] = copy.deepcopy(value)


class ApiError(Exception):
    def __init__(self, code: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.code, self.reason, self.message = code, reason, message

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": self.message, "reason": self.reason, "code": self.code}


def _not_found(kind: str, name: str) -> ApiError:
    return ApiError(404, "NotFound", f'{kind} "{name}" not found')


@dataclass
class RecordedCall:
    method: str
    path: str
    query: dict[str, list[str]]
    body: Any


@dataclass
class _Pod:
    obj: dict[str, Any]
    lines: list[tuple[str, str]] = field(default_factory=list)
    cancel: threading.Event = field(default_factory=threading.Event)
    finished: threading.Event = field(default_factory=threading.Event)


@dataclass
class _Job:
    obj: dict[str, Any]
    deleted: threading.Event = field(default_factory=threading.Event)
    suspended: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    pod: _Pod | None = None


class FakeKubernetes:
    """The fake API server; ``url`` is its address once started.

    Args:
        workdir: cwd of every pod process (a temporary directory by default).
        base_env: the environment every pod process starts from.
        namespaces: the namespaces that exist.
        image_map: None accepts every image; a mapping makes unknown images fail
            to pull: as in a cluster, the pod stays Pending (``ImagePullBackOff``)
            and the Job neither fails nor ends until it is deleted, suspended or
            its deadline passes.
        pod_timeout: seconds after which a pod process is killed (a safety net).
    """

    def __init__(self, workdir: str | os.PathLike[str] | None = None, base_env: Mapping[str, str] | None = None,
                 *, namespaces: Sequence[str] = ("default",), image_map: Mapping[str, Sequence[str] | None] | None = None,
                 pod_timeout: float = 120.0, grace: float = 1.0, port: int = 0) -> None:
        self._workdir_arg = os.fspath(workdir) if workdir is not None else None
        self.workdir: str | None = self._workdir_arg
        self.base_env = {str(k): str(v) for k, v in (base_env or {}).items()}
        self.namespaces = set(namespaces)
        self.image_map = dict(image_map) if image_map is not None else None
        self.pod_timeout = pod_timeout
        self.grace = grace
        self.port = port
        self.calls: list[RecordedCall] = []
        self.executions: list[ExecutedProcess] = []
        self.jobs: dict[tuple[str, str], _Job] = {}
        #: Secrets by (namespace, name): ``add_secret`` stands for ``kubectl create secret generic``.
        self.secrets: dict[tuple[str, str], dict[str, str]] = {}
        self.pods: dict[tuple[str, str], _Pod] = {}
        self._lock = threading.RLock()
        self._versions = itertools.count(1000)
        self._server: ThreadingHTTPServer | None = None
        self._owns_workdir = False
        self.url = ""

    # -- lifecycle ------------------------------------------------------------------------
    def start(self) -> FakeKubernetes:
        if self._server is not None:
            return self
        if self.workdir is None:
            self.workdir = tempfile.mkdtemp(prefix="fake-k8s-")
            self._owns_workdir = True
        self._server, self.url = serve(_Handler, self, "fake-k8s", self.port)
        return self

    def stop(self) -> None:
        """Kill every pod process, then shut the server down."""
        with self._lock:
            pods = list(self.pods.values())
            jobs = list(self.jobs.values())
        for job in jobs:
            job.deleted.set()
        for pod in pods:
            pod.cancel.set()
        for job in jobs:
            if job.thread is not None:
                job.thread.join(timeout=self.grace + 5)
        for pod in pods:
            pod.finished.wait(timeout=self.grace + 5)
        stop_serving(self._server)
        self._server = None
        if self._owns_workdir and self.workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> FakeKubernetes:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    # -- test conveniences -------------------------------------------------------------------
    def job_objects(self, selector: str | None = None, namespace: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [copy.deepcopy(j.obj) for (ns, _), j in self.jobs.items()
                    if (namespace is None or ns == namespace) and matches_selector(j.obj["metadata"].get("labels") or {}, selector)]

    def calls_to(self, method: str, path_regex: str) -> list[RecordedCall]:
        rx = re.compile(path_regex)
        return [c for c in list(self.calls) if c.method == method and rx.search(c.path)]

    def running_processes(self) -> list[ExecutedProcess]:
        return [e for e in list(self.executions) if e.pid is not None and e.returncode is None]

    def wait_idle(self, timeout: float = 30.0) -> None:
        """Until no pod process runs (every Job ended, was suspended or deleted)."""
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                pods = [p for p in self.pods.values() if not p.finished.is_set()]
            if not pods:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"{len(pods)} pod(s) still running after {timeout}s")
            time.sleep(0.05)

    # -- API: namespaces and jobs ----------------------------------------------------------------
    def _namespace(self, ns: str) -> dict[str, Any]:
        if ns not in self.namespaces:
            raise _not_found("namespaces", ns)
        return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns, "uid": str(uuid.uuid5(uuid.NAMESPACE_DNS, ns))},
                "status": {"phase": "Active"}}

    def _job(self, ns: str, name: str) -> _Job:
        job = self.jobs.get((ns, name))
        if job is None:
            raise _not_found("jobs.batch", name)
        return job

    def create_job(self, ns: str, body: Any) -> dict[str, Any]:
        self._namespace(ns)
        if not isinstance(body, dict):
            raise ApiError(400, "BadRequest", "the body must be a JSON object")
        obj = copy.deepcopy(body)
        meta = obj.setdefault("metadata", {})
        name = meta.get("name") or ""
        problems = []
        if not _NAME.match(name):
            problems.append(f"metadata.name: Invalid value: {name!r}: a lowercase RFC 1123 label must consist of "
                            "lower case alphanumeric characters or '-', and must start and end with an alphanumeric character")
        containers = ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("containers") or []
        if not containers:
            problems.append("spec.template.spec.containers: Required value")
        if ((obj.get("spec") or {}).get("template") or {}).get("spec", {}).get("restartPolicy") not in ("Never", "OnFailure"):
            problems.append('spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never"')
        if problems:
            raise ApiError(422, "Invalid", f'Job.batch "{name}" is invalid: ' + "; ".join(problems))
        with self._lock:
            if (ns, name) in self.jobs:
                raise ApiError(409, "AlreadyExists", f'jobs.batch "{name}" already exists')
            meta.update({"namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _stamp(_now()),
                         "resourceVersion": str(next(self._versions))})
            obj["status"] = {}
            uid = meta["uid"]
            template_labels = obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {})
            template_labels.update({"job-name": name, "batch.kubernetes.io/job-name": name, "controller-uid": uid,
                                    "batch.kubernetes.io/controller-uid": uid})
            obj["spec"].setdefault("backoffLimit", 6)
            obj["spec"].setdefault("suspend", False)
            job = _Job(obj)
            self.jobs[(ns, name)] = job
            owners = [o.get("uid") for o in meta.get("ownerReferences") or []]
            live = {j.obj["metadata"]["uid"] for j in self.jobs.values()}
            orphaned = bool(owners) and not any(uid in live for uid in owners)
            answer = copy.deepcopy(obj)
        if orphaned:  # what the garbage collector does to an object whose owners are all gone
            self.delete_job(ns, name, "Background")
            return answer
        job.thread = threading.Thread(target=self._control, args=(ns, job), name=f"fake-k8s-job-{name}", daemon=True)
        job.thread.start()
        return answer

    def list_jobs(self, ns: str, selector: str | None) -> dict[str, Any]:
        with self._lock:
            items = [copy.deepcopy(j.obj) for (n, _), j in sorted(self.jobs.items())
                     if n == ns and matches_selector(j.obj["metadata"].get("labels") or {}, selector)]
        return {"apiVersion": "batch/v1", "kind": "JobList", "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items}

    def get_job(self, ns: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._job(ns, name).obj)

    def patch_job(self, ns: str, name: str, patch: Any) -> dict[str, Any]:
        if not isinstance(patch, dict):
            raise ApiError(415, "UnsupportedMediaType", "this fake accepts merge patches (a JSON object) only")
        with self._lock:
            job = self._job(ns, name)
            _merge(job.obj, patch)
            job.obj["metadata"]["resourceVersion"] = str(next(self._versions))
            suspend = bool(job.obj["spec"].get("suspend"))
            if suspend and not job.suspended.is_set():
                job.suspended.set()
                if job.pod is not None:
                    job.pod.cancel.set()
            return copy.deepcopy(job.obj)

    def delete_job(self, ns: str, name: str, propagation: str | None) -> dict[str, Any]:
        with self._lock:
            job = self._job(ns, name)
            uid = job.obj["metadata"]["uid"]
            del self.jobs[(ns, name)]
            job.deleted.set()
            cascade = propagation in ("Background", "Foreground")
            dependents = [(k, j) for k, j in self.jobs.items()
                          if uid in [o.get("uid") for o in j.obj["metadata"].get("ownerReferences") or []]]
            pods = [(k, p) for k, p in self.pods.items() if p.obj["metadata"]["labels"].get("controller-uid") == uid]
            for _, pod in pods:
                if cascade:
                    pod.cancel.set()
                    del self.pods[(ns, pod.obj["metadata"]["name"])]
                else:
                    pod.obj["metadata"].pop("ownerReferences", None)
            if not cascade:
                for _, dep in dependents:
                    refs = [o for o in dep.obj["metadata"].get("ownerReferences") or [] if o.get("uid") != uid]
                    dep.obj["metadata"]["ownerReferences"] = refs
        if cascade:
            for (dep_ns, dep_name), _ in dependents:
                try:
                    self.delete_job(dep_ns, dep_name, "Background")
                except ApiError:  # deleted meanwhile
                    pass
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Success",
                "details": {"name": name, "group": "batch", "kind": "jobs", "uid": uid}}

    # -- API: pods -------------------------------------------------------------------------------
    def list_pods(self, ns: str, selector: str | None) -> dict[str, Any]:
        with self._lock:
            items = [copy.deepcopy(p.obj) for (n, _), p in sorted(self.pods.items())
                     if n == ns and matches_selector(p.obj["metadata"].get("labels") or {}, selector)]
        return {"apiVersion": "v1", "kind": "PodList", "metadata": {"resourceVersion": str(next(self._versions))},
                "items": items}

    def _pod(self, ns: str, name: str) -> _Pod:
        pod = self.pods.get((ns, name))
        if pod is None:
            raise _not_found("pods", name)
        return pod

    def get_pod(self, ns: str, name: str) -> dict[str, Any]:
        with self._lock:
            return copy.deepcopy(self._pod(ns, name).obj)

    def pod_log(self, ns: str, name: str, query: Mapping[str, list[str]]) -> tuple[_Pod, list[str]]:
        """The pod and the lines to send now (``follow`` streams the rest from the handler)."""
        with self._lock:
            pod = self._pod(ns, name)
            if pod.obj["status"].get("phase") == "Pending":
                raise ApiError(400, "BadRequest", f'container "{_container(pod.obj)}" in pod "{name}" is waiting to '
                               "start: ContainerCreating")
            lines = list(pod.lines)
        since = query.get("sinceSeconds", [None])[0]
        if since is not None:
            cutoff = _log_stamp(_now() - timedelta(seconds=float(since)))
            lines = [(s, t) for s, t in lines if s >= cutoff]
        tail = query.get("tailLines", [None])[0]
        if tail is not None:
            lines = lines[-int(tail):] if int(tail) else []
        stamps = _flag(query, "timestamps")
        return pod, [f"{s} {t}" if stamps else t for s, t in lines]

    # -- the Job controller ------------------------------------------------------------------------
    def _control(self, ns: str, job: _Job) -> None:
        spec = job.obj["spec"]
        deadline = spec.get("activeDeadlineSeconds")
        started = time.monotonic()
        with self._lock:
            job.obj["status"].update({"startTime": _stamp(_now()), "active": 0})
        while not job.deleted.is_set() and not job.suspended.is_set():
            remaining = None if deadline is None else deadline - (time.monotonic() - started)
            outcome = self._run_pod(ns, job, remaining)
            with self._lock:
                status = job.obj["status"]
                status["active"] = 0
                if job.suspended.is_set():
                    status["conditions"] = [_condition("Suspended", "JobSuspended", "Job suspended")]
                    return
                if outcome.ok:
                    status["succeeded"] = status.get("succeeded", 0) + 1
                    status["completionTime"] = _stamp(_now())
                    status["conditions"] = [_condition("Complete", None, None)]
                    return
                status["failed"] = status.get("failed", 0) + 1
                if outcome.timed_out and deadline is not None:
                    status["conditions"] = [_condition("Failed", "DeadlineExceeded",
                                                       "Job was active longer than specified deadline")]
                    return
                if status["failed"] > int(spec.get("backoffLimit", 6)):
                    status["conditions"] = [_condition("Failed", "BackoffLimitExceeded",
                                                       "Job has reached the specified backoff limit")]
                    return
        if job.suspended.is_set():
            with self._lock:
                job.obj["status"]["conditions"] = [_condition("Suspended", "JobSuspended", "Job suspended")]

    def add_secret(self, ns: str, name: str, data: Mapping[str, str]) -> None:
        """A Secret, as ``kubectl create secret generic NAME --from-literal=K=V`` makes it."""
        with self._lock:
            self.secrets[(ns, name)] = dict(data)

    def _secret_env(self, ns: str, container: Mapping[str, Any]) -> tuple[dict[str, str], str | None]:
        """The variables ``envFrom`` secretRefs give a container, and the first Secret that does not exist."""
        env: dict[str, str] = {}
        with self._lock:
            for source in container.get("envFrom") or []:
                name = (source.get("secretRef") or {}).get("name")
                if name is None:
                    continue
                if (ns, name) not in self.secrets:
                    return {}, name
                env.update(self.secrets[(ns, name)])
        return env, None

    def _run_pod(self, ns: str, job: _Job, remaining: float | None) -> _ProcessOutcome:
        template = job.obj["spec"]["template"]
        job_name = job.obj["metadata"]["name"]
        suffix = "".join(random.choices(string.ascii_lowercase + string.digits, k=5))
        pod_name = f"{job_name}-{suffix}"
        container = template["spec"]["containers"][0]
        obj = {
            "apiVersion": "v1", "kind": "Pod",
            "metadata": {"name": pod_name, "namespace": ns, "uid": str(uuid.uuid4()), "creationTimestamp": _stamp(_now()),
                         "labels": dict(template["metadata"].get("labels") or {}),
                         "annotations": dict(template["metadata"].get("annotations") or {}),
                         "ownerReferences": [{"apiVersion": "batch/v1", "kind": "Job", "name": job_name,
                                              "uid": job.obj["metadata"]["uid"], "controller": True,
                                              "blockOwnerDeletion": True}]},
            "spec": {**copy.deepcopy(template["spec"]), "nodeName": "fake-node"},
            "status": {"phase": "Pending"},
        }
        pod = _Pod(obj)
        with self._lock:
            if job.deleted.is_set():
                pod.finished.set()
                return _ProcessOutcome(None, "", cancelled=True)
            self.pods[(ns, pod_name)] = pod
            job.pod = pod
            job.obj["status"]["active"] = 1
        image = container.get("image", "")
        argv = [*(container.get("command") or []), *(container.get("args") or [])]
        secret_env, missing = self._secret_env(ns, container)
        stuck = None
        if self.image_map is not None and image not in self.image_map:
            stuck = ("ImagePullBackOff", f'Back-off pulling image "{image}"')
        elif missing:
            stuck = ("CreateContainerConfigError", f'secret "{missing}" not found')
        if stuck is not None:
            reason, message = stuck
            with self._lock:
                obj["status"]["containerStatuses"] = [_container_status(
                    container, {"waiting": {"reason": reason, "message": message}})]
            deadline = None if remaining is None else time.monotonic() + remaining
            while not (pod.cancel.is_set() or job.deleted.is_set() or job.suspended.is_set()):
                if deadline is not None and time.monotonic() > deadline:
                    break
                time.sleep(0.05)
            pod.finished.set()
            return _ProcessOutcome(None, "", cancelled=pod.cancel.is_set(), timed_out=not pod.cancel.is_set(),
                                   launch_error=message)
        if self.image_map is not None:
            argv = [*(self.image_map[image] or []), *argv]
        env = {**self.base_env, "HOSTNAME": pod_name, **secret_env}
        env.update({e["name"]: str(e.get("value", "")) for e in container.get("env") or [] if "valueFrom" not in e})
        record = ExecutedProcess(job_name, pod_name, list(argv), dict(env), self.workdir or ".", image)
        with self._lock:
            self.executions.append(record)
            job.obj["status"]["ready"] = 1
            obj["status"].update({"phase": "Running", "startTime": _stamp(_now()),
                                  "containerStatuses": [_container_status(container, {"running": {"startedAt": _stamp(_now())}})]})

        def on_line(text: str, stream: str) -> None:
            with self._lock:
                pod.lines.append((_log_stamp(_now()), text.rstrip("\r\n")))

        timeout = self.pod_timeout if remaining is None else max(0.0, min(self.pod_timeout, remaining))
        if not argv:
            outcome = _ProcessOutcome(None, "", launch_error="the container has no command (the fake runs no entrypoints)")
        else:
            outcome = _run_process(argv, env, self.workdir or ".", on_line=on_line, cancel_event=pod.cancel,
                                   timeout=timeout, grace=self.grace, record=record)
        code = outcome.returncode if outcome.returncode is not None else 128
        with self._lock:
            job.obj["status"]["ready"] = 0
            obj["status"]["phase"] = "Succeeded" if outcome.ok else "Failed"
            obj["status"]["containerStatuses"] = [_container_status(container, {"terminated": {
                "exitCode": code if code >= 0 else 128 - code, "reason": "Completed" if outcome.ok else "Error",
                "startedAt": obj["status"]["startTime"], "finishedAt": _stamp(_now())}})]
            if outcome.launch_error:
                pod.lines.append((_log_stamp(_now()), outcome.launch_error))
            if job.suspended.is_set():  # a suspended Job's pods are deleted
                self.pods.pop((ns, pod_name), None)
        pod.finished.set()
        return outcome


def _flag(query: Mapping[str, list[str]], name: str) -> bool:
    """A boolean query parameter as the API server parses it (``true``, ``True``, ``1``)."""
    return query.get(name, ["false"])[0].lower() in ("true", "1", "t")


def _container(obj: Mapping[str, Any]) -> str:
    return obj["spec"]["containers"][0].get("name", "")


def _container_status(container: Mapping[str, Any], state: dict[str, Any]) -> dict[str, Any]:
    return {"name": container.get("name", ""), "image": container.get("image", ""), "imageID": "",
            "ready": "running" in state, "restartCount": 0, "started": "running" in state, "state": state}


def _condition(kind: str, reason: str | None, message: str | None) -> dict[str, Any]:
    now = _stamp(_now())
    condition = {"type": kind, "status": "True", "lastProbeTime": now, "lastTransitionTime": now}
    if reason:
        condition["reason"] = reason
    if message:
        condition["message"] = message
    return condition


_ROUTES = [
    (re.compile(r"^/version$"), "version"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)$"), "namespace"),
    (re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs$"), "jobs"),
    (re.compile(r"^/apis/batch/v1/namespaces/(?P<ns>[^/]+)/jobs/(?P<name>[^/]+)$"), "job"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods$"), "pods"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)$"), "pod"),
    (re.compile(r"^/api/v1/namespaces/(?P<ns>[^/]+)/pods/(?P<name>[^/]+)/log$"), "log"),
]


class _Handler(BaseHTTPRequestHandler):
    fake: Any = None  # the FakeKubernetes this handler class is bound to
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        logger.debug("fake k8s: " + format, *args)

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _body(self) -> Any:
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length else b""
        if not raw:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise ApiError(400, "BadRequest", "the body is not JSON") from None

    def _send(self, code: int, payload: Any) -> None:
        data = json.dumps(payload).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _dispatch(self, method: str) -> None:
        fake = self.fake
        parts = urlsplit(self.path)
        query = parse_qs(parts.query)
        try:
            body = self._body()
            fake.calls.append(RecordedCall(method, parts.path, query, body))
            for pattern, route in _ROUTES:
                match = pattern.match(parts.path)
                if match:
                    self._route(route, method, match.groupdict(), query, body)
                    return
            raise ApiError(404, "NotFound", f"the server could not find the requested resource ({method} {parts.path})")
        except ApiError as exc:
            self._send(exc.code, exc.status())

    def _route(self, route: str, method: str, args: dict[str, str], query: dict[str, list[str]], body: Any) -> None:
        fake = self.fake
        ns, name = args.get("ns", ""), args.get("name", "")
        selector = query.get("labelSelector", [None])[0]
        if route == "version" and method == "GET":
            return self._send(200, {"major": "1", "minor": "30", "gitVersion": "v1.30.0-flowyml-fake"})
        if route == "namespace" and method == "GET":
            return self._send(200, fake._namespace(ns))
        if route == "jobs" and method == "GET":
            fake._namespace(ns)
            return self._send(200, fake.list_jobs(ns, selector))
        if route == "jobs" and method == "POST":
            return self._send(201, fake.create_job(ns, body))
        if route == "job" and method == "GET":
            return self._send(200, fake.get_job(ns, name))
        if route == "job" and method == "PATCH":
            return self._send(200, fake.patch_job(ns, name, body))
        if route == "job" and method == "DELETE":
            policy = query.get("propagationPolicy", [None])[0] or (body or {}).get("propagationPolicy")
            return self._send(200, fake.delete_job(ns, name, policy))
        if route == "pods" and method == "GET":
            fake._namespace(ns)
            return self._send(200, fake.list_pods(ns, selector))
        if route == "pod" and method == "GET":
            return self._send(200, fake.get_pod(ns, name))
        if route == "log" and method == "GET":
            return self._log(ns, name, query)
        raise ApiError(405, "MethodNotAllowed", f"{method} is not supported on this resource")

    def _log(self, ns: str, name: str, query: dict[str, list[str]]) -> None:
        pod, lines = self.fake.pod_log(ns, name, query)
        follow = _flag(query, "follow")
        if not follow:
            data = "".join(f"{line}\n" for line in lines).encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return
        stamps = _flag(query, "timestamps")
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Connection", "close")
        self.end_headers()
        self.close_connection = True
        for line in lines:
            self.wfile.write(f"{line}\n".encode())
        sent = len(pod.lines)
        while True:
            done = pod.finished.is_set()
            new = pod.lines[sent:]
            sent += len(new)
            for stamp, text in new:
                self.wfile.write((f"{stamp} {text}\n" if stamps else f"{text}\n").encode())
            self.wfile.flush()
            if done:
                return
            time.sleep(0.05)



def main(argv: Sequence[str] | None = None) -> int:
    """Serve a fake cluster until interrupted; pods run in the current directory."""
    import argparse
    import signal
    import sys

    parser = argparse.ArgumentParser(description="A fake Kubernetes API server that runs Jobs as local processes")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--namespace", action="append", default=None, help="namespaces that exist (default: default)")
    args = parser.parse_args(argv)
    cwd = os.getcwd()
    env = {"PATH": os.pathsep.join([os.path.dirname(sys.executable), os.defpath]), "HOME": os.path.expanduser("~"),
           "LANG": "C.UTF-8", "PYTHONPATH": cwd}
    if os.environ.get("XDG_CONFIG_HOME"):
        env["XDG_CONFIG_HOME"] = os.environ["XDG_CONFIG_HOME"]
    with FakeKubernetes(cwd, env, namespaces=args.namespace or ["default"], port=args.port) as fake:
        logging.basicConfig(level=logging.INFO)
        logger.info("fake Kubernetes API on %s, running pods in %s", fake.url, cwd)
        sys.stdout.write(f"export FLOWYML_K8S_ENDPOINT={fake.url}\n")
        sys.stdout.flush()
        try:
            signal.pause()
        except KeyboardInterrupt:
            pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
