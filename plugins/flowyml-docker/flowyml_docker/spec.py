"""What goes into a unit's container: limits, mounts, labels, and the files kept out of its spec.

Everything here is decided before the first container starts, so that a bad
resource value or a store the engine cannot see is one line before anything
was built or run.
"""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
from collections.abc import Mapping
from typing import Any

import attrs

from flowyml_core.config import ENV_REF
from flowyml_core.errors import FlowymlError
from flowyml_core.grouping import unit_steps
from flowyml_core.resources import ResourceConfig

# -- labels -------------------------------------------------------------------------------
LABEL_RUN = "flowyml.run-id"
LABEL_ROLE = "flowyml.role"  # "unit": runs steps; "run": the run's handle, never started
LABEL_UNIT = "flowyml.unit"
LABEL_PIPELINE = "flowyml.pipeline"
LABEL_PROJECT = "flowyml.project"
LABEL_UNITS = "flowyml.units"  # on the run's handle: {unit: [steps]} as JSON
LABEL_CLIENT = "flowyml.client"  # on the run's handle: "host:pid" of the process walking the run

# -- private files --------------------------------------------------------------------------
#: Where the unit's private files are copied (never mounted from the client: remote engines work too).
PRIVATE_DIR = "/run/flowyml"
SECRETS_FILE = f"{PRIVATE_DIR}/secrets.json"
#: XDG_CONFIG_HOME of the unit: the stores' per-user signing key is ``<this>/flowyml/signing.key``.
CONFIG_HOME = f"{PRIVATE_DIR}/config"
#: Docker refuses smaller memory limits.
MIN_MEMORY = 6 * 2**20
PATH_KEYS = ("path", "url", "root", "store")


# -- resources --------------------------------------------------------------------------------
def step_resources(value: Any, step: str) -> ResourceConfig | None:
    """A step's resources as a :class:`ResourceConfig`; a bad field is one line naming the step and the field."""
    if value is None or isinstance(value, ResourceConfig):
        return value
    if not isinstance(value, Mapping):
        raise FlowymlError(f"step {step!r}: resources must be a ResourceConfig or a mapping, got {type(value).__name__}")
    fields = attrs.fields_dict(ResourceConfig)
    for name, item in value.items():
        if name not in fields:
            raise FlowymlError(f"step {step!r}: resources field {name!r} is unknown (fields: {', '.join(fields)})")
        try:
            ResourceConfig(**{name: item})
        except (TypeError, ValueError) as exc:
            raise FlowymlError(f"step {step!r}: resources field {name!r}: {exc}") from None
    return ResourceConfig(**value)


def docker_size(size: int) -> str:
    """Bytes the way docker writes them: ``512m``, ``2g``."""
    for suffix, factor in (("g", 2**30), ("m", 2**20), ("k", 2**10)):
        if size % factor == 0:
            return f"{size // factor}{suffix}"
    return f"{size / 2**20:.1f}m"


def container_limits(task: Any, engine_cpus: int | None) -> dict[str, Any]:
    """``create`` arguments for the unit's resources: nano_cpus, mem_limit (no swap), device_requests.

    Each step of the unit is checked on its own so that an error names it;
    the unit gets the field-by-field maximum (its ``resources``).
    """
    for step in unit_steps(task.unit):
        resources = step_resources(step.resources, step.name)
        if resources is None:
            continue
        if resources.memory is not None and resources.memory_bytes < MIN_MEMORY:
            raise FlowymlError(f"step {step.name!r}: resources field 'memory' is {resources.memory!r}; docker needs "
                               "at least 6Mi")
        cores = resources.cpu_cores
        if cores is not None and (cores <= 0 or (engine_cpus and cores > engine_cpus)):
            raise FlowymlError(f"step {step.name!r}: resources field 'cpu' asks for {resources.cpu!r} cores; the "
                               f"docker engine has {engine_cpus} (give a value from 0.01 to {engine_cpus})")
    resources = step_resources(task.resources, task.name)
    limits: dict[str, Any] = {}
    if resources is None:
        return limits
    if resources.cpu is not None:
        limits["nano_cpus"] = int(round(resources.cpu_cores * 1e9))
    if resources.memory is not None:
        limits["mem_limit"] = limits["memswap_limit"] = resources.memory_bytes  # a limit, not a swap budget
    count = resources.gpu_count or (1 if resources.gpu else 0)
    if count or resources.gpu == "all":
        import docker

        limits["device_requests"] = [docker.types.DeviceRequest(
            count=-1 if resources.gpu == "all" else count, capabilities=[["gpu"]])]
    return limits


def memory_limit(limits: Mapping[str, Any]) -> str | None:
    size = limits.get("mem_limit")
    return docker_size(size) if size else None


# -- stores the containers must reach ----------------------------------------------------------
def _local_path(value: str) -> str | None:
    if ENV_REF.search(value):
        return None
    if value.startswith("file://"):
        value = value[len("file://"):]
    if "://" in value or not value.startswith("/"):
        return None
    return os.path.normpath(value)


def store_paths(payload: str) -> list[tuple[str, str]]:
    """(component, absolute local path) of every store the shipped stack keeps on this machine.

    The local stores and the ``type`` router send absolute paths (their
    ``portable_options``); URLs (``gs://``, ``s3://``) need no mount.
    """
    found: list[tuple[str, str]] = []

    def walk(kind: str, value: Any, key: str | None) -> None:
        if isinstance(value, Mapping):
            for k, v in value.items():
                walk(kind, v, k)
        elif isinstance(value, list):
            for item in value:
                walk(kind, item, key)
        elif isinstance(value, str) and key in PATH_KEYS:
            path = _local_path(value)
            if path:
                found.append((kind, path))

    for kind, options in (json.loads(payload).get("components") or {}).items():
        walk(kind, options, None)
    return found


