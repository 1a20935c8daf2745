"""Building and pushing the image remote steps run in, with the docker SDK.

The build context is the user's project directory, packed by us into a
deterministic tar (sorted names, zeroed times and owners) so that its hash is a
stable *content* hash: the image tag changes exactly when code, requirements or
the Dockerfile change, and an image already in the registry is not rebuilt.

Docker reports build and push failures inside its progress streams, not as
exceptions: both streams are read to the end and checked.
"""

from __future__ import annotations

import fnmatch
import hashlib
import io
import logging
import os
import re
import tarfile
import tempfile
from pathlib import Path, PurePosixPath
from typing import IO, Any, Callable, Iterator

import attrs

from flowyml_core.errors import FlowymlError

logger = logging.getLogger("flowyml.docker.images")

#: Never sent to the docker daemon, wherever they are: VCS data, caches, run outputs.
DEFAULT_EXCLUDES = (
    ".git", ".hg", ".svn", ".venv", "__pycache__", "*.pyc", "*.pyo", ".flowyml", ".pytest_cache",
    ".mypy_cache", ".ruff_cache", ".tox", "node_modules", ".ipynb_checkpoints", ".DS_Store", "*.egg-info",
)
#: Left out only at the top of the project (a package may well have a ``build`` module).
ROOT_EXCLUDES = ("venv", "env", "build", "dist", ".dockerignore")
GENERATED_DIR = ".flowyml-build"
_TAG_SAFE = re.compile(r"[^a-z0-9._/-]")


@attrs.define(frozen=True)
class BuildSpec:
    """What goes into an image. ``dockerfile`` is a path inside the context, or None to generate one."""

    context: Path
    base_image: str = "python:3.11-slim"
    requirements: tuple[str, ...] = attrs.field(default=(), converter=tuple)
    dockerfile: str | None = None
    env_vars: dict[str, str] = attrs.field(factory=dict)
    build_args: dict[str, str] = attrs.field(factory=dict)
    platform: str | None = "linux/amd64"


def generate_dockerfile(spec: BuildSpec, has_requirements: bool) -> str:
    """A Dockerfile that installs the requirements, then copies the project to /app.

    Requirements come first so that a code change reuses the cached pip layer.
    """
    lines = [f"FROM {spec.base_image}", "WORKDIR /app"]
    env = {"PYTHONUNBUFFERED": "1", "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": "/app", **spec.env_vars}
    lines.append("ENV " + " ".join(f"{k}={_quote_env(v)}" for k, v in sorted(env.items())))
    if has_requirements:
        lines.append(f"COPY {GENERATED_DIR}/requirements.txt /tmp/flowyml-requirements.txt")
        lines.append("RUN python -m pip install --no-cache-dir -r /tmp/flowyml-requirements.txt")
    lines.append("COPY . /app")
    return "\n".join(lines) + "\n"


def _quote_env(value: str) -> str:
    text = str(value)
    if re.fullmatch(r"[A-Za-z0-9_./:@,+-]*", text):
        return text
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def read_dockerignore(context: Path) -> list[str]:
    path = context / ".dockerignore"
    if not path.is_file():
        return []
    patterns = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            patterns.append(line.lstrip("/").rstrip("/"))
    return patterns


def _user_match(text: str, pattern: str) -> bool:
    pattern = pattern.replace("**/", "*").replace("/**", "/*")
    return fnmatch.fnmatchcase(text, pattern) or text.startswith(pattern + "/")


def _excluded(rel: PurePosixPath, user_patterns: list[str]) -> bool:
    """Default excludes match any path component; ``.dockerignore`` lines match
    from the context root, the last matching line wins and ``!`` re-includes."""
    if any(fnmatch.fnmatchcase(part, pat) for part in rel.parts for pat in DEFAULT_EXCLUDES):
        return True
    if rel.parts and rel.parts[0] in ROOT_EXCLUDES:
        return True
    text = rel.as_posix()
    result = False
    for pattern in user_patterns:
        negate = pattern.startswith("!")
        if _user_match(text, pattern[1:] if negate else pattern):
            result = not negate
    return result


def iter_context_files(context: Path) -> Iterator[tuple[str, Path]]:
    """(path in the tar, file) for every file of the context, sorted, ignores applied."""
    patterns = read_dockerignore(context)
    for root, dirs, files in os.walk(context):
        rel_root = PurePosixPath(Path(root).relative_to(context).as_posix())
        dirs[:] = sorted(d for d in dirs if not _excluded(rel_root / d, patterns))
        for name in sorted(files):
            rel = rel_root / name
            if not _excluded(rel, patterns):
                yield rel.as_posix(), Path(root) / name


