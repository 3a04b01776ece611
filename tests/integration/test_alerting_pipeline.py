"""The production path end to end: PostgreSQL, Redis (broker and pub/sub), S3 (moto server),
a real worker process and a real receiving agency, all over real connections."""

from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

import httpx
import numpy as np
import pytest

from shared.clips import ClipStorageSettings, create_clip_store
from shared.db import Database
from shared.incident_events import RedisIncidentEvents
from shared.incident_state import ActionOutcome, IncidentAction
from shared.incidents import act_on_incident, archive_clip, open_incident
from tests.alerting_support import (  # noqa: F401 (fixtures)
    FAST,
    AgencyServer,
    WorkerSupervisor,
    agency,
    alerting_pg,
    assert_exactly_once,
    make_device,
    redis_broker_url,
    settled,
    worker_env,
)
from tests.s3_support import BUCKET

pytestmark = [pytest.mark.postgres, pytest.mark.redis, pytest.mark.slow]


async def test_report_with_s3_clip_contacts_and_pubsub_updates(
    alerting_pg: Database, agency: AgencyServer, redis_broker_url: str, s3_endpoint: str, tmp_path: Path
) -> None:
    db = alerting_pg
    clip_env = {"HEARO_CLIPS_S3_BUCKET": BUCKET, "HEARO_CLIPS_S3_ENDPOINT_URL": s3_endpoint}
    env = {
        **worker_env(db.url, tmp_path / "var", agency, broker_url=redis_broker_url, redis_url=redis_broker_url, **FAST),
        **clip_env,
        **{k: os.environ[k] for k in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_DEFAULT_REGION")},
    }
    store = create_clip_store(ClipStorageSettings(s3_bucket=BUCKET, s3_endpoint_url=s3_endpoint))
    events = RedisIncidentEvents(redis_broker_url)
    guardian_hook = f"{agency.url}/webhooks/guardian"

    reported = await make_device(db, contacts=1, contact_webhook=guardian_hook)
    cancelled = await make_device(db)
    confirmed = await make_device(db)
    async with events.subscribe() as updates:
        with WorkerSupervisor(env, tmp_path / "logs") as workers:
            a = (await open_incident(db, device_id=reported, class_key="fire", confidence=0.9, countdown_s=2.0,
                                     events=events)).incident
            samples = np.random.default_rng(1).uniform(-0.3, 0.3, 16000 * 30).astype(np.float32)
            clip = await archive_clip(db, store, a.id, samples, 16000)
            b = (await open_incident(db, device_id=cancelled, class_key="crime", confidence=0.9, countdown_s=2.0)).incident
            assert (await act_on_incident(db, b.id, IncidentAction.CANCEL, events=events)).outcome is ActionOutcome.CANCELLED
            c = (await open_incident(db, device_id=confirmed, class_key="help", confidence=0.9, countdown_s=600)).incident
            assert (await act_on_incident(db, c.id, IncidentAction.CONFIRM, events=events)).outcome is ActionOutcome.CONFIRMED
            assert await settled(db, timeout_s=30), workers.logs()

        seen: dict[str, list[str]] = {}

        async def collect() -> None:
            async for update in updates:
                seen.setdefault(update.incident_id, []).append(update.state)

        collector = asyncio.create_task(collect())
        await asyncio.sleep(0.3)
        collector.cancel()
    await events.close()

    figures = await assert_exactly_once(db, agency)
    assert figures["reports"] == 2  # a to 119, c to 119; b never
    reports = {r["payload"]["data"]["incident_id"]: r["payload"]["data"] for r in agency.reports()}
    assert set(reports) == {str(a.id), str(c.id)}
    assert reports[str(c.id)]["trigger"] == "confirmed"

    # The clip link is an S3 presigned URL that fetches exactly the archived bytes.
    report_clip = reports[str(a.id)]["clip"]
    assert report_clip["status"] == "ready" and report_clip["sha256"] == clip.sha256
    assert report_clip["url"].startswith(f"{s3_endpoint}/{BUCKET}/") and "X-Amz-Signature" in report_clip["url"]
    async with httpx.AsyncClient() as http:
        fetched = await http.get(report_clip["url"])
    assert fetched.status_code == 200 and hashlib.sha256(fetched.content).hexdigest() == clip.sha256

    # The guardian heard of the detection and of the report, by signed webhook.
    notices = [d for d in agency.store.list("webhook") if d["agency"] == "guardian"]
    assert sorted(n["type"] for n in notices) == ["incident.detected", "incident.dispatched"]

    # Updates reached a Redis subscriber: opened, cancelled, confirmed, dispatching, dispatched.
    assert seen[str(b.id)] == ["cancelled"]
    assert seen[str(a.id)][0] == "pending" and seen[str(a.id)][-2:] == ["dispatching", "dispatched"]
    assert seen[str(c.id)][-2:] == ["dispatching", "dispatched"]
