"""The alerting worker process runs the retention job: a cancelled false alarm's clip leaves
the clip store (a local folder, or S3 through moto's server) after the grace period, a
donated one stays, and the incident's audit trail records the deletion."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

import boto3
import numpy as np
import pytest
from botocore.exceptions import ClientError
from sqlalchemy import select

from shared.clips import ClipStorageSettings, ClipStore, create_clip_store
from shared.db import Database, upgrade_database
from shared.db.models import AuditEntry, IncidentClip
from shared.incident_privacy import donate_clip
from shared.incident_state import IncidentAction
from shared.incidents import act_on_incident, archive_clip, open_incident
from tests.alerting_support import FAST, AgencyServer, WorkerSupervisor, agency, make_device, wait_for, worker_env  # noqa: F401
from tests.s3_support import BUCKET

pytestmark = pytest.mark.slow


async def _false_alarm(db: Database, store: ClipStore) -> tuple[uuid.UUID, uuid.UUID]:
    device = await make_device(db)
    incident = (await open_incident(db, device_id=device, class_key="fire", confidence=0.9)).incident
    await archive_clip(db, store, incident.id, np.zeros(16000, np.float32), 16000)
    await act_on_incident(db, incident.id, IncidentAction.CANCEL, device_id=device, reason="cooking")
    return device, incident.id


async def _has_clip(db: Database, incident_id: uuid.UUID) -> bool:
    async with db.session() as session:
        return await session.get(IncidentClip, incident_id) is not None


async def _run(
    tmp_path: Path, agency: AgencyServer, clips: ClipStorageSettings, extra_env: dict[str, str]
) -> tuple[Database, ClipStore, uuid.UUID, uuid.UUID, str]:
    data_dir = tmp_path / "var"
    url = f"sqlite+aiosqlite:///{data_dir / 'hearo.db'}"
    data_dir.mkdir()
    await asyncio.to_thread(upgrade_database, url)
    db = Database(url)
    store = create_clip_store(clips)
    _, deleted = await _false_alarm(db, store)
    donor, donated = await _false_alarm(db, store)
    await donate_clip(db, donated, donor)
    env = {
        **worker_env(url, data_dir, agency, **FAST, cancelled_clip_grace_s="0.5", retention_interval_s="0.2"),
        **extra_env,
    }
    with WorkerSupervisor(env, tmp_path / "logs") as workers:
        assert await wait_for(lambda: _gone(db, deleted), timeout_s=30), workers.logs()
        logs = workers.logs()
    return db, store, deleted, donated, logs


async def _gone(db: Database, incident_id: uuid.UUID) -> bool:
    return not await _has_clip(db, incident_id)


async def _deletion_audited(db: Database, incident_id: uuid.UUID) -> dict[str, object]:
    async with db.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.incident_id == incident_id, AuditEntry.event == "clip_deleted")
        )
    assert entry is not None
    return entry.detail


async def test_the_worker_deletes_a_false_alarms_local_clip_after_the_grace(agency: AgencyServer, tmp_path: Path) -> None:
    clips = ClipStorageSettings(dir=tmp_path / "var" / "clips", secret_key="test-clip-secret")
    db, store, deleted, donated, _ = await _run(tmp_path, agency, clips, {"HEARO_CLIPS_SECRET_KEY": "test-clip-secret"})
    try:
        assert not (clips.dir / f"{deleted}.flac").exists()
        assert (await _deletion_audited(db, deleted))["reason"] == "cancelled_false_alarm"
        assert (clips.dir / f"{donated}.flac").is_file() and await _has_clip(db, donated)
    finally:
        await db.dispose()


async def test_the_worker_deletes_a_false_alarms_s3_clip_after_the_grace(
    agency: AgencyServer, tmp_path: Path, s3_endpoint: str
) -> None:
    clips = ClipStorageSettings(s3_bucket=BUCKET, s3_endpoint_url=s3_endpoint)
    s3_env = {"HEARO_CLIPS_S3_BUCKET": BUCKET, "HEARO_CLIPS_S3_ENDPOINT_URL": s3_endpoint}
    s3_env.update({k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")})
    db, store, deleted, donated, _ = await _run(tmp_path, agency, clips, s3_env)
    try:
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        with pytest.raises(ClientError):
            s3.head_object(Bucket=BUCKET, Key=f"clips/{deleted}.flac")
        assert s3.head_object(Bucket=BUCKET, Key=f"clips/{donated}.flac")["ServerSideEncryption"] == "AES256"
        assert (await _deletion_audited(db, deleted))["reason"] == "cancelled_false_alarm"
    finally:
        await db.dispose()
