"""Tests of the test servers themselves: each is started for real and used for real."""

from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from tests.servers.docker_engine import (
    DockerEngine,
    EngineUnavailable,
    LocalRegistry,
    PushError,
    _children,
    _pid_alive,
    push_image,
)
from tests.servers.fault_proxy import FaultProxy
from tests.servers.gcs_emulator import EmulatorUnavailable, GcsEmulator, free_port

MB = 1024 * 1024


@pytest.fixture(scope="module")
def big_blob():
    # 20 MB: above gcsfs's 5 MB block size, so writes go through a resumable upload.
    return os.urandom(20 * MB)


def _roundtrip(fs, bucket, big):
    fs.pipe(f"{bucket}/dir/small.txt", b"hello flowyml")
    assert fs.cat(f"{bucket}/dir/small.txt") == b"hello flowyml"
    assert fs.ls(f"{bucket}/dir") == [f"{bucket}/dir/small.txt"]
    assert fs.info(f"{bucket}/dir/small.txt")["size"] == 13

    with fs.open(f"{bucket}/big.bin", "wb") as f:
        f.write(big)
    assert fs.info(f"{bucket}/big.bin")["size"] == len(big)
    assert fs.cat(f"{bucket}/big.bin") == big
    # ranged read, in 1 MB blocks
    with fs.open(f"{bucket}/big.bin", "rb", block_size=MB) as f:
        f.seek(7 * MB + 3)
        assert f.read(3 * MB) == big[7 * MB + 3 : 10 * MB + 3]
    assert sorted(fs.ls(bucket)) == [f"{bucket}/big.bin", f"{bucket}/dir"]
    fs.rm(f"{bucket}/dir/small.txt")  # DELETE -> 204, no body
    assert not fs.exists(f"{bucket}/dir/small.txt")
    assert fs.ls(bucket) == [f"{bucket}/big.bin"]


# -- GCS emulator ----------------------------------------------------------------


def test_gcsfs_env_guard_is_set():
    # Without it, each bucket operation waits ~60 s for a gRPC call to fail.
    assert os.environ["GCSFS_EXPERIMENTAL_ZB_HNS_SUPPORT"].lower() == "false"


def test_emulator_roundtrip_small_and_20mb(gcs_emulator, gcs_bucket, big_blob):
    assert gcs_emulator.url == f"http://127.0.0.1:{gcs_emulator.port}"
    _roundtrip(gcs_emulator.filesystem(), gcs_bucket, big_blob)


def test_buckets_are_isolated(gcs_emulator, gcs_bucket, gcs_fs):
    assert gcs_fs.ls(gcs_bucket) == []
    with pytest.raises(FileNotFoundError):
        gcs_fs.cat(f"{gcs_bucket}/dir/small.txt")


