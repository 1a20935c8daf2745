"""A real S3 API for tests: moto's server, in a thread of this process, on 127.0.0.1.

moto (``moto[server,s3]``) answers the S3 REST API as AWS does for what the
stores use (buckets, PUT, ranged GET, multipart uploads, listings, deletes),
so the stores are tested through real s3fs, aiobotocore and botocore, signing
included. It does not check credentials: any key and secret are accepted.

Fixtures (loaded for the whole suite by ``pytest_plugins`` in tests/conftest.py):

session scope:
    ``moto_s3``    a started :class:`MotoS3`
function scope:
    ``s3_bucket``  name of a fresh bucket (emptied and deleted afterwards)
    ``s3_fs``      a fresh ``s3fs.S3FileSystem`` on the server (no listings cache)

When moto is not installed or cannot start, the tests that need it skip with
the reason (``pytest -rs``), or fail with ``FLOWYML_REQUIRE_SERVERS=1``.
"""

from __future__ import annotations

import logging
import threading
import time
import urllib.error
import urllib.request
import uuid
from typing import Any

import pytest

from tests.servers.fixtures import _unavailable

__all__ = ["MotoS3", "MotoUnavailable", "moto_s3", "s3_bucket", "s3_fs"]

#: Credentials the tests sign with (moto accepts any); never real ones.
KEY, SECRET, REGION = "flowyml-test-key", "flowyml-test-secret", "us-east-1"


class MotoUnavailable(RuntimeError):
    """moto cannot run here; ``str(exc)`` says why."""


class MotoS3:
    """moto's S3 on 127.0.0.1 (a free port), started and stopped by this object.

    ``store_options`` are the options an ``s3`` store needs to use it.
    """

    def __init__(self, port: int = 0, start_timeout: float = 15.0) -> None:
        self._requested_port = port
        self.start_timeout = start_timeout
        self._server: Any = None
        self.port: int | None = None
        self._client: Any = None

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("MotoS3 is not started")
        return f"http://127.0.0.1:{self.port}"

    @property
    def store_options(self) -> dict[str, str]:
        return {"endpoint_url": self.url, "key": KEY, "secret": SECRET, "region": REGION}

    def start(self) -> "MotoS3":
        try:
            from moto.server import ThreadedMotoServer
        except ImportError as exc:
            raise MotoUnavailable(f"moto is not installed ({exc}); pip install 'moto[server,s3]'") from None
        # werkzeug logs every request to stderr unless its logger is set: only problems, please.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        server = ThreadedMotoServer(ip_address="127.0.0.1", port=self._requested_port, verbose=False)
        # start() waits without a timeout for its thread to bind, forever if binding fails: bound it.
        starter = threading.Thread(target=server.start, daemon=True, name="moto-start")
        starter.start()
        starter.join(self.start_timeout)
        if starter.is_alive():
            raise MotoUnavailable(f"moto's server did not bind 127.0.0.1:{self._requested_port} "
                                  f"within {self.start_timeout:g} s")
        self._server = server
        self.port = server.get_host_and_port()[1]
        deadline = time.monotonic() + self.start_timeout
        last = ""
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.url}/moto-api/", timeout=2) as resp:
                    if resp.status == 200:
                        return self
            except (urllib.error.URLError, OSError) as exc:
                last = repr(exc)
            time.sleep(0.05)
        self.stop()
        raise MotoUnavailable(f"moto's server on 127.0.0.1 does not answer ({last})")

    def stop(self) -> None:
        """Shut the server down and join its thread. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            server.stop()

    def __enter__(self) -> "MotoS3":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()

    # -- helpers -------------------------------------------------------------------
    def client(self) -> Any:
        """A boto3 S3 client on the server (one, made on first use: making one takes ~0.1 s)."""
        if self._client is None:
            import boto3

            self._client = boto3.client("s3", endpoint_url=self.url, region_name=REGION, aws_access_key_id=KEY,
                                        aws_secret_access_key=SECRET)
        return self._client

    def filesystem(self, **kwargs: Any) -> Any:
        """A fresh s3fs filesystem on the server (no instance or listings cache)."""
        import s3fs

        kwargs.setdefault("skip_instance_cache", True)
        kwargs.setdefault("use_listings_cache", False)
        return s3fs.S3FileSystem(endpoint_url=self.url, key=KEY, secret=SECRET,
                                 client_kwargs={"region_name": REGION}, **kwargs)

    def make_bucket(self, name: str | None = None) -> str:
        name = name or f"test-{uuid.uuid4().hex[:16]}"
        self.client().create_bucket(Bucket=name)
        return name

    def delete_bucket(self, name: str) -> None:
        """Delete a bucket and everything in it (frees the server's memory)."""
        client = self.client()
        for page in client.get_paginator("list_objects_v2").paginate(Bucket=name):
            keys = [{"Key": item["Key"]} for item in page.get("Contents", [])]
            if keys:
                client.delete_objects(Bucket=name, Delete={"Objects": keys})
        client.delete_bucket(Bucket=name)

    def __repr__(self) -> str:
        return f"MotoS3(url={self.url if self.port else None!r})"


@pytest.fixture(scope="session")
def moto_s3():
    server = MotoS3()
    try:
        server.start()
    except MotoUnavailable as exc:
        _unavailable("S3 server (moto)", exc)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def s3_bucket(moto_s3):
    name = moto_s3.make_bucket()
    yield name
    moto_s3.delete_bucket(name)


@pytest.fixture
def s3_fs(moto_s3):
    return moto_s3.filesystem()