@attrs.define
class BuildContext:
    """A packed build context and its content hash."""

    tar: IO[bytes]
    digest: str
    dockerfile: str
    files: list[str]

    @property
    def tag(self) -> str:
        return self.digest[:20]


def pack_context(spec: BuildSpec) -> BuildContext:
    """Tar the project plus generated files; hash names, modes and bytes (not times)."""
    context = spec.context.resolve()
    if not context.is_dir():
        raise FlowymlError(f"build context {context} is not a directory (set build_context in the executor options)")
    hasher = hashlib.sha256()
    out = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)
    names: list[str] = []
    with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:

        def add_bytes(name: str, data: bytes, mode: int = 0o644) -> None:
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.mtime = len(data), mode, 0
            tar.addfile(info, io.BytesIO(data))
            hasher.update(f"{name}\0{mode:o}\0{len(data)}\0".encode())
            hasher.update(data)
            names.append(name)

        for name, path in iter_context_files(context):
            if path.is_symlink():
                target = os.readlink(path)
                info = tarfile.TarInfo(name)
                info.type, info.linkname, info.mtime = tarfile.SYMTYPE, target, 0
                tar.addfile(info)
                hasher.update(f"{name}\0->{target}\0".encode())
                names.append(name)
                continue
            mode = 0o755 if os.access(path, os.X_OK) else 0o644
            add_bytes(name, path.read_bytes(), mode)

        if spec.dockerfile:
            dockerfile = spec.dockerfile
            if dockerfile not in names:
                raise FlowymlError(f"dockerfile {dockerfile!r} is not a file inside the build context {context}")
        else:
            requirements = list(spec.requirements)
            project_reqs = context / "requirements.txt"
            if project_reqs.is_file():
                requirements.extend(project_reqs.read_text(encoding="utf-8").splitlines())
            requirements = [r.strip() for r in requirements if r.strip() and not r.strip().startswith("#")]
            if requirements:
                add_bytes(f"{GENERATED_DIR}/requirements.txt", ("\n".join(requirements) + "\n").encode())
            dockerfile = f"{GENERATED_DIR}/Dockerfile"
            add_bytes(dockerfile, generate_dockerfile(spec, bool(requirements)).encode())
    hasher.update(f"platform={spec.platform}\0args={sorted(spec.build_args.items())}".encode())
    out.seek(0)
    return BuildContext(out, hasher.hexdigest(), dockerfile, names)


def _stream_error(event: Any) -> str | None:
    if not isinstance(event, dict):
        return None
    if "error" in event or "errorDetail" in event:
        detail = event.get("errorDetail") or {}
        return str(event.get("error") or detail.get("message") or event)
    return None


def docker_client(base_url: str | None = None) -> Any:
    """A docker SDK client for ``base_url`` (``unix://…``, ``tcp://…``) or the environment's."""
    try:
        import docker
    except ImportError as exc:
        raise FlowymlError(
            f"building images needs the docker SDK ({exc}); pip install flowyml-docker "
            "--find-links dist (in a flowyml checkout, after bash scripts/build-wheels.sh)"
        ) from exc
    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=600)
        return docker.from_env(timeout=600)
    except docker.errors.DockerException as exc:
        raise FlowymlError(
            f"cannot reach a docker engine at {base_url or os.environ.get('DOCKER_HOST') or 'the default socket'}: {exc}. "
            "Start docker, set docker_host in the executor options, or set image to a pre-built image"
        ) from exc


def image_repository(registry: str, image_name: str) -> str:
    repo = f"{registry.rstrip('/')}/{image_name.strip('/')}"
    if _TAG_SAFE.search(repo.split("/", 1)[1] if "/" in repo else repo):
        raise FlowymlError(f"image repository {repo!r} has characters docker refuses (use lowercase letters, digits, . _ - /)")
    return repo


def registry_has(client: Any, image: str) -> bool:
    """Whether the registry already serves ``image`` (same tag = same content)."""
    import docker

    try:
        client.api.inspect_distribution(image)
    except docker.errors.APIError as exc:
        logger.debug("registry does not have %s yet: %s", image, exc)
        return False
    return True


