"""Options of the ``docker`` executor, as written in ``stacks.toml``.

Imported whenever a docker stack is shown or resolved, so it imports nothing
but attrs and the core's config helpers: the docker SDK loads only when a run
starts or is inspected.

.. code-block:: toml

    [stacks.docker]
    executor = { flavor = "docker", max_parallel = 4, requirements = ["flowyml-local"] }
    artifact_store = { flavor = "local", path = ".flowyml/artifacts" }
    cache_store = { flavor = "local", path = ".flowyml/cache" }
"""

from __future__ import annotations

import sys
import attrs

from flowyml_core.config import raise_field_problems, spec_field

#: Options that only matter when flowyml builds the image.
BUILD_OPTIONS = ("base_image", "requirements", "dockerfile", "build_args", "image_name")
DEFAULT_COMMAND = ("flowyml", "step-runner")


def default_base_image() -> str:
    """``python:X.Y-slim`` for the interpreter running flowyml, so pickles and code behave alike."""
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def _volume_problem(spec: str) -> str | None:
    parts = spec.split(":")
    if len(parts) not in (2, 3) or not all(parts[:2]):
        return f"{spec!r} is not HOST:CONTAINER[:ro|rw]"
    if not parts[1].startswith("/"):
        return f"{spec!r}: the path in the container must be absolute"
    if len(parts) == 3 and parts[2] not in ("ro", "rw"):
        return f"{spec!r}: the mode must be ro or rw, got {parts[2]!r}"
    return None


def _problems(config: DockerExecutorConfig) -> list[tuple[str, str]]:
    problems: list[tuple[str, str]] = []
    if config.max_parallel < 1:
        problems.append(("max_parallel", f"must be at least 1, got {config.max_parallel}"))
    if config.poll_interval <= 0:
        problems.append(("poll_interval", f"must be > 0 seconds, got {config.poll_interval!r}"))
    if config.stop_timeout < 0:
        problems.append(("stop_timeout", f"must be >= 0 seconds, got {config.stop_timeout!r}"))
    if not config.command or not all(config.command):
        problems.append(("command", "must be a non-empty list such as [\"flowyml\", \"step-runner\"]"))
    for spec in config.volumes:
        problem = _volume_problem(spec)
        if problem:
            problems.append(("volumes", problem))
    if config.docker_host is not None and "://" not in config.docker_host:
        problems.append(("docker_host", f"{config.docker_host!r} is not an engine URL such as "
                                        "unix:///var/run/docker.sock or tcp://host:2376"))
    if config.network is not None and not config.network.strip():
        problems.append(("network", "is empty; leave it out for the engine's default network"))
    if config.image:
        defaults = DockerExecutorConfig()
        for name in BUILD_OPTIONS:
            if getattr(config, name) != getattr(defaults, name):
                problems.append((name, f"has no effect with image = {config.image!r} (a pre-built image is run as "
                                       "it is); remove one of the two"))
    for key in config.env_vars:
        if not key or "=" in key:
            problems.append(("env_vars", f"{key!r} is not a variable name"))
    return problems


@attrs.define(frozen=True)
class DockerExecutorConfig:
    """Where the containers run and what they run.

    Image: ``image`` is run as it is when set. Otherwise an image is built from
    ``build_context`` (the project) with a Dockerfile generated from
    ``base_image`` and ``requirements`` (or your ``dockerfile``), tagged by the
    hash of its content: an unchanged project reuses its image. On a remote
    engine with ``registry`` set, the image is pushed there.
    """

    #: Engine URL; default ``DOCKER_HOST``, then the local socket.
    docker_host: str | None = None
    #: Independent units running at once.
    max_parallel: int = 4
    image: str | None = None
    registry: str | None = None
    #: Repository of built images; default ``flowyml/<build context directory name>``.
    image_name: str | None = None
    #: Default ``python:X.Y-slim`` for the Python running flowyml.
    base_image: str | None = None
    requirements: list[str] = attrs.field(factory=list)
    dockerfile: str | None = None
    build_context: str = "."
    build_args: dict[str, str] = attrs.field(factory=dict)
    platform: str | None = None
    #: What each container runs; ``flowyml step-runner`` reads the unit from its environment.
    command: list[str] = spec_field(factory=lambda: list(DEFAULT_COMMAND))
    #: Plain variables for every container (secrets: use ``${env:…}`` in the stores, which travel privately).
    env_vars: dict[str, str] = spec_field(factory=dict)
    labels: dict[str, str] = spec_field(factory=dict)
    #: Docker network (``none``, ``host``, a network name); default the engine's.
    network: str | None = None
    #: Extra bind mounts, ``HOST:CONTAINER[:ro|rw]``.
    volumes: list[str] = attrs.field(factory=list)
    #: ``uid[:gid]`` or a user name; default the image's user, or your uid:gid when you are not root
    #: and local stores are mounted (so their files stay yours).
    user: str | None = None
    #: Remove each unit's container when it ends; false keeps them (``docker logs``, ``docker inspect``).
    remove: bool = True
    #: How often ``runs logs --follow`` in another process looks for new containers.
    poll_interval: float = attrs.field(default=0.5, converter=float)
    #: Seconds ``runs stop`` gives a container between SIGTERM and SIGKILL.
    stop_timeout: float = attrs.field(default=10.0, converter=float)

    def __attrs_post_init__(self) -> None:
        """Every problem at once, each under its field name (``option 'volumes': …``)."""
        raise_field_problems(self, "docker executor", _problems(self))

    @property
    def effective_base_image(self) -> str:
        return self.base_image or default_base_image()