def test_emulator_stop_kills_the_process(gcs_emulator):
    # gcs_emulator: only to skip (with its reason) where the emulator cannot run; this starts its own.
    emu = GcsEmulator().start()
    pid = emu.pid
    assert _pid_alive(pid)
    urllib.request.urlopen(f"{emu.url}/storage/v1/b", timeout=5).close()
    emu.stop()
    assert not _pid_alive(pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{emu.url}/storage/v1/b", timeout=2)
    emu.stop()  # idempotent


def test_emulator_unavailable_has_a_reason(monkeypatch):
    import platform

    monkeypatch.setattr(platform, "machine", lambda: "sparc64")
    with pytest.raises(EmulatorUnavailable, match="unsupported architecture 'sparc64'"):
        GcsEmulator().start()


# -- fault proxy -----------------------------------------------------------------


def test_proxy_roundtrip_no_faults_with_resumable_upload(gcs_emulator, gcs_bucket, fault_proxy, big_blob):
    fs = gcs_emulator.filesystem(endpoint_url=fault_proxy.url)
    _roundtrip(fs, gcs_bucket, big_blob)
    stats = fault_proxy.stats
    assert stats["requests"] == stats["forwarded"] > 0
    assert fault_proxy.faults_injected == 0 and stats["upstream_errors"] == 0
    # The upload session URL (absolute, from the emulator's Location header) was
    # rewritten to the proxy: the chunks themselves went through the proxy.
    chunks = [(m, p, o) for m, p, o in fault_proxy.log if "uploadType=resumable" in p and "upload_id=" in p]
    assert chunks, list(fault_proxy.log)
    assert chunks[-1][2] == "200"
    # and ranged reads went through it too
    assert any(o == "206" for _, _, o in fault_proxy.log)


def test_proxy_rewrites_location_header(gcs_emulator, gcs_bucket, fault_proxy):
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=10)
    try:
        conn.request(
            "POST",
            f"/upload/storage/v1/b/{gcs_bucket}/o?uploadType=resumable&name=obj",
            body=b"{}",
            headers={"Content-Type": "application/json"},
        )
        resp = conn.getresponse()
        resp.read()
        assert resp.status == 200
        location = resp.getheader("Location")
        assert location.startswith(fault_proxy.url + "/"), location
        # Same keep-alive connection: finish the upload at the rewritten URL, in chunked encoding.
        path = location[len(fault_proxy.url) :]
        conn.putrequest("PUT", path)
        conn.putheader("Transfer-Encoding", "chunked")
        conn.endheaders()
        for piece in (b"abc", b"defgh", b""):
            conn.send(b"%x\r\n%s\r\n" % (len(piece), piece))
        resp = conn.getresponse()
        body = resp.read()
        assert resp.status == 200, body
        assert json.loads(body)["size"] == "8"
    finally:
        conn.close()
    fs = gcs_emulator.filesystem()
    assert fs.cat(f"{gcs_bucket}/obj") == b"abcdefgh"


def test_proxy_each_fault_kind_directly(gcs_emulator, fault_proxy):
    url = f"{fault_proxy.url}/storage/v1/b"

    fault_proxy.set_faults(error503=1.0)
    with pytest.raises(urllib.error.HTTPError) as info:
        urllib.request.urlopen(url, timeout=5)
    assert info.value.code == 503
    assert json.loads(info.value.read())["error"]["code"] == 503

    fault_proxy.set_faults(drop=1.0)
    conn = http.client.HTTPConnection("127.0.0.1", fault_proxy.port, timeout=5)
    conn.request("GET", "/storage/v1/b")
    with pytest.raises((http.client.RemoteDisconnected, ConnectionResetError)):
        conn.getresponse()
    conn.close()

    fault_proxy.set_faults(delay=1.0, delay_ms=300)
    t0 = time.monotonic()
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
    assert time.monotonic() - t0 >= 0.3

    fault_proxy.clear_faults()
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
    assert fault_proxy.stats == {
        "requests": 4,
        "forwarded": 2,
        "drop": 1,
        "error503": 1,
        "delay": 1,
        "upstream_errors": 0,
        "client_disconnects": 0,
    }


def test_proxy_faults_are_seeded(gcs_emulator, fault_proxy):
    def run():
        fault_proxy.reset_stats()
        fault_proxy.set_faults(error503=0.5, seed=42)
        codes = []
        for _ in range(20):
            try:
                urllib.request.urlopen(f"{fault_proxy.url}/storage/v1/b", timeout=5).close()
                codes.append(200)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
        return codes

    first = run()
    assert first == run()
    assert 200 in first and 503 in first


def test_proxy_rejects_bad_settings(fault_proxy):
    with pytest.raises(ValueError):
        fault_proxy.set_faults(drop=0.6, error503=0.6)
    with pytest.raises(ValueError):
        fault_proxy.set_faults(delay=-0.1)
    with pytest.raises(ValueError):
        FaultProxy("https://127.0.0.1:1")


def test_proxy_upstream_down_answers_502():
    with FaultProxy(f"http://127.0.0.1:{free_port()}") as proxy:
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(f"{proxy.url}/x", timeout=5)
        assert info.value.code == 502
        assert proxy.stats["upstream_errors"] == 1


def test_gcsfs_survives_503s_through_proxy(gcs_emulator, gcs_bucket, fault_proxy):
    fs = gcs_emulator.filesystem(endpoint_url=fault_proxy.url)
    fault_proxy.set_faults(error503=0.2, seed=7)
    files = {f"{gcs_bucket}/many/{i}": f"payload {i}".encode() * (i + 1) for i in range(12)}
    fs.pipe(files)  # concurrent uploads; gcsfs retries 503s with backoff
    assert fs.cat(sorted(files)) == files
    stats = fault_proxy.stats
    assert stats["error503"] > 0, stats
    assert stats["forwarded"] >= 2 * len(files)
    # every object is really in the emulator, as written
    direct = gcs_emulator.filesystem()
    assert direct.cat(sorted(files)) == files


