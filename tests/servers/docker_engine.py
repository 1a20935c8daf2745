"""A real Docker engine and a real registry for tests, started and stopped by the tests.

* ``DockerEngine``  runs ``dockerd`` (Debian ``docker.io``) as root in a private
  temp dir with its own data-root, exec-root and unix socket.  It is started
  with ``--bridge=none --iptables=false --ip-forward=false --ip-masq=false``:
  these flags are mandatory here, because docker's default bridge uses
  172.17.0.0/16, a private range that must never carry traffic on this
  machine.  Containers therefore only have the ``none`` and ``host`` networks;
  run them with ``network_mode="none"``.
* ``LocalRegistry`` runs Debian's ``docker-registry serve cfg.yml`` on
  127.0.0.1 with filesystem storage in a temp dir.
* ``build_busybox_image`` builds a base image ``FROM scratch`` with the static
  busybox of Debian's ``busybox-static`` so that ``RUN`` works.  Nothing is
  ever pulled: there is no network but loopback.
* ``push_image`` pushes and raises ``PushError`` on an error inside the push
  stream (the SDK does not raise for those).
* ``host_python_options`` gives the options of a ``docker`` executor whose
  containers run flowyml with **this** interpreter (see below).

Python in test containers: no Python base image can be pulled here, so the
containers of the docker executor's tests run the busybox image above with
the host's interpreter **mounted read-only**: its prefix (``sys.base_prefix``),
``/usr``, ``/lib``, ``/lib64``, the venv (``sys.prefix``) and the checkout the
venv's editable installs point at, each at the same path; the command is the
venv's ``python -m flowyml_core.cli step-runner``. Mounting (rather than
copying the interpreter and venv into an image) costs nothing per test, and
the containers run exactly the code under test. Units that must reach a
loopback server (the GCS emulator) use ``network = "host"``: with
``--bridge=none`` there is no other network. The repository's own ``docker``
stack uses a real image with a Python copied in instead
(``tests/servers/python_image.py``, made by ``scripts/docker_engine.py``).

Both servers raise ``EngineUnavailable(reason)`` when they cannot run here
(binary missing, not root, ...), which the fixtures turn into a skip.
``.ci/system-packages.sh`` installs the packages.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.request
import weakref
from pathlib import Path

from tests.servers.readiness import wait_for_http_ok

__all__ = [
    "DockerEngine",
    "EngineUnavailable",
    "LocalRegistry",
    "PushError",
    "build_busybox_image",
    "make_busybox_context",
    "push_image",
    "host_python_options",
]

logger = logging.getLogger(__name__)

BUSYBOX_CANDIDATES = ("/bin/busybox", "/usr/bin/busybox")
DEFAULT_BUSYBOX_TAG = "flowyml-test/busybox:latest"


class EngineUnavailable(RuntimeError):
    """The engine/registry cannot run on this machine; ``str(exc)`` says why."""


class PushError(RuntimeError):
    """``docker push`` reported an error inside its progress stream."""


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _require_root(what: str) -> None:
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        raise EngineUnavailable(f"{what} needs root (running as uid {getattr(os, 'geteuid', lambda: '?')()})")


def _require_binary(name: str, package: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/usr/bin/{name}", f"/sbin/{name}") if os.access(p, os.X_OK)), None
    )
    if not path:
        raise EngineUnavailable(f"{name} not found (apt-get install {package}; see .ci/system-packages.sh)")
    return path


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours is dead for our purposes
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def _children(pid: int) -> list[int]:
    out: list[int] = []
    try:
        for tid in os.listdir(f"/proc/{pid}/task"):
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as f:
                    out.extend(int(x) for x in f.read().split())
            except OSError:
                pass
    except OSError:
        pass
    return out


def _cmdline(pid: int) -> str:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            return f.read().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""


def _terminate_pid(pid: int, timeout: float, popen: subprocess.Popen | None = None) -> None:
    """SIGTERM, bounded wait, then SIGKILL — one PID."""
    if not _pid_alive(pid):
        if popen is not None:
            popen.poll()
        return
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if popen is not None:
            if popen.poll() is not None:
                return
        elif not _pid_alive(pid):
            return
        time.sleep(0.05)
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return
    if popen is not None:
        try:
            popen.wait(timeout=10)
        except subprocess.TimeoutExpired:
            pass
    else:
        deadline = time.monotonic() + 10
        while _pid_alive(pid) and time.monotonic() < deadline:
            time.sleep(0.05)


def _unmount_under(root: str) -> None:
    """Lazily unmount whatever is still mounted below root (overlay2 leftovers after a kill)."""
    try:
        with open("/proc/self/mounts") as f:
            points = [line.split()[1].encode().decode("unicode_escape") for line in f]
    except OSError:
        return
    prefix = root.rstrip("/") + "/"
    for mp in sorted((p for p in points if p.startswith(prefix)), key=len, reverse=True):
        subprocess.run(["umount", "-l", mp], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=10, check=False)


_live: "weakref.WeakSet" = weakref.WeakSet()


@atexit.register
def _stop_leftovers() -> None:  # last resort if a caller forgot stop()
    for server in list(_live):
        try:
            server.stop()
        except Exception:  # one server that will not stop must not keep the others running
            logger.warning("could not stop %r at exit", server, exc_info=True)


class DockerEngine:
    """A private dockerd (root only), reachable at ``base_url`` (a unix socket).

    Usage::

        with DockerEngine() as engine:
            client = engine.client()
            client.ping()
    """

    START_FLAGS = (
        "--bridge=none",
        "--iptables=false",
        "--ip-forward=false",
        "--ip-masq=false",
    )

    def __init__(self, start_timeout: float = 60.0, stop_timeout: float = 20.0):
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.root: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self._clients: list = []
        self._child_pids: set[int] = set()
        self.start_seconds: float | None = None

    @property
    def socket_path(self) -> str:
        if self.root is None:
            raise RuntimeError("DockerEngine is not started")
        return f"{self.root}/docker.sock"

    @property
    def base_url(self) -> str:
        return f"unix://{self.socket_path}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def start(self) -> "DockerEngine":
        if self._proc is not None:
            raise RuntimeError("DockerEngine already started")
        _require_root("dockerd")
        dockerd = _require_binary("dockerd", "docker.io")
        # containerd is started by dockerd itself; it must be installed.
        _require_binary("containerd", "containerd (a dependency of docker.io)")
        try:
            import docker  # noqa: F401
        except ImportError as exc:
            raise EngineUnavailable(f"the docker Python SDK is not installed: {exc}") from exc

        # Short path under /tmp: unix socket paths are limited to ~107 bytes.
        self.root = tempfile.mkdtemp(prefix="fdk-", dir="/tmp")
        t0 = time.monotonic()
        self._log = open(f"{self.root}/dockerd.log", "wb")
        cmd = [
            dockerd,
            "--data-root", f"{self.root}/data",
            "--exec-root", f"{self.root}/exec",
            "-H", self.base_url,
            "--pidfile", f"{self.root}/dockerd.pid",
            *self.START_FLAGS,
        ]
        try:
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C of the test run must not kill it before teardown
            )
        except OSError as exc:
            self._cleanup_dir()
            raise EngineUnavailable(f"cannot execute {dockerd}: {exc}") from exc
        _live.add(self)
        try:
            self._wait_ready(t0 + self.start_timeout)
        except BaseException:
            self.stop()
            raise
        self.start_seconds = time.monotonic() - t0
        return self

    def _wait_ready(self, deadline: float) -> None:
        import docker

        last = "no answer"
        while time.monotonic() < deadline:
            self._child_pids.update(_children(self._proc.pid))
            rc = self._proc.poll()
            if rc is not None:
                raise EngineUnavailable(f"dockerd exited with code {rc}: {self.output()[-3000:]}")
            if os.path.exists(self.socket_path):
                client = None
                try:
                    client = docker.DockerClient(base_url=self.base_url, version="auto", timeout=5)
                    if client.ping():
                        self._child_pids.update(_children(self._proc.pid))
                        return
                except Exception as exc:  # not listening yet / API not up yet
                    last = repr(exc)
                finally:
                    if client is not None:
                        client.close()
            time.sleep(0.1)
        raise EngineUnavailable(
            f"dockerd did not answer within {self.start_timeout:.0f}s (last: {last}); log: {self.output()[-3000:]}"
        )

    def client(self, timeout: int = 120):
        """A docker.DockerClient for this engine (closed at stop())."""
        import docker

        if self._proc is None:
            raise RuntimeError("DockerEngine is not started")
        c = docker.DockerClient(base_url=self.base_url, version="auto", timeout=timeout)
        self._clients.append(c)
        return c

    def output(self) -> str:
        if self.root is None:
            return ""
        try:
            return Path(f"{self.root}/dockerd.log").read_text(errors="replace")
        except OSError:
            return ""

    def stop(self) -> None:
        """SIGTERM dockerd by PID, wait, SIGKILL; then its containerd; unmount; remove the temp dir."""
        for c in self._clients:
            try:
                c.close()
            except Exception:  # a client of an engine that already died: nothing left to close
                logger.debug("closing a docker client failed", exc_info=True)
        self._clients.clear()
        proc, self._proc = self._proc, None
        if proc is not None:
            self._child_pids.update(_children(proc.pid))
            _terminate_pid(proc.pid, self.stop_timeout, popen=proc)
        # dockerd normally stops the containerd it started; if it was killed, we do it,
        # checking the command line names our directory (guards against PID reuse).
        for pid in sorted(self._child_pids):
            if self.root and _pid_alive(pid) and self.root in _cmdline(pid):
                _terminate_pid(pid, 10)
        self._child_pids.clear()
        if self._log is not None:
            self._log.close()
            self._log = None
        self._cleanup_dir()
        _live.discard(self)

    def _cleanup_dir(self) -> None:
        if self.root and os.path.isdir(self.root):
            _unmount_under(self.root)
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def __enter__(self) -> "DockerEngine":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"DockerEngine(base_url={self.base_url if self.root else None!r}, pid={self.pid})"


class LocalRegistry:
    """Debian's docker-registry (distribution 2.x) on 127.0.0.1, filesystem storage.

    ``address`` ("127.0.0.1:PORT") is what goes in front of a repository name.
    Plain HTTP to 127.0.0.0/8 needs no ``insecure-registries`` setting in dockerd.
    """

    def __init__(self, port: int | None = None, start_timeout: float = 30.0, stop_timeout: float = 10.0):
        self._requested_port = port
        self.port: int | None = None
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.root: str | None = None
        self._proc: subprocess.Popen | None = None
        self._log = None
        self.start_seconds: float | None = None

    @property
    def address(self) -> str:
        if self.port is None:
            raise RuntimeError("LocalRegistry is not started")
        return f"127.0.0.1:{self.port}"

    @property
    def url(self) -> str:
        return f"http://{self.address}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    def _config(self, port: int) -> str:
        return (
            "version: 0.1\n"
            "log:\n"
            "  level: warn\n"
            "storage:\n"
            "  filesystem:\n"
            f"    rootdirectory: {self.root}/data\n"
            "  delete:\n"
            "    enabled: true\n"
            "http:\n"
            f"  addr: 127.0.0.1:{port}\n"
        )

    def start(self) -> "LocalRegistry":
        if self._proc is not None:
            raise RuntimeError("LocalRegistry already started")
        binary = _require_binary("docker-registry", "docker-registry")
        self.root = tempfile.mkdtemp(prefix="freg-", dir="/tmp")
        t0 = time.monotonic()
        attempts = 1 if self._requested_port else 3
        last = ""
        for _ in range(attempts):
            port = self._requested_port or _free_port()
            cfg = Path(self.root, "config.yml")
            cfg.write_text(self._config(port))
            self._log = open(f"{self.root}/registry.log", "wb")
            try:
                self._proc = subprocess.Popen(
                    [binary, "serve", str(cfg)],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            except OSError as exc:
                self._stop_proc()
                self._cleanup_dir()
                raise EngineUnavailable(f"cannot execute {binary}: {exc}") from exc
            _live.add(self)
            self.port = port
            ok, last = wait_for_http_ok(f"{self.url}/v2/", self._proc, t0 + self.start_timeout, self.output)
            if ok:
                self.start_seconds = time.monotonic() - t0
                return self
            self._stop_proc()
            if "address already in use" not in last:
                break
        self._cleanup_dir()
        raise EngineUnavailable(f"docker-registry did not start: {last}")

    def output(self) -> str:
        if self.root is None:
            return ""
        try:
            return Path(f"{self.root}/registry.log").read_text(errors="replace")
        except OSError:
            return ""

    def catalog(self) -> list[str]:
        import json

        with urllib.request.urlopen(f"{self.url}/v2/_catalog", timeout=10) as resp:
            return json.load(resp).get("repositories", [])

    def tags(self, repo: str) -> list[str]:
        import json

        with urllib.request.urlopen(f"{self.url}/v2/{repo}/tags/list", timeout=10) as resp:
            return json.load(resp).get("tags") or []

    def _stop_proc(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None:
            _terminate_pid(proc.pid, self.stop_timeout, popen=proc)
        if self._log is not None:
            self._log.close()
            self._log = None

    def _cleanup_dir(self) -> None:
        if self.root and os.path.isdir(self.root):
            shutil.rmtree(self.root, ignore_errors=True)
        self.root = None

    def stop(self) -> None:
        self._stop_proc()
        self._cleanup_dir()
        _live.discard(self)

    def __enter__(self) -> "LocalRegistry":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"LocalRegistry(address={self.address if self.port else None!r}, pid={self.pid})"


# -- images ---------------------------------------------------------------------


def find_busybox() -> str:
    for p in BUSYBOX_CANDIDATES:
        if os.path.isfile(p) and os.access(p, os.X_OK):
            return p
    raise EngineUnavailable("static busybox not found (apt-get install busybox-static)")


def make_busybox_context(directory: str | os.PathLike, busybox: str | None = None) -> Path:
    """Write a docker build context (Dockerfile + busybox) into ``directory``.

    The image is ``FROM scratch`` + the static busybox, with its applets
    installed as symlinks in /bin, so ``RUN``, ``sh -c`` and the usual tools work.
    """
    busybox = busybox or find_busybox()
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    shutil.copy2(busybox, d / "busybox")
    (d / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        'RUN ["/bin/busybox", "mkdir", "-p", "/tmp", "/usr/bin", "/usr/sbin", "/sbin", "/etc"]\n'
        "ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin\n"
        'CMD ["/bin/sh"]\n'
    )
    return d


def build_busybox_image(client, tag: str = DEFAULT_BUSYBOX_TAG, busybox: str | None = None) -> str:
    """Build the busybox base image with ``client`` (never pulls) and return ``tag``."""
    with tempfile.TemporaryDirectory(prefix="fbb-") as tmp:
        ctx = make_busybox_context(tmp, busybox)
        client.images.build(path=str(ctx), tag=tag, rm=True, forcerm=True, pull=False, network_mode="none")
    return tag


def push_image(client, repo: str, tag: str = "latest", timeout: float | None = None) -> list[dict]:
    """Push ``repo:tag`` and return the decoded progress events.

    The engine reports push failures (registry down, refused, unauthorized...)
    *inside* the stream, and the SDK does not raise for them: this raises
    PushError on the first ``error``/``errorDetail`` event, and also when the
    stream ends without a digest (nothing was pushed).
    """
    events: list[dict] = []
    t0 = time.monotonic()
    for event in client.images.push(repo, tag=tag, stream=True, decode=True):
        events.append(event)
        if "error" in event or "errorDetail" in event:
            detail = event.get("errorDetail") or {}
            message = event.get("error") or detail.get("message") or str(event)
            raise PushError(f"pushing {repo}:{tag} failed: {message}")
        if timeout is not None and time.monotonic() - t0 > timeout:
            raise PushError(f"pushing {repo}:{tag}: no end after {timeout:.0f}s")
    if not any("aux" in e and "Digest" in (e.get("aux") or {}) for e in events):
        raise PushError(f"pushing {repo}:{tag}: the stream ended without a digest: {events[-5:]}")
    return events


def host_python_options(repo_root: str | os.PathLike) -> dict:
    """Options of a ``docker`` executor that runs ``flowyml step-runner`` with this interpreter, mounted.

    ``repo_root`` is the checkout the venv's editable installs point at.
    """
    import sys

    paths = [sys.base_prefix, "/usr", "/lib", "/lib64", sys.prefix, os.fspath(repo_root)]
    kept: list[str] = []
    for path in sorted({os.path.normpath(p) for p in paths if os.path.isdir(p)}):
        if not any(path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    python = os.path.join(sys.prefix, "bin", "python")
    return {
        "volumes": [f"{path}:{path}:ro" for path in kept],
        "command": [python, "-m", "flowyml_core.cli", "step-runner"],
    }
