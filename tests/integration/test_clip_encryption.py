"""Clips at rest in S3: every upload is server-side encrypted, and a deleted clip is gone.

Against moto's S3 in server mode over real HTTP (the S3-compatible server the pipeline
test uses): the object's ``ServerSideEncryption`` comes back from a HEAD of it.
"""

from __future__ import annotations

import uuid

import boto3
import pytest
from botocore.exceptions import ClientError

from shared.clips import ClipStorageSettings, S3ClipStore, clip_key, create_clip_store
from tests.s3_support import BUCKET

def _head(endpoint: str, key: str) -> dict[str, object]:
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    head: dict[str, object] = client.head_object(Bucket=BUCKET, Key=f"clips/{key}")
    return head


async def test_uploads_are_encrypted_with_aes256_by_default_and_deleted_for_good(s3_endpoint: str) -> None:
    store = create_clip_store(ClipStorageSettings(s3_bucket=BUCKET, s3_endpoint_url=s3_endpoint))
    assert isinstance(store, S3ClipStore)
    key = clip_key(uuid.uuid4())
    await store.put(key, b"fLaC-audio")
    assert _head(s3_endpoint, key)["ServerSideEncryption"] == "AES256"

    await store.delete(key)
    with pytest.raises(FileNotFoundError):
        await store.get(key)
    with pytest.raises(ClientError):
        _head(s3_endpoint, key)
    await store.delete(key)  # deleting again is not an error


async def test_kms_encryption_with_a_key_id(s3_endpoint: str) -> None:
    kms_key = "arn:aws:kms:us-east-1:123456789012:key/hearo-clips"
    settings = ClipStorageSettings(
        s3_bucket=BUCKET, s3_endpoint_url=s3_endpoint, s3_server_side_encryption="aws:kms", s3_kms_key_id=kms_key
    )
    store = create_clip_store(settings)
    key = clip_key(uuid.uuid4())
    await store.put(key, b"fLaC-audio")
    head = _head(s3_endpoint, key)
    assert head["ServerSideEncryption"] == "aws:kms" and head["SSEKMSKeyId"] == kms_key


def test_encryption_setting_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARO_CLIPS_S3_SERVER_SIDE_ENCRYPTION", "aws:kms")
    monkeypatch.setenv("HEARO_CLIPS_S3_KMS_KEY_ID", "alias/hearo")
    settings = ClipStorageSettings()
    assert (settings.s3_server_side_encryption, settings.s3_kms_key_id) == ("aws:kms", "alias/hearo")
    monkeypatch.setenv("HEARO_CLIPS_S3_SERVER_SIDE_ENCRYPTION", "none")
    with pytest.raises(ValueError, match="s3_server_side_encryption"):
        ClipStorageSettings()
