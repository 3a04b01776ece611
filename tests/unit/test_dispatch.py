"""Sweeper and sender on SQLite with a mock HTTP transport: claim, send, record, fall back."""

from __future__ import annotations

import asyncio
import json
import random
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
import pytest
from sqlalchemy import select, update

from services.alerting.dispatch import Dispatcher, OpsAlerter, RetryPolicy, settle_incident
from services.alerting.faults import FaultInjector
from services.alerting.report import ReportBuilder
from services.alerting.routing import Router
from services.alerting.settings import AgencyConfig, ChannelConfig
from services.alerting.sms import SmsSender
from services.alerting.sweeper import SweepPolicy, Sweeper
from services.alerting.webhooks import WebhookSender, verify
from shared.clips import LocalClipStore
from shared.db import Database, Device
from shared.db.clock import db_now
from shared.db.models import AlertingWorker, AuditEntry, ContactNotification, DispatchOutbox, Incident
from shared.incident_state import DeliveryState, IncidentAction, IncidentState
from shared.incidents import (
    EvidenceFacts,
    EvidencePolicy,
    ScorePoint,
    act_on_incident,
    archive_clip,
    get_incident,
    open_incident,
    record_evidence,
)
from tests.alerting_support import SECRET, make_device

AGENCIES = {
    agency_id: AgencyConfig(
        name=f"agency {agency_id}",
        channels=[
            ChannelConfig(kind="webhook", url=f"http://agency/webhooks/{agency_id}", secrets=[SECRET]),
            ChannelConfig(kind="sms", to=f"+82{agency_id}"),
        ],
    )
    for agency_id in ("112", "119")
}


@dataclass
class Harness:
    db: Database
    sweeper: Sweeper
    dispatcher: Dispatcher
    published: list[tuple[str, str]]
    requests: list[httpx.Request] = field(default_factory=list)
    answer: Callable[[httpx.Request], httpx.Response] = lambda r: httpx.Response(200)

    async def run_published(self) -> list[str]:
        """Deliver every published message (as the Celery workers would) and return the outcomes."""
        outcomes = []
        while self.published:
            table, row_id = self.published.pop(0)
            outcomes.append(await self.dispatcher.deliver(table, uuid.UUID(row_id)))
        return outcomes

    def webhook_requests(self, agency: str | None = None) -> list[httpx.Request]:
        return [r for r in self.requests if "/webhooks/" in r.url.path and (agency is None or r.url.path.endswith(agency))]


def build(db: Database, tmp_path: Path, owner: str = "worker-a", max_attempts: int = 2) -> Harness:
    harness = Harness(db, None, None, [])  # type: ignore[arg-type]

    def handler(request: httpx.Request) -> httpx.Response:
        harness.requests.append(request)
        return harness.answer(request)

    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))
    router = Router(AGENCIES, {"fire": ["119", "112"]})
    clips = LocalClipStore(tmp_path / "clips", "clip-secret", "http://gw")
    policy = RetryPolicy(max_attempts=max_attempts, backoff_base_s=0.0001, backoff_max_s=0.0001, lease_s=30, worker_stale_s=2)
    harness.dispatcher = Dispatcher(
        db, owner=owner, router=router,
        reports=ReportBuilder(db, router, clips, clip_wait_s=0, link_ttl_s=600, history_limit=5),
        webhooks=WebhookSender(client, 1), contact_secrets=[SECRET],
        sms=SmsSender(client, provider_url="http://sms/send", headers={}, template={"to": "$to", "text": "$text"},
                      sender="x", timeout_s=1),
        policy=policy, ops=OpsAlerter(client, "", 1), faults=FaultInjector(frozenset(), 0), rng=random.Random(1),
    )
    harness.sweeper = Sweeper(
        db, owner=owner, router=router, publish=lambda t, i: harness.published.append((t, i)),
        policy=SweepPolicy(interval_s=0.1, redrive_after_s=0.2, claim_batch=10, worker_stale_s=2, heartbeat_s=1),
        faults=FaultInjector(frozenset(), 0),
    )
    return harness


@pytest.fixture
async def harness(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Harness]:
    h = build(sqlite_db, tmp_path)
    await h.sweeper.register()
    yield h


async def due_incident(db: Database, class_key: str = "crime", **device: object) -> uuid.UUID:
    device_id = await make_device(db, **device)  # type: ignore[arg-type]
    incident = (await open_incident(db, device_id=device_id, class_key=class_key, confidence=0.9, countdown_s=0)).incident
    return incident.id


