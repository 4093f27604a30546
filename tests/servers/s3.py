"""A real S3 API on loopback (moto's server), started once per test session.

Request the ``s3_server`` fixture. For the rest of the session it points the standard AWS
environment at the server, so code that builds a plain ``boto3`` client (no endpoint or keys in
code) talks to it: ``AWS_ENDPOINT_URL``, ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``,
``AWS_REGION`` / ``AWS_DEFAULT_REGION`` (``us-east-1``); ``AWS_SESSION_TOKEN`` and
``AWS_PROFILE`` are removed. The previous values come back when the session ends.

The server is shared by every test of the session and keeps its state: make each test's buckets
unique with :meth:`S3Server.new_bucket`::

    def test_reads(s3_server):
        bucket = s3_server.new_bucket()
        s3_server.client().put_object(Bucket=bucket, Key="a.txt", Body=b"hi")
        ...
"""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

REGION = "us-east-1"
ACCESS_KEY_ID = "tideflow-test"
SECRET_ACCESS_KEY = "tideflow-test-secret"


@dataclass(frozen=True)
class S3Server:
    """Where the test S3 server listens and the credentials it accepts."""

    endpoint_url: str
    region: str = REGION
    access_key_id: str = ACCESS_KEY_ID
    secret_access_key: str = SECRET_ACCESS_KEY

    def client(self) -> Any:
        """A boto3 S3 client for this server (explicit settings, not the environment)."""
        import boto3

        return boto3.client(
            "s3",
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=self.access_key_id,
            aws_secret_access_key=self.secret_access_key,
        )

    def new_bucket(self, prefix: str = "test") -> str:
        """Create a bucket with a name no other test uses, and return the name."""
        name = f"{prefix}-{uuid.uuid4().hex[:12]}".lower()
        self.client().create_bucket(Bucket=name)
        return name


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@pytest.fixture(scope="session")
def s3_server() -> Iterator[S3Server]:
    """moto's S3 server on 127.0.0.1, with the AWS environment pointing at it (see module doc)."""
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    info = S3Server(endpoint_url=f"http://127.0.0.1:{port}")
    with pytest.MonkeyPatch.context() as env:
        env.setenv("AWS_ENDPOINT_URL", info.endpoint_url)
        env.setenv("AWS_ACCESS_KEY_ID", info.access_key_id)
        env.setenv("AWS_SECRET_ACCESS_KEY", info.secret_access_key)
        env.setenv("AWS_REGION", info.region)
        env.setenv("AWS_DEFAULT_REGION", info.region)
        env.delenv("AWS_SESSION_TOKEN", raising=False)
        env.delenv("AWS_PROFILE", raising=False)
        try:
            yield info
        finally:
            server.stop()
