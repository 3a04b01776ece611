"""An S3-compatible server for tests: moto in server mode on a loopback port, one bucket."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import boto3
import pytest
from moto.server import ThreadedMotoServer

from tests.alerting_support import free_port

BUCKET = "hearo-clips"


@contextmanager
def moto_s3(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Start the server, create :data:`BUCKET`, yield the endpoint URL; stop it after."""
    for name, value in {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test", "AWS_DEFAULT_REGION": "us-east-1"}.items():
        monkeypatch.setenv(name, value)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1").create_bucket(Bucket=BUCKET)
        yield endpoint
    finally:
        server.stop()