async def outbox(db: Database, incident_id: uuid.UUID) -> list[tuple[str, int, str, int]]:
    async with db.session() as session:
        rows = await session.execute(
            select(DispatchOutbox.agency_id, DispatchOutbox.position, DispatchOutbox.state, DispatchOutbox.attempts)
            .where(DispatchOutbox.incident_id == incident_id)
            .order_by(DispatchOutbox.agency_id, DispatchOutbox.position)
        )
        return [tuple(r) for r in rows]  # type: ignore[misc]


async def test_due_incident_is_claimed_reported_once_and_settled(harness: Harness) -> None:
    incident_id = await due_incident(harness.db, contacts=1)
    stats = await harness.sweeper.sweep_once()
    assert stats.claimed == 1
    assert await outbox(harness.db, incident_id) == [("112", 0, "pending", 0), ("112", 1, "standby", 0)]
    assert await harness.run_published() == ["sent", "sent"]  # the guardian's notice and the report
    assert await outbox(harness.db, incident_id) == [("112", 0, "sent", 1), ("112", 1, "skipped", 0)]
    view = await get_incident(harness.db, incident_id)
    assert view is not None and view.state is IncidentState.DISPATCHED and view.trigger == "deadline"

    [request] = harness.webhook_requests("112")
    row_id = verify([SECRET], request.headers, request.content)
    report = json.loads(request.content)
    assert report["type"] == "incident.reported"
    data = report["data"]
    assert data["incident_id"] == str(incident_id) and data["class"]["label_ko"] == "범죄 (침입, 폭행, 비명)"
    assert data["profile"]["name"] == "홍길동" and data["location"]["source"] == "registered"
    assert data["clip"]["status"] == "pending" and data["clip"]["url"].startswith("http://gw/v1/clips/")
    async with harness.db.session() as session:
        assert await session.scalar(select(DispatchOutbox.payload).where(DispatchOutbox.id == uuid.UUID(row_id))) == request.content.decode()

    # The guardian is then told it went out; a repeated message changes nothing.
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["sent"]
    await harness.dispatcher.deliver("agency", uuid.UUID(row_id))
    assert len(harness.webhook_requests()) == 1


async def test_nothing_is_claimed_before_the_deadline_or_after_a_cancel(harness: Harness) -> None:
    device = await make_device(harness.db)
    early = (await open_incident(harness.db, device_id=device, class_key="fire", confidence=0.9, countdown_s=60)).incident
    cancelled = await due_incident(harness.db)
    await act_on_incident(harness.db, cancelled, IncidentAction.CANCEL)
    assert (await harness.sweeper.sweep_once()).claimed == 0
    assert await outbox(harness.db, early.id) == [] and await outbox(harness.db, cancelled) == []
    await act_on_incident(harness.db, early.id, IncidentAction.CONFIRM)
    assert (await harness.sweeper.sweep_once()).claimed == 1


async def test_several_agencies_each_get_one_report(harness: Harness) -> None:
    incident_id = await due_incident(harness.db, class_key="fire")
    await harness.sweeper.sweep_once()
    assert sorted(await harness.run_published()) == ["sent", "sent"]
    assert len(harness.webhook_requests("119")) == 1 and len(harness.webhook_requests("112")) == 1
    assert (await get_incident(harness.db, incident_id)).state is IncidentState.DISPATCHED  # type: ignore[union-attr]


async def test_another_emergency_heard_during_the_countdown_reaches_its_agency_too(harness: Harness) -> None:
    """A cry for help counts down (119) and a break-in is heard meanwhile: the police get the
    report too. A fire heard while it is being sent is in the report, whose agencies (the harness
    routes fire to both) are planned already: no row is added."""
    db = harness.db
    device = await make_device(db, contacts=1)
    help_ = (await open_incident(db, device_id=device, class_key="help", confidence=0.9, countdown_s=60)).incident
    for key in ("crime", "help", "crime"):
        await open_incident(db, device_id=device, class_key=key, confidence=0.8)
    assert (await get_incident(db, help_.id)).also_detected == ("crime",)  # type: ignore[union-attr]
    await act_on_incident(db, help_.id, IncidentAction.CONFIRM)
    assert (await harness.sweeper.sweep_once()).claimed == 1
    assert await outbox(db, help_.id) == [("112", 0, "pending", 0), ("112", 1, "standby", 0),
                                          ("119", 0, "pending", 0), ("119", 1, "standby", 0)]  # fmt: skip
    late = await open_incident(db, device_id=device, class_key="fire", confidence=0.9)  # while it is being sent
    assert late.incident.id == help_.id and late.incident.also_detected == ("crime", "fire")
    assert (await harness.sweeper.sweep_once()).routed == 1
    assert len(await outbox(db, help_.id)) == 4
    await harness.run_published()
    for agency in ("112", "119"):
        [request] = harness.webhook_requests(agency)
        data = json.loads(request.content)["data"]
        assert data["class"]["key"] == "help" and [c["key"] for c in data["also_detected"]] == ["crime", "fire"]
    async with db.session() as session:
        claimed = await session.scalar(
            select(AuditEntry.detail).where(AuditEntry.incident_id == help_.id, AuditEntry.event == "dispatching")
        )
    assert claimed == {"agencies": ["119", "112"]}


