"""Clip archive: FLAC with checksum, local and S3 stores, links, the bounded wait of a report."""

from __future__ import annotations

import asyncio
import hashlib
import io
import time
import uuid
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import boto3
from botocore.config import Config
import numpy as np
import pytest
import soundfile as sf
from moto import mock_aws

from services.alerting.archive import clip_for_report
from shared.clips import (
    ClipStorageSettings,
    LocalClipStore,
    S3ClipStore,
    clip_key,
    create_clip_store,
    encode_flac,
)
from shared.db import Database
from shared.incidents import archive_clip, open_incident
from tests.alerting_support import make_device


def test_flac_round_trip_and_checksum() -> None:
    samples = np.random.default_rng(0).uniform(-0.5, 0.5, 16000 * 30).astype(np.float32)
    clip = encode_flac(samples, 16000)
    assert clip.data[:4] == b"fLaC" and clip.duration_s == 30.0
    assert clip.sha256 == hashlib.sha256(clip.data).hexdigest()
    decoded, rate = sf.read(io.BytesIO(clip.data), dtype="float32")
    assert rate == 16000 and np.abs(decoded - samples).max() <= 1 / 32768 + 1e-6


def test_local_store_refuses_anything_but_clip_keys(tmp_path: Path) -> None:
    store = LocalClipStore(tmp_path, "s", "http://gw")
    for key in ("../x.flac", "a/b.flac", "x.wav", ""):
        with pytest.raises(ValueError):
            store.path_for(key)
    assert store.path_for(clip_key(uuid.UUID(int=1))).parent == tmp_path


async def test_local_store_put_get(tmp_path: Path) -> None:
    store = LocalClipStore(tmp_path / "new", "s", "http://gw/")
    key = clip_key(uuid.uuid4())
    await store.put(key, b"fLaC1")
    await store.put(key, b"fLaC2")
    assert await store.get(key) == b"fLaC2"
    assert list((tmp_path / "new").iterdir()) == [tmp_path / "new" / key]
    with pytest.raises(FileNotFoundError):
        await store.get(clip_key(uuid.uuid4()))


async def test_s3_store_put_get_and_presigned_link(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    with mock_aws():
        client = boto3.client("s3", region_name="us-east-1", config=Config(signature_version="s3v4"))
        client.create_bucket(Bucket="clips")
        store = S3ClipStore(client, "clips", "incidents/")
        key = clip_key(uuid.uuid4())
        await store.put(key, b"fLaC-bytes")
        assert await store.get(key) == b"fLaC-bytes"
        assert client.head_object(Bucket="clips", Key=f"incidents/{key}")["ContentType"] == "audio/flac"
        link = store.link(key, 600)
        assert f"incidents/{key}" in link and "X-Amz-Expires=600" in link and "X-Amz-Signature=" in link
        with pytest.raises(FileNotFoundError):
            await store.get("missing.flac")


def test_store_follows_settings(tmp_path: Path) -> None:
    local = create_clip_store(ClipStorageSettings(dir=tmp_path, secret_key="now", previous_secret_keys=["before"]))
    assert isinstance(local, LocalClipStore) and local.root == tmp_path
    assert (local.secret, local.previous_secrets) == ("now", ("before",))
    s3 = create_clip_store(ClipStorageSettings(s3_bucket="b", s3_endpoint_url="http://127.0.0.1:1"))
    assert isinstance(s3, S3ClipStore) and s3.bucket == "b"


def test_clip_secret_must_be_set_outside_development() -> None:
    with pytest.raises(ValueError, match="HEARO_CLIPS_SECRET_KEY"):
        ClipStorageSettings(environment="production")


def signed_query(link: str) -> tuple[int, str]:
    query = parse_qs(urlsplit(link).query)
    return int(query["exp"][0]), query["sig"][0]


def test_rotation_links_signed_with_the_previous_key_still_verify(tmp_path: Path) -> None:
    key = clip_key(uuid.uuid4())
    before = LocalClipStore(tmp_path, "old-secret", "http://gw")
    after = LocalClipStore(tmp_path, "new-secret", "http://gw", previous_secrets=["old-secret"])
    sent_before = signed_query(before.link(key, 600))
    assert after.verify(key, *sent_before)  # a link already in a report keeps working
    assert after.link(key, 600) != before.link(key, 600) and after.verify(key, *signed_query(after.link(key, 600)))
    assert not before.verify(key, *signed_query(after.link(key, 600)))  # new links use the new key only
    retired = LocalClipStore(tmp_path, "new-secret", "http://gw")  # the window closed
    assert not retired.verify(key, *sent_before)
    assert not after.verify(clip_key(uuid.uuid4()), *sent_before)  # bound to its clip


async def test_report_link_is_ready_when_the_clip_is_stored(sqlite_db: Database, tmp_path: Path) -> None:
    store = LocalClipStore(tmp_path, "s", "http://gw")
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    info = await archive_clip(sqlite_db, store, incident.id, np.zeros(16000 * 30, np.float32), 16000)
    clip = await clip_for_report(sqlite_db, store, incident.id, stored=info, wait_s=5, ttl_s=60)
    assert clip["status"] == "ready" and clip["sha256"] == info.sha256 and clip["duration_s"] == 30.0
    assert clip["url"].startswith(f"http://gw/v1/clips/{info.key}?exp=")


async def test_report_waits_briefly_for_a_clip_then_goes_with_a_pending_link(sqlite_db: Database, tmp_path: Path) -> None:
    store = LocalClipStore(tmp_path, "s", "http://gw")
    device = await make_device(sqlite_db)
    incident = (await open_incident(sqlite_db, device_id=device, class_key="fire", confidence=0.9)).incident
    started = time.monotonic()
    clip = await clip_for_report(sqlite_db, store, incident.id, stored=None, wait_s=0.3, ttl_s=60)
    assert 0.3 <= time.monotonic() - started < 1.0
    assert clip["status"] == "pending" and clip["sha256"] is None
    assert clip["url"].startswith(f"http://gw/v1/clips/{clip_key(incident.id)}?")

    async def store_later() -> None:
        await asyncio.sleep(0.2)
        await archive_clip(sqlite_db, store, incident.id, np.zeros(1600, np.float32), 16000)

    task = asyncio.create_task(store_later())
    clip = await clip_for_report(sqlite_db, store, incident.id, stored=None, wait_s=3, ttl_s=60)
    await task
    assert clip["status"] == "ready"