def test_gcsfs_20mb_upload_survives_drops_and_delays(gcs_emulator, gcs_bucket, fault_proxy, big_blob):
    fs = gcs_emulator.filesystem(endpoint_url=fault_proxy.url)
    fault_proxy.set_faults(drop=0.25, delay=0.2, delay_ms=50, seed=1)
    with fs.open(f"{gcs_bucket}/big.bin", "wb") as f:
        f.write(big_blob)
    assert fs.cat(f"{gcs_bucket}/big.bin") == big_blob
    stats = fault_proxy.stats
    assert stats["drop"] > 0 and stats["delay"] > 0, stats
    assert gcs_emulator.filesystem().cat(f"{gcs_bucket}/big.bin") == big_blob


def test_gcsfs_gives_up_when_every_request_fails(gcs_emulator, gcs_bucket, fault_proxy, monkeypatch):
    import asyncio
    import types

    import gcsfs.retry

    # gcsfs makes 6 attempts with 1+2+4+8+16 s (+ jitter) of backoff between them:
    # shorten only its backoff (its module's view of asyncio), keep the attempts.
    sleeps = []

    async def short_sleep(seconds):
        sleeps.append(seconds)
        await asyncio.sleep(0.01)

    monkeypatch.setattr(gcsfs.retry, "asyncio", types.SimpleNamespace(sleep=short_sleep))
    fs = gcs_emulator.filesystem(endpoint_url=fault_proxy.url)
    fault_proxy.set_faults(error503=1.0)
    with pytest.raises(gcsfs.retry.HttpError) as info:
        fs.cat(f"{gcs_bucket}/nothing")
    assert info.value.code == 503
    assert "injected" in str(info.value)
    assert fault_proxy.stats["error503"] == 6 and fault_proxy.stats["forwarded"] == 0
    assert len(sleeps) == 5 and sleeps[-1] >= 16


# -- docker engine and registry -------------------------------------------------------


@pytest.mark.docker
def test_engine_answers_with_no_bridge(docker_engine):
    client = docker_engine.client()
    assert client.ping() is True
    assert docker_engine.base_url.startswith("unix:///tmp/")
    # --bridge=none: no network on the 172.17.0.0/16 default bridge, only none/host.
    names = {n.name for n in client.networks.list()}
    assert "bridge" not in names
    assert names <= {"none", "host"}, names


@pytest.mark.docker
def test_busybox_image_runs_with_no_network(docker_engine, busybox_image):
    client = docker_engine.client()
    image = client.images.get(busybox_image)
    assert image.attrs["Os"] == "linux"
    out = client.containers.run(
        busybox_image,
        ["sh", "-c", "echo hello-from-$(( 6 * 7 )); cat /proc/net/dev | tail -n +3 | cut -d: -f1"],
        network_mode="none",
        remove=True,
    )
    lines = out.decode().split()
    assert lines[0] == "hello-from-42"
    assert lines[1:] == ["lo"]  # loopback only


@pytest.mark.docker
def test_container_failure_is_reported(docker_engine, busybox_image):
    import docker

    client = docker_engine.client()
    with pytest.raises(docker.errors.ContainerError) as info:
        client.containers.run(busybox_image, ["sh", "-c", "echo boom >&2; exit 3"], network_mode="none", remove=True)
    assert info.value.exit_status == 3
    assert b"boom" in info.value.stderr