def build_image(client: Any, spec: BuildSpec, repository: str, packed: BuildContext | None = None) -> str:
    """Build ``repository:<content hash>`` locally and return that reference."""
    import docker

    packed = packed or pack_context(spec)
    image = f"{repository}:{packed.tag}"
    logger.info("building %s from %s (%d files)", image, spec.context, len(packed.files))
    kwargs: dict[str, Any] = {
        "fileobj": packed.tar, "custom_context": True, "tag": image, "dockerfile": packed.dockerfile,
        "rm": True, "forcerm": True, "pull": False, "decode": True, "buildargs": dict(spec.build_args) or None,
    }
    if spec.platform:
        kwargs["platform"] = spec.platform
    last: list[str] = []
    try:
        for event in client.api.build(**kwargs):
            problem = _stream_error(event)
            if problem:
                raise FlowymlError(f"docker build of {image} failed: {problem.strip()}" + _tail(last))
            text = (event.get("stream") or "").strip() if isinstance(event, dict) else ""
            if text:
                logger.debug("build: %s", text)
                last = (last + [text])[-5:]
    except docker.errors.APIError as exc:
        raise FlowymlError(f"docker build of {image} failed: {exc.explanation or exc}") from exc
    try:
        client.images.get(image)
    except docker.errors.ImageNotFound:
        raise FlowymlError(f"docker build of {image} ended without an image" + _tail(last)) from None
    return image


def push_image(client: Any, image: str) -> str:
    """Push and return the pushed digest; an error in the stream is an error."""
    import docker

    repository, _, tag = image.rpartition(":")
    digest = None
    logger.info("pushing %s", image)
    try:
        for event in client.api.push(repository, tag=tag, stream=True, decode=True):
            problem = _stream_error(event)
            if problem:
                raise FlowymlError(
                    f"pushing {image} failed: {problem.strip()}. Check that the registry is reachable and that "
                    "docker is logged in to it (gcloud auth configure-docker REGION-docker.pkg.dev)"
                )
            aux = event.get("aux") if isinstance(event, dict) else None
            if isinstance(aux, dict) and aux.get("Digest"):
                digest = aux["Digest"]
    except docker.errors.APIError as exc:
        raise FlowymlError(f"pushing {image} failed: {exc.explanation or exc}") from exc
    if not digest:
        raise FlowymlError(f"pushing {image} ended without a digest: the registry did not confirm the upload")
    return digest


def build_and_push(client: Any, spec: BuildSpec, repository: str) -> str:
    """The image reference to run: reused from the registry when its content hash is there."""
    packed = pack_context(spec)
    try:
        image = f"{repository}:{packed.tag}"
        if registry_has(client, image):
            logger.info("image %s is already in the registry; not rebuilding", image)
            return image
        build_image(client, spec, repository, packed)
        push_image(client, image)
        return image
    finally:
        packed.tar.close()


def _tail(lines: list[str]) -> str:
    return (" (last output: " + " | ".join(lines) + ")") if lines else ""


def build_for_executor(options: Any, docker_config: Any, build_context: Path,
                       login: Callable[[Any], None] | None = None) -> str:
    """Build and push the project's image for a remote executor; return its reference.

    ``options`` is the executor's config with the image fields every remote
    executor shares (``registry``, ``image_name``, ``base_image``,
    ``requirements``, ``dockerfile``, ``env_vars``, ``platform``,
    ``docker_host``); a ``DockerConfig`` given to the run overrides them
    where it sets something (its requirements are added). ``login(client)``
    runs before the build, for registries whose credentials come from the
    cloud's API (ECR) rather than from docker's own config.
    """
    from flowyml_core.container import DockerConfig

    default_base = DockerConfig().base_image
    spec = BuildSpec(
        context=build_context,
        base_image=(docker_config.base_image if docker_config and docker_config.base_image != default_base
                    else options.base_image),
        requirements=tuple(options.requirements) + (tuple(docker_config.requirements) if docker_config else ()),
        dockerfile=(docker_config.dockerfile if docker_config and docker_config.dockerfile else options.dockerfile),
        env_vars=dict(options.env_vars),
        build_args=dict(docker_config.build_args) if docker_config else {},
        platform=options.platform or None,
    )
    client = docker_client(options.docker_host)
    if login is not None:
        login(client)
    return build_and_push(client, spec, image_repository(options.registry, options.image_name))