def store_mounts(payload: str | None, local_engine: bool, engine: str) -> dict[str, dict[str, str]]:
    """Bind mounts (same path on both sides, read-write) for the stores on this machine.

    A path inside another mounted one needs no mount of its own. Directories
    are made here first, so the engine does not create them as root.
    """
    if not payload:
        return {}
    paths = store_paths(payload)
    if paths and not local_engine:
        kind, path = paths[0]
        raise FlowymlError(
            f"the stack's {kind} keeps its data at {path} on this machine, which the docker engine at {engine} "
            "cannot see; use stores both reach (gs://, s3://), or a docker engine on this machine"
        )
    mounts: dict[str, dict[str, str]] = {}
    for _, path in sorted(paths, key=lambda item: item[1]):
        os.makedirs(path, exist_ok=True)
        if any(path == kept or path.startswith(kept.rstrip("/") + "/") for kept in mounts):
            continue
        mounts[path] = {"bind": path, "mode": "rw"}
    return mounts


def extra_volumes(specs: list[str]) -> dict[str, dict[str, str]]:
    volumes = {}
    for spec in specs:
        host, container, *mode = spec.split(":")
        volumes[os.path.abspath(os.path.expanduser(host))] = {"bind": container, "mode": mode[0] if mode else "rw"}
    return volumes


def default_user(configured: str | None, has_mounts: bool) -> str | None:
    """The container's user: as configured, else yours when you are not root and stores are mounted.

    Files a unit writes into a mounted store then belong to you, not to root.
    """
    if configured or not has_mounts or not hasattr(os, "geteuid") or os.geteuid() == 0:
        return configured
    return f"{os.geteuid()}:{os.getegid()}"


# -- secrets and the signing key ---------------------------------------------------------------
def referenced_secrets(payload: str | None, environ: Mapping[str, str]) -> dict[str, str]:
    """The values of the ``${env:…}`` references in the shipped stack (read inside the unit)."""
    if not payload:
        return {}
    names = sorted(set(ENV_REF.findall(payload)))
    missing = [name for name in names if name not in environ]
    if missing:
        raise FlowymlError(f"the stack refers to environment variable(s) {', '.join(missing)} (${{env:…}}), which "
                           "are not set here; export them before the run")
    return {name: environ[name] for name in names}


def needs_user_key(payload: str | None) -> bool:
    """Whether some store of the stack may sign with the per-user key (it sets no ``signing_key``)."""
    if not payload:
        return False
    components = json.loads(payload).get("components") or {}
    return any("signing_key" not in options for options in components.values())


def user_signing_key() -> bytes | None:
    """The per-user key the local stores sign pickles with (made now if missing), or None without flowyml-local."""
    try:
        from flowyml_local.signing import resolve_signer, user_key_path
    except ImportError:
        return None
    resolve_signer(None)  # creates the key on first use, exactly as the client's own stores would
    with open(user_key_path(), "rb") as handle:
        return handle.read()


def _owner(user: str | None) -> tuple[int, int, bool]:
    """uid, gid, and whether they are known, for the private files of a container running as ``user``."""
    if not user:
        return 0, 0, True
    uid, _, gid = user.partition(":")
    if uid.isdigit() and (not gid or gid.isdigit()):
        return int(uid), int(gid or uid), True
    return 0, 0, False


def private_archive(secrets: Mapping[str, str], signing_key: bytes | None, user: str | None) -> bytes | None:
    """A tar of the unit's private files, for ``put_archive`` into the created container.

    Copied into the container, not written into its spec (``docker inspect``
    shows the spec, never these files) and not mounted from this machine
    (so a remote engine works the same). Owned by the container's user, mode
    0600; with a user given by name (uid unknown here) they are readable by all
    users of the container.
    """
    if not secrets and signing_key is None:
        return None
    uid, gid, known = _owner(user)
    file_mode, dir_mode = (0o600, 0o700) if known else (0o444, 0o755)
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:

        def add(name: str, data: bytes | None) -> None:
            info = tarfile.TarInfo(name.lstrip("/"))
            info.uid, info.gid, info.mtime = uid, gid, 0
            if data is None:
                info.type, info.mode = tarfile.DIRTYPE, dir_mode
                tar.addfile(info)
            else:
                info.size, info.mode = len(data), file_mode
                tar.addfile(info, io.BytesIO(data))

        add(PRIVATE_DIR, None)
        if secrets:
            add(SECRETS_FILE, json.dumps(dict(secrets)).encode())
        if signing_key is not None:
            add(CONFIG_HOME, None)
            add(f"{CONFIG_HOME}/flowyml", None)
            add(f"{CONFIG_HOME}/flowyml/signing.key", signing_key)
    return buffer.getvalue()


def private_env(secrets: Mapping[str, str], signing_key: bytes | None) -> dict[str, str]:
    """The variables that tell the step runner where its private files are (paths, never values)."""
    env = {}
    if secrets:
        env["FLOWYML_SECRETS_FILE"] = SECRETS_FILE
    if signing_key is not None:
        env["XDG_CONFIG_HOME"] = CONFIG_HOME
    return env


def container_name(text: str) -> str:
    """``text`` as a container name docker accepts."""
    return re.sub(r"[^a-zA-Z0-9_.-]", "-", text)[:120]