@pytest.mark.docker
def test_push_to_local_registry(docker_engine, docker_registry, busybox_image):
    client = docker_engine.client()
    repo = f"{docker_registry.address}/flowyml-test/busybox"
    assert client.images.get(busybox_image).tag(repo, "t1")
    events = push_image(client, repo, "t1")
    digest = next(e["aux"]["Digest"] for e in events if "aux" in e)
    assert "flowyml-test/busybox" in docker_registry.catalog()
    assert docker_registry.tags("flowyml-test/busybox") == ["t1"]
    req = urllib.request.Request(
        f"{docker_registry.url}/v2/flowyml-test/busybox/manifests/t1",
        headers={"Accept": "application/vnd.docker.distribution.manifest.v2+json"},
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        assert resp.headers["Docker-Content-Digest"] == digest


@pytest.mark.docker
def test_push_to_dead_registry_raises(docker_engine, busybox_image):
    client = docker_engine.client()
    repo = f"127.0.0.1:{free_port()}/flowyml-test/busybox"  # nothing listens there
    client.images.get(busybox_image).tag(repo, "t1")
    with pytest.raises(PushError, match="connection refused"):
        push_image(client, repo, "t1")


@pytest.mark.docker
def test_registry_stop_kills_the_process(docker_registry):
    # docker_registry: only to skip (with its reason) where docker-registry cannot run; this starts its own.
    reg = LocalRegistry().start()
    pid, url = reg.pid, reg.url
    with urllib.request.urlopen(f"{url}/v2/", timeout=5) as resp:
        assert resp.status == 200
    reg.stop()
    assert not _pid_alive(pid)
    with pytest.raises(OSError):
        urllib.request.urlopen(f"{url}/v2/", timeout=2)


@pytest.mark.docker
def test_engine_stop_kills_dockerd_and_containerd(docker_engine):
    # docker_engine: only to skip where dockerd cannot run; this starts its own.
    engine = DockerEngine().start()
    root, pid = engine.root, engine.pid
    children = _children(pid)
    assert children, "dockerd should have started its containerd"
    assert engine.client().ping()
    engine.stop()
    assert not _pid_alive(pid)
    assert not any(_pid_alive(c) for c in children)
    assert not os.path.exists(root)


def test_engine_unavailable_when_not_root(monkeypatch):
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    with pytest.raises(EngineUnavailable, match="needs root"):
        DockerEngine().start()


# -- a machine without the system packages ------------------------------------------------
#: Tests that need docker.io, docker-registry or busybox-static (see .ci/system-packages.sh).
NEED_SYSTEM_PACKAGES = [
    "test_registry_stop_kills_the_process",
    "test_engine_stop_kills_dockerd_and_containerd",
    "test_busybox_image_runs_with_no_network",
    "test_push_to_local_registry",
]
#: Where those packages put the binaries the servers look for (on PATH, then these paths).
SYSTEM_BINARIES = ["/usr/sbin/dockerd", "/usr/bin/dockerd", "/sbin/dockerd", "/usr/bin/docker-registry",
                   "/usr/sbin/docker-registry", "/bin/busybox", "/usr/bin/busybox"]


def test_without_the_system_packages_their_tests_skip_with_the_reason():
    """A fresh machine, simulated: the binaries are hidden in a private mount namespace (PATH alone would not do,
    the servers also look in /usr/sbin, /usr/bin and /sbin), then the tests that need them must skip, not fail."""
    present = [p for p in SYSTEM_BINARIES if os.path.exists(p) and not os.path.isdir(p)]
    if not present:
        pytest.skip("the system packages are not installed here: this whole run already shows their tests skipping")
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.skip("hiding the system packages' binaries needs root and unshare(1)")
    hide = "".join(f"mount --bind /dev/null {p} && " for p in present)
    env = {k: v for k, v in os.environ.items() if k != "FLOWYML_REQUIRE_SERVERS" and not k.startswith("PYTEST_")}
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", hide + 'exec "$@"', "sh",
         sys.executable, "-m", "pytest", "-q", "-rs", "-p", "no:cacheprovider",
         *[f"tests/servers/test_servers.py::{name}" for name in NEED_SYSTEM_PACKAGES]],
        cwd=Path(__file__).resolve().parents[2], env=env, capture_output=True, text=True, timeout=300,
    )
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert f"{len(NEED_SYSTEM_PACKAGES)} skipped" in done.stdout, done.stdout[-3000:]
    assert "docker registry (docker-registry) unavailable: docker-registry not found (apt-get install docker-registry" \
        in done.stdout
    assert "docker engine (dockerd) unavailable: dockerd not found (apt-get install docker.io" in done.stdout