async def test_an_emergency_first_heard_while_the_report_is_sent_reaches_its_agency(db: Database, tmp_path: Path) -> None:
    """A cry for help is being reported to 119 when a break-in is first heard: the police get
    the report too, with the break-in in it. 119 answering first does not settle the incident
    before the police are planned and reached (on PostgreSQL too, where the settle locks the row)."""
    harness = build(db, tmp_path)
    await harness.sweeper.register()
    device = await make_device(db)
    help_id = (await open_incident(db, device_id=device, class_key="help", confidence=0.9, countdown_s=0)).incident.id
    await harness.sweeper.sweep_once()
    [(_, to_119)] = harness.published
    harness.published.clear()
    late = await open_incident(db, device_id=device, class_key="crime", confidence=0.9)
    assert late.incident.id == help_id and late.incident.also_detected == ("crime",) and not late.created
    assert await harness.dispatcher.deliver("agency", uuid.UUID(to_119)) == "sent"
    assert (await get_incident(db, help_id)).state is IncidentState.DISPATCHING  # type: ignore[union-attr]
    stats = await harness.sweeper.sweep_once()
    assert (stats.routed, stats.settled) == (1, 0)
    assert await outbox(db, help_id) == [("112", 0, "pending", 0), ("112", 1, "standby", 0),
                                         ("119", 0, "sent", 1), ("119", 1, "skipped", 0)]  # fmt: skip
    assert await harness.run_published() == ["sent"]
    [police] = harness.webhook_requests("112")
    data = json.loads(police.content)["data"]
    assert data["class"]["key"] == "help" and [c["key"] for c in data["also_detected"]] == ["crime"]
    assert (await get_incident(db, help_id)).state is IncidentState.DISPATCHED  # type: ignore[union-attr]
    assert (await harness.sweeper.sweep_once()).routed == 0
    async with db.session() as session:
        audit = {row.event: row.detail for row in await session.execute(
            select(AuditEntry.event, AuditEntry.detail).where(AuditEntry.incident_id == help_id)
        )}  # fmt: skip
    assert audit["routed"] == {"classes": ["help", "crime"], "added_agencies": ["112"]}
    assert audit["dispatched"]["reached"] == ["112", "119"]


async def test_a_report_goes_out_while_the_broker_is_down(db: Database, tmp_path: Path) -> None:
    """The broker refuses every message: the worker delivers the due rows itself (the agency's
    report and the guardian's notices), each once, and a message published once the broker is
    back finds the row sent."""
    harness = build(db, tmp_path)

    def broker_down(table: str, row_id: str) -> None:
        raise ConnectionError("broker unreachable")

    sweeper = Sweeper(
        db, owner="worker-a", router=harness.sweeper.router, publish=broker_down, policy=harness.sweeper.policy,
        faults=FaultInjector(frozenset(), 0), deliver_locally=harness.dispatcher.deliver,
    )  # fmt: skip
    await sweeper.register()
    incident_id = await due_incident(db, contacts=1)
    stats = await sweeper.sweep_once()
    assert (stats.claimed, stats.published, stats.delivered_here) == (1, 0, 2)  # the report and the "detected" notice
    await sweeper.sweep_once()  # the rows are under way or stamped: none is started twice (counted below)
    await sweeper.local_deliveries_done()
    assert len(harness.webhook_requests("112")) == 1
    assert await outbox(db, incident_id) == [("112", 0, "sent", 1), ("112", 1, "skipped", 0)]
    for _ in range(3):  # the guardians' "reported" notice, queued by the settle, goes the same way
        await sweeper.sweep_once()
        await sweeper.local_deliveries_done()
    assert (await get_incident(db, incident_id)).state is IncidentState.DISPATCHED  # type: ignore[union-attr]
    async with db.session() as session:
        notices = (await session.execute(select(ContactNotification.event, ContactNotification.state))).all()
    assert sorted((event, state.value) for event, state in notices) == [("detected", "sent"), ("dispatched", "sent")]
    async with db.session() as session:
        row_id = await session.scalar(select(DispatchOutbox.id).where(DispatchOutbox.state == DeliveryState.SENT))
    assert row_id is not None and await harness.dispatcher.deliver("agency", row_id) == "not_claimable"  # a late message
    assert len(harness.webhook_requests("112")) == 1


