"""Away and alone modes through the database and the alerting worker (SQLite and PostgreSQL):
an anomaly reaches the contacts with a clip link and never an agency; the nine-class detector
agreeing makes it an emergency that goes the normal route; inactivity opens one too; the
worker trains the model from the samples the gateway stored."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pytest
from sqlalchemy import select, update

from services.alerting.anomaly_training import AnomalyKeeper
from shared.anomaly import AnomalyPolicy, AnomalyScorer
from shared.anomaly.features import FEATURE_LENGTH
from shared.anomaly.incidents import open_anomaly_incident
from shared.anomaly.store import active_models, record_heard, record_samples
from shared.db import Database, Device
from shared.db.anomaly_tables import AnomalyActivity
from shared.db.models import ContactNotification, Incident
from shared.device_modes import ListeningMode
from shared.incident_state import IncidentKind, IncidentState
from shared.incidents import DeviceTokenChanged, get_incident, open_incident
from tests.alerting_support import make_device
from tests.unit.test_anomaly_model import home_pairs
from tests.unit.test_dispatch import build, outbox

POLICY = AnomalyPolicy(learning_days=1.0, timezone="UTC", day_starts_hour=0, day_ends_hour=24)


async def away_device_with_model(db: Database) -> uuid.UUID:
    """A device in away mode whose worker trained a model from the samples its gateway stored."""
    device_id = await make_device(db, contacts=1, contact_webhook="http://contact/hook")
    pairs = home_pairs(2_000, np.random.default_rng(5)).tolist()
    start = datetime.now(UTC) - timedelta(days=2)
    for i in range(0, len(pairs), 500):
        await record_samples(db, device_id, pairs[i: i + 500], start, start + timedelta(hours=1), POLICY.max_samples)
    async with db.session() as session:
        await session.execute(update(Device).where(Device.id == device_id).values(listening_mode=ListeningMode.AWAY))
        await session.execute(
            update(AnomalyActivity).where(AnomalyActivity.device_id == device_id).values(learning_since=start)
        )
    trained, _ = await AnomalyKeeper(db, POLICY, actor="test-worker").run_once()
    assert trained == [1]
    return device_id


async def anomaly_of(db: Database, device_id: uuid.UUID, countdown_s: float) -> uuid.UUID:
    """What a session does: the device's model judges an unusual sound and opens the incident."""
    active = (await active_models(db, [device_id]))[device_id]
    scorer = AnomalyScorer(ListeningMode.AWAY, active.model, refractory_s=300)
    unusual = np.full(FEATURE_LENGTH, 8.0)
    assert scorer.judge(unusual, 10.0) is None
    scored = scorer.judge(unusual, 10.5)
    assert scored is not None
    record = {"reason": "sound", "score": scored.score, "threshold": scored.threshold, "model_version": active.version}
    opened = await open_anomaly_incident(db, device_id=device_id, anomaly=record, countdown_s=countdown_s)
    assert opened is not None and opened.created and opened.incident.kind is IncidentKind.ANOMALY
    return opened.incident.id


async def test_an_anomaly_reaches_the_contacts_with_a_clip_link_and_never_an_agency(db: Database, tmp_path: Path) -> None:
    harness = build(db, tmp_path)
    await harness.sweeper.register()
    device_id = await away_device_with_model(db)
    incident_id = await anomaly_of(db, device_id, countdown_s=0)
    # A second anomaly while it is open opens nothing: one open incident per device.
    assert await open_anomaly_incident(db, device_id=device_id, anomaly={"reason": "sound"}, countdown_s=0) is None

    await harness.sweeper.sweep_once()
    await harness.run_published()
    await harness.sweeper.sweep_once()
    await harness.run_published()

    view = await get_incident(db, incident_id)
    assert view is not None and view.state is IncidentState.DISPATCHED and view.kind is IncidentKind.ANOMALY
    assert view.anomaly is not None and view.anomaly["model_version"] == 1 and view.class_key == "normal"
    assert await outbox(db, incident_id) == []
    assert harness.webhook_requests() == []  # no agency, not 112, not 119
    notices = [json.loads(r.content) for r in harness.requests if r.url.path == "/hook"]
    assert [n["type"] for n in notices] == ["incident.detected", "incident.dispatched"]
    detected = notices[0]["data"]
    assert detected["kind"] == "anomaly" and detected["agencies"] == [] and detected["anomaly"]["reason"] == "sound"
    assert detected["clip"]["url"].startswith("http://gw/v1/clips/")
    async with db.session() as session:
        states = (await session.scalars(
            select(ContactNotification.state).where(ContactNotification.incident_id == incident_id)
        )).all()  # fmt: skip
    assert {state.value for state in states} <= {"sent", "skipped"}


