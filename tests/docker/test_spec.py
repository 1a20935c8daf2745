"""What goes into a unit's container, decided before any container starts (no engine needed)."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

from flowyml_core.errors import FlowymlError
from flowyml_docker import spec


def _payload(**components) -> str:
    return json.dumps({"format": "flowyml-stack/1", "name": "d", "components": components})


def test_memory_limits_are_written_as_docker_writes_them():
    assert [spec.docker_size(n) for n in (512 * 2**20, 2 * 2**30, 64 * 2**10)] == ["512m", "2g", "64k"]


def test_local_stores_and_router_stores_are_mounted_once_at_the_same_path(tmp_path):
    payload = _payload(
        artifact_store={"flavor": "local", "path": str(tmp_path / "a")},
        cache_store={"flavor": "local", "path": str(tmp_path / "a" / "cache"), "signing_key": "${env:KEY}"},
        router={"flavor": "type", "rules": [{"type": "Frame", "store": f"file://{tmp_path}/routed"},
                                            {"type": "Model", "store": "gs://bucket/models"}]},
    )
    mounts = spec.store_mounts(payload, local_engine=True, engine="unix:///x.sock")
    assert mounts == {str(tmp_path / "a"): {"bind": str(tmp_path / "a"), "mode": "rw"},
                      str(tmp_path / "routed"): {"bind": str(tmp_path / "routed"), "mode": "rw"}}
    assert (tmp_path / "a" / "cache").is_dir() and (tmp_path / "routed").is_dir()  # made here, not by the engine


def test_a_local_store_on_a_remote_engine_is_an_error_naming_it(tmp_path):
    payload = _payload(artifact_store={"flavor": "local", "path": str(tmp_path / "a")})
    with pytest.raises(FlowymlError, match=r"the stack's artifact_store keeps its data at .* on this machine, which "
                                           r"the docker engine at tcp://gpu-box:2376 cannot see"):
        spec.store_mounts(payload, local_engine=False, engine="tcp://gpu-box:2376")
    assert spec.store_mounts(_payload(artifact_store={"flavor": "gcs", "url": "gs://b/a"}), False, "tcp://x") == {}


def test_secret_values_travel_in_a_private_archive_owned_by_the_container_user():
    secrets = spec.referenced_secrets(_payload(cache_store={"token": "${env:TOKEN}"}), {"TOKEN": "t0p", "OTHER": "x"})
    assert secrets == {"TOKEN": "t0p"}
    data = spec.private_archive(secrets, b"key\n", "1000:1001")
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
        secret_file = members["run/flowyml/secrets.json"]
        assert (secret_file.uid, secret_file.gid, secret_file.mode) == (1000, 1001, 0o600)
        assert json.loads(tar.extractfile(secret_file).read()) == {"TOKEN": "t0p"}
        assert tar.extractfile("run/flowyml/config/flowyml/signing.key").read() == b"key\n"
    env = spec.private_env(secrets, b"key\n")
    assert env == {"FLOWYML_SECRETS_FILE": "/run/flowyml/secrets.json", "XDG_CONFIG_HOME": "/run/flowyml/config"}
    assert spec.private_archive({}, None, None) is None


def test_a_missing_secret_is_named_before_anything_starts():
    with pytest.raises(FlowymlError, match="environment variable.s. TOKEN"):
        spec.referenced_secrets(_payload(cache_store={"token": "${env:TOKEN}"}), {})
