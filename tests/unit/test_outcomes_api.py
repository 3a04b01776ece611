"""The outcome callback (``POST /v1/incidents/{id}/outcome``): its signature rules, the ledger's
idempotency and replacement, on SQLite and PostgreSQL (the ``db`` fixture)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select, update
from sqlalchemy.orm import selectinload

from services.gateway import outcomes_api
from services.gateway.privacy import export_device_data
from shared.clips import ClipStorageSettings, LocalClipStore
from shared.db import Database, Device
from shared.db.models import AuditEntry, Incident, IncidentOutcomeRecord
from shared.incident_state import IncidentOutcome, IncidentState
from shared.incidents import open_incident
from shared.outcome_callback import OutcomeCallbacks, callback_secret
from shared.outcome_ledger import OUTCOME_EVENT
from shared.standard_webhooks import webhook_headers
from tests.alerting_support import make_device
from tests.devices_support import http_client

ROOT = "outcome-test-clip-signing-key-0123456789"
CLIPS = ClipStorageSettings(secret_key=ROOT, public_base_url="http://hearo.test")


@pytest.fixture
async def client(db: Database) -> AsyncIterator[httpx.AsyncClient]:
    app = FastAPI()
    app.state.db = db
    app.include_router(outcomes_api.router_for(CLIPS))
    async with http_client(app) as client:
        yield client


async def reported(db: Database, state: IncidentState = IncidentState.DISPATCHED) -> uuid.UUID:
    device = await make_device(db)
    incident = (await open_incident(db, device_id=device, class_key="fire", confidence=0.9)).incident
    async with db.session() as session:
        await session.execute(update(Incident).where(Incident.id == incident.id).values(state=state))
    return incident.id


def signed(
    incident_id: uuid.UUID, outcome: str, *, agency: str = "119", note: str | None = None,
    msg_id: str | None = None, timestamp: int | None = None, secret: str | None = None,
) -> tuple[bytes, dict[str, str]]:
    body = json.dumps({"agency_id": agency, "outcome": outcome, "note": note}).encode()
    key = secret or callback_secret(ROOT, incident_id, agency)
    return body, webhook_headers([key], msg_id or f"msg_{uuid.uuid4().hex}", body, timestamp)


async def post(client: httpx.AsyncClient, incident_id: uuid.UUID, body: bytes, headers: dict[str, str]) -> httpx.Response:
    return await client.post(f"/v1/incidents/{incident_id}/outcome", content=body, headers=headers)


def code(response: httpx.Response) -> Any:
    return response.json()["detail"]["code"]


def test_the_report_carries_the_callback_the_route_checks() -> None:
    incident_id = uuid.uuid4()
    callback = OutcomeCallbacks.from_settings(CLIPS).for_report(incident_id, "119")
    assert callback is not None
    assert callback["url"] == f"http://hearo.test/v1/incidents/{incident_id}/outcome"
    assert callback["secret"] == callback_secret(ROOT, incident_id, "119")
    assert callback["outcomes"] == ["confirmed_emergency", "no_emergency_found", "unable_to_reach"]
    # Another incident or another agency gets another secret.
    assert callback["secret"] != callback_secret(ROOT, uuid.uuid4(), "119")
    assert callback["secret"] != callback_secret(ROOT, incident_id, "112")


async def test_unsigned_badly_signed_and_stale_answers_are_401(client: httpx.AsyncClient, db: Database) -> None:
    incident_id = await reported(db)
    body, headers = signed(incident_id, "confirmed_emergency")
    unsigned = {"content-type": "application/json"}
    assert code(await post(client, incident_id, body, unsigned)) == "missing_signature"
    other_agency = callback_secret(ROOT, incident_id, "112")  # 112's secret, claiming to be 119
    assert code(await post(client, incident_id, *signed(incident_id, "confirmed_emergency", secret=other_agency))) == "invalid_signature"
    tampered = body.replace(b"confirmed_emergency", b"no_emergency_found")
    assert code(await post(client, incident_id, tampered, headers)) == "invalid_signature"
    stale = signed(incident_id, "confirmed_emergency", timestamp=int(time.time()) - 600)
    response = await post(client, incident_id, *stale)
    assert response.status_code == 401 and code(response) == "stale_signature"
    async with db.session() as session:
        assert (await session.scalars(select(IncidentOutcomeRecord))).all() == []


async def test_unknown_incident_is_404_and_a_cancelled_one_409(client: httpx.AsyncClient, db: Database) -> None:
    unknown = uuid.uuid4()
    response = await post(client, unknown, *signed(unknown, "confirmed_emergency"))
    assert response.status_code == 404 and code(response) == "unknown_incident"
    cancelled = await reported(db, IncidentState.CANCELLED)
    response = await post(client, cancelled, *signed(cancelled, "no_emergency_found"))
    assert response.status_code == 409 and code(response) == "not_reported"
    pending = await reported(db, IncidentState.PENDING)
    assert code(await post(client, pending, *signed(pending, "no_emergency_found"))) == "not_reported"


async def test_same_answer_twice_is_idempotent_and_a_replay_is_409(client: httpx.AsyncClient, db: Database) -> None:
    incident_id = await reported(db)
    first = signed(incident_id, "confirmed_emergency", note="smoke from the kitchen")
    response = await post(client, incident_id, *first)
    assert response.status_code == 200, response.text
    assert response.json()["result"] == "recorded"
    assert response.json()["outcome"]["outcome"] == "confirmed_emergency"
    again = await post(client, incident_id, *signed(incident_id, "confirmed_emergency", note="smoke from the kitchen"))
    assert again.status_code == 200 and again.json()["result"] == "unchanged"
    replay = await post(client, incident_id, *first)
    assert replay.status_code == 409 and code(replay) == "replayed"
    assert replay.json()["detail"]["outcome"]["outcome"] == "confirmed_emergency"
    async with db.session() as session:
        rows = (await session.scalars(select(IncidentOutcomeRecord))).all()
    assert [(r.agency_id, r.outcome, r.note) for r in rows] == [("119", IncidentOutcome.CONFIRMED_EMERGENCY, "smoke from the kitchen")]


async def test_a_later_different_answer_replaces_and_both_stay_audited(client: httpx.AsyncClient, db: Database) -> None:
    incident_id = await reported(db, IncidentState.FAILED)  # 119 got it, another agency did not
    now = int(time.time())
    older = signed(incident_id, "unable_to_reach", timestamp=now - 5)
    assert (await post(client, incident_id, *signed(incident_id, "unable_to_reach", timestamp=now - 10))).json()["result"] == "recorded"
    replaced = await post(client, incident_id, *signed(incident_id, "no_emergency_found", timestamp=now))
    assert replaced.status_code == 200 and replaced.json()["result"] == "replaced"
    # A message signed before the recorded answer (delayed, or replayed within the window) loses.
    superseded = await post(client, incident_id, *older)
    assert superseded.status_code == 409 and code(superseded) == "superseded"
    assert superseded.json()["detail"]["outcome"]["outcome"] == "no_emergency_found"
    # Another agency's answer is its own row.
    other = await post(client, incident_id, *signed(incident_id, "confirmed_emergency", agency="112"))
    assert other.json()["result"] == "recorded"
    async with db.session() as session:
        rows = (await session.scalars(select(IncidentOutcomeRecord).order_by(IncidentOutcomeRecord.agency_id))).all()
        audit = (
            await session.scalars(
                select(AuditEntry).where(AuditEntry.event == OUTCOME_EVENT).order_by(AuditEntry.id)
            )
        ).all()
    assert [(r.agency_id, r.outcome) for r in rows] == [
        ("112", IncidentOutcome.CONFIRMED_EMERGENCY), ("119", IncidentOutcome.NO_EMERGENCY_FOUND),
    ]
    assert [(a.detail["agency_id"], a.detail["outcome"], a.detail["previous"], a.detail["answer"]) for a in audit] == [
        ("119", "unable_to_reach", None, "recorded"),
        ("119", "no_emergency_found", "unable_to_reach", "replaced"),
        ("112", "confirmed_emergency", None, "recorded"),
    ]
    assert all("note" not in a.detail for a in audit)


async def test_the_body_is_bounded(client: httpx.AsyncClient, db: Database) -> None:
    incident_id = await reported(db)
    response = await post(client, incident_id, *signed(incident_id, "confirmed_emergency", note="x" * 501))
    assert response.status_code == 422
    response = await post(client, incident_id, *signed(incident_id, "maybe"))
    assert response.status_code == 422


async def test_the_owners_export_holds_what_each_agency_found(client: httpx.AsyncClient, db: Database, tmp_path: Any) -> None:
    incident_id = await reported(db)
    body, headers = signed(incident_id, "confirmed_emergency", note="서울대병원 이송")
    assert (await post(client, incident_id, body, headers)).status_code == 200
    async with db.session() as session:
        device = await session.scalar(
            select(Device).join(Incident, Incident.device_id == Device.id).where(Incident.id == incident_id)
            .options(selectinload(Device.contacts))
        )  # fmt: skip
    assert device is not None
    exported = await export_device_data(db, LocalClipStore(tmp_path, "s", "http://gw"), device, 60)
    [incident] = exported["incidents"]
    [outcome] = incident["outcomes"]
    assert (outcome["agency"], outcome["outcome"], outcome["note"]) == ("119", "confirmed_emergency", "서울대병원 이송")
    assert outcome["signed_at"] and outcome["received_at"]