async def test_retries_keep_id_and_body_then_fall_back_to_sms(harness: Harness) -> None:
    harness.answer = lambda r: httpx.Response(503) if "/webhooks/" in r.url.path else httpx.Response(200)
    incident_id = await due_incident(harness.db)
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["retry"]
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["failed"]  # 2 attempts: exhausted, SMS activated
    first, second = harness.webhook_requests()
    assert first.headers["webhook-id"] == second.headers["webhook-id"] and first.content == second.content
    assert await outbox(harness.db, incident_id) == [("112", 0, "failed", 2), ("112", 1, "pending", 0)]
    await harness.sweeper.sweep_once()
    assert await harness.run_published() == ["sent"]
    [sms] = [r for r in harness.requests if r.url.host == "sms"]
    assert json.loads(sms.content)["to"] == "+82112" and str(incident_id) in json.loads(sms.content)["text"]
    assert (await get_incident(harness.db, incident_id)).state is IncidentState.DISPATCHED  # type: ignore[union-attr]


async def test_every_channel_failing_fails_the_incident_with_an_ops_alert(harness: Harness) -> None:
    harness.answer = lambda r: httpx.Response(400) if r.url.host != "guardian" else httpx.Response(200)
    incident_id = await due_incident(harness.db, contacts=1, contact_webhook="http://guardian/hook")
    for _ in range(4):
        await harness.sweeper.sweep_once()
        await harness.run_published()
    assert await outbox(harness.db, incident_id) == [("112", 0, "failed", 1), ("112", 1, "failed", 1)]
    assert (await get_incident(harness.db, incident_id)).state is IncidentState.FAILED  # type: ignore[union-attr]
    async with harness.db.session() as session:
        events = (await session.scalars(select(AuditEntry.event).where(AuditEntry.incident_id == incident_id))).all()
        notices = (await session.scalars(
            select(ContactNotification.event).where(ContactNotification.incident_id == incident_id,
                                                    ContactNotification.state == "sent")
        )).all()
    assert "ops_alert" in events and "failed" in events
    assert sorted(notices) == ["detected", "failed"]


async def test_a_dead_workers_lease_is_taken_over_a_live_one_is_not(harness: Harness, tmp_path: Path) -> None:
    incident_id = await due_incident(harness.db)
    await harness.sweeper.sweep_once()
    table, row_id = harness.published.pop()
    # Another worker claims the row and then stops (never sends, never records).
    other = build(harness.db, tmp_path, owner="worker-b")
    await other.sweeper.register()
    claimed = await other.dispatcher._claim(DispatchOutbox, uuid.UUID(row_id))
    assert claimed is not None
    assert await harness.dispatcher.deliver(table, uuid.UUID(row_id)) == "not_claimable"  # b is alive
    async with harness.db.session() as session:
        await session.execute(update(AlertingWorker).where(AlertingWorker.id == "worker-b").values(heartbeat_at=db_now(-60)))
    await asyncio.sleep(0.25)  # redrive_after_s since it was published
    assert (await harness.sweeper.sweep_once()).published == 1  # re-driven
    assert await harness.run_published() == ["sent"]
    assert await outbox(harness.db, incident_id) == [("112", 0, "sent", 2), ("112", 1, "skipped", 0)]


async def test_a_lost_message_is_published_again(harness: Harness) -> None:
    await due_incident(harness.db)
    await harness.sweeper.sweep_once()
    harness.published.clear()  # the broker lost it
    assert (await harness.sweeper.sweep_once()).published == 0  # too soon to tell
    await asyncio.sleep(0.25)
    assert (await harness.sweeper.sweep_once()).published == 1
    assert await harness.run_published() == ["sent"]


async def test_a_broker_outage_leaves_rows_due(harness: Harness) -> None:
    def down(table: str, row_id: str) -> None:
        raise ConnectionError("redis down")

    await due_incident(harness.db)
    harness.sweeper.publish = down
    assert (await harness.sweeper.sweep_once()).published == 0
    harness.sweeper.publish = lambda t, i: harness.published.append((t, i))
    assert (await harness.sweeper.sweep_once()).published == 1