async def test_the_nine_classes_agreeing_make_it_an_emergency_reported_as_usual(db: Database, tmp_path: Path) -> None:
    harness = build(db, tmp_path)
    await harness.sweeper.register()
    device_id = await away_device_with_model(db)
    incident_id = await anomaly_of(db, device_id, countdown_s=60)
    joined = await open_incident(db, device_id=device_id, class_key="crime", confidence=0.9)
    assert not joined.created and joined.incident.id == incident_id
    assert joined.incident.kind is IncidentKind.EMERGENCY and joined.incident.class_key == "crime"
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident_id).values(
            deadline_at=datetime.now(UTC) - timedelta(seconds=1)))  # fmt: skip
    await harness.sweeper.sweep_once()
    assert [row[0] for row in await outbox(db, incident_id)] == ["112", "112"]
    await harness.run_published()
    assert len(harness.webhook_requests("112")) == 1
    view = await get_incident(db, incident_id)
    assert view is not None and view.state is IncidentState.DISPATCHED
    assert view.anomaly is not None and view.anomaly["became"] == "crime"


async def test_inactivity_in_alone_mode_opens_an_anomaly_once(db: Database) -> None:
    device_id = await make_device(db, contacts=1)
    await record_heard(db, device_id, active=True)
    async with db.session() as session:
        await session.execute(update(Device).where(Device.id == device_id).values(
            listening_mode=ListeningMode.ALONE, inactivity_span_s=3600))  # fmt: skip
        await session.execute(update(AnomalyActivity).where(AnomalyActivity.device_id == device_id).values(
            last_activity_at=datetime.now(UTC) - timedelta(minutes=59)))  # fmt: skip
    keeper = AnomalyKeeper(db, POLICY, actor="test-worker")
    assert await keeper.flag_inactivity() == 0
    async with db.session() as session:
        await session.execute(update(AnomalyActivity).where(AnomalyActivity.device_id == device_id).values(
            last_activity_at=datetime.now(UTC) - timedelta(minutes=61)))  # fmt: skip
    assert await keeper.flag_inactivity() == 1
    async with db.session() as session:
        incident = await session.scalar(select(Incident).where(Incident.device_id == device_id))
        assert incident is not None and incident.kind is IncidentKind.ANOMALY
        assert incident.anomaly is not None and incident.anomaly["reason"] == "inactivity"
        assert incident.anomaly["device_heard"] is True and incident.anomaly["threshold"] == 3600
        await session.execute(update(Incident).where(Incident.id == incident.id).values(state=IncidentState.CANCELLED))
    assert await keeper.flag_inactivity() == 0  # this spell was flagged


async def test_an_anomaly_heard_on_a_stale_token_opens_nothing(db: Database) -> None:
    device_id = await make_device(db, contacts=1)
    async with db.session() as session:
        current = (await session.get_one(Device, device_id)).token_hash
    with pytest.raises(DeviceTokenChanged) as raised:  # the token was rotated since the session began
        await open_anomaly_incident(db, device_id=device_id, anomaly={"reason": "sound"}, countdown_s=60,
                                    token_hash="stale")  # fmt: skip
    assert raised.value.current_token_hash == current
    async with db.session() as session:
        assert (await session.scalars(select(Incident).where(Incident.device_id == device_id))).all() == []
    with pytest.raises(DeviceTokenChanged) as raised:  # the device was deleted
        await open_anomaly_incident(db, device_id=uuid.uuid4(), anomaly={"reason": "sound"}, countdown_s=60,
                                    token_hash=current)  # fmt: skip
    assert raised.value.current_token_hash is None
    opened = await open_anomaly_incident(db, device_id=device_id, anomaly={"reason": "sound"}, countdown_s=60,
                                         token_hash=current)  # fmt: skip
    assert opened is not None and opened.created