async def test_stuck_dispatching_incident_is_settled_by_the_sweeper(harness: Harness) -> None:
    incident_id = await due_incident(harness.db)
    await harness.sweeper.sweep_once()
    async with harness.db.session() as session:
        await session.execute(update(DispatchOutbox).where(DispatchOutbox.incident_id == incident_id).values(state="sent"))
    assert (await harness.sweeper.sweep_once()).settled == 1
    assert await settle_incident(harness.db, incident_id, None, "t") is None  # already settled: no second settle


async def test_report_carries_clip_history_and_respects_consent(harness: Harness) -> None:
    device = await make_device(harness.db, consent_location=False, consent_share_profile=False)
    earlier = (await open_incident(harness.db, device_id=device, class_key="help", confidence=0.8, countdown_s=0)).incident
    await harness.sweeper.sweep_once()
    await harness.run_published()
    incident = (await open_incident(harness.db, device_id=device, class_key="crime", confidence=0.95, countdown_s=0)).incident
    store = harness.dispatcher.reports.clips
    await archive_clip(harness.db, store, incident.id, np.zeros(16000 * 30, np.float32), 16000)
    await harness.sweeper.sweep_once()
    await harness.run_published()
    data = json.loads(harness.webhook_requests()[-1].content)["data"]
    assert data["incident_id"] == str(incident.id)
    assert data["profile"] is None and data["location"] is None
    assert data["clip"]["status"] == "ready" and data["clip"]["duration_s"] == 30.0 and len(data["clip"]["sha256"]) == 64
    assert [h["incident_id"] for h in data["history"]] == [str(earlier.id)]


async def test_report_carries_the_evidence_and_the_whole_timeline(harness: Harness) -> None:
    device = await make_device(harness.db)
    incident = (await open_incident(
        harness.db, device_id=device, class_key="crime", confidence=0.9, scores=[ScorePoint(0.0, 0.9)]
    )).incident  # fmt: skip
    growing = EvidenceFacts("crime", {"crime": 1, "help": 1}, heard_s=3.0, quiet_s=1.0)
    # A countdown this short puts the shortened deadline at once: the report is due now.
    await record_evidence(
        harness.db, incident.id, points=[ScorePoint(0.5, 0.4, "crime"), ScorePoint(0.5, 0.3, "help")],
        facts=growing, policy=EvidencePolicy(), countdown_s=0.001,
    )  # fmt: skip
    await harness.sweeper.sweep_once()
    await harness.run_published()
    data = json.loads(harness.webhook_requests()[-1].content)["data"]
    assert data["incident_id"] == str(incident.id)
    assert [(p["t"], p["class"]) for p in data["score_timeline"]] == [(0.0, "crime"), (0.5, "crime"), (0.5, "help")]
    evidence = data["evidence"]
    assert evidence["mark"] == "growing" and evidence["detections"] == 1
    assert evidence["classes_heard"] == ["crime", "help"] and evidence["renewals"] == {"crime": 1, "help": 1}
    assert evidence["quiet_share"] == pytest.approx(0.333, abs=0.001)
    assert "crime" in evidence["shortened"]["reason"] and evidence["shortened"]["to"] <= data["reported_at"]


async def test_report_says_where_in_the_home_it_was_heard(harness: Harness) -> None:
    alone = await due_incident(harness.db)
    device = await make_device(harness.db)
    judged = {"peers_listening": 1, "listening": ["b"], "only_this_device": False, "linked_incidents": [],
              "supporting": [{"device_id": "b", "room": "bedroom", "name": None, "how": "same_class", "score": 0.3}]}  # fmt: skip
    async with harness.db.session() as session:
        await session.execute(update(Device).where(Device.id == device).values(room="kitchen"))
    incident = (await open_incident(harness.db, device_id=device, class_key="crime", confidence=0.9, countdown_s=0)).incident
    async with harness.db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident.id).values(corroboration=judged))
    await harness.sweeper.sweep_once()
    await harness.run_published()
    reports = {json.loads(r.content)["data"]["incident_id"]: json.loads(r.content)["data"] for r in harness.webhook_requests()}
    assert reports[str(alone)]["corroboration"] is None  # no household: nothing judged
    corroboration = reports[str(incident.id)]["corroboration"]
    assert corroboration == {**judged, "room": "kitchen", "summary": "heard in the kitchen and the bedroom"}
