"""The incident REST routes and the signed clip route, on SQLite through ASGI."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import numpy as np
import pytest
from fastapi import FastAPI
from sqlalchemy import delete, update

from services.gateway import incidents_api
from services.gateway.auth import issue_token
from shared.clips import LocalClipStore
from shared.db import Database, Device
from shared.db.models import Incident
from shared.incident_events import LocalIncidentEvents
from shared.incidents import archive_clip, open_incident
from tests.alerting_support import make_device, sweeper


class Client:
    def __init__(self, http: httpx.AsyncClient, db: Database, store: LocalClipStore, app: FastAPI) -> None:
        self.http, self.db, self.store, self.app = http, db, store, app

    async def device(self) -> tuple[uuid.UUID, dict[str, str]]:
        device_id = await make_device(self.db)
        token, token_hash = issue_token()
        async with self.db.session() as session:
            await session.execute(update(Device).where(Device.id == device_id).values(token_hash=token_hash))
        return device_id, {"Authorization": f"Bearer {token}"}


@pytest.fixture
async def client(sqlite_db: Database, tmp_path: Path) -> AsyncIterator[Client]:
    app = FastAPI()
    app.include_router(incidents_api.router)
    store = LocalClipStore(tmp_path / "clips", "clip-secret", "http://gw")
    app.state.db, app.state.incident_events, app.state.clip_store = sqlite_db, LocalIncidentEvents(), store
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://gw") as http:
        yield Client(http, sqlite_db, store, app)


async def test_cancel_then_repeat_and_confirm_conflict(client: Client) -> None:
    device, auth = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="fire", confidence=0.9)).incident
    url = f"/v1/incidents/{incident.id}"
    response = await client.http.post(f"{url}/cancel", json={"reason": "burnt toast"}, headers=auth)
    assert response.status_code == 200
    assert response.json()["outcome"] == "cancelled" and response.json()["incident"]["cancel_reason"] == "burnt toast"
    again = await client.http.post(f"{url}/cancel", headers=auth)
    assert again.status_code == 200 and again.json()["outcome"] == "already_cancelled"
    confirm = await client.http.post(f"{url}/confirm", headers=auth)
    assert confirm.status_code == 409 and confirm.json()["detail"]["code"] == "cancelled"


async def test_cancel_after_the_report_went_is_a_truthful_409(client: Client) -> None:
    device, auth = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="crime", confidence=0.9, countdown_s=0)).incident
    await sweeper(client.db).claim_due_incidents()
    response = await client.http.post(f"/v1/incidents/{incident.id}/cancel", headers=auth)
    assert response.status_code == 409
    assert response.json()["detail"]["code"] == "already_reported"
    assert response.json()["detail"]["incident"]["state"] == "dispatching"
    confirm = await client.http.post(f"/v1/incidents/{incident.id}/confirm", headers=auth)
    assert confirm.status_code == 200 and confirm.json()["outcome"] == "already_reported"


async def test_confirm_and_foreign_or_unknown_incidents(client: Client) -> None:
    device, auth = await client.device()
    _, stranger = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="help", confidence=0.9)).incident
    assert (await client.http.post(f"/v1/incidents/{incident.id}/confirm", headers=stranger)).status_code == 404
    assert (await client.http.get(f"/v1/incidents/{incident.id}", headers=stranger)).status_code == 404
    assert (await client.http.post(f"/v1/incidents/{uuid.uuid4()}/cancel", headers=auth)).status_code == 404
    assert (await client.http.post(f"/v1/incidents/{incident.id}/cancel")).status_code == 401
    confirmed = await client.http.post(f"/v1/incidents/{incident.id}/confirm", headers=auth)
    assert confirmed.status_code == 200 and confirmed.json()["incident"]["seconds_left"] == 0.0


async def test_history_and_detail_with_a_playable_clip(client: Client) -> None:
    device, auth = await client.device()
    fire = (await open_incident(client.db, device_id=device, class_key="fire", confidence=0.9)).incident
    await client.http.post(f"/v1/incidents/{fire.id}/cancel", headers=auth)
    crime = (await open_incident(client.db, device_id=device, class_key="crime", confidence=0.9)).incident
    listed = (await client.http.get("/v1/incidents", headers=auth)).json()["incidents"]
    assert [i["incident_id"] for i in listed] == [str(crime.id), str(fire.id)]
    only_fire = await client.http.get("/v1/incidents", params={"class": "fire"}, headers=auth)
    assert [i["incident_id"] for i in only_fire.json()["incidents"]] == [str(fire.id)]
    since = await client.http.get("/v1/incidents", params={"since": crime.detected_at.isoformat()}, headers=auth)
    assert [i["incident_id"] for i in since.json()["incidents"]] == [str(crime.id)]
    assert (await client.http.get("/v1/incidents", params={"class": "smoke"}, headers=auth)).status_code == 422
    assert (await client.http.get("/v1/incidents", params={"since": "2026-01-01T00:00:00"}, headers=auth)).status_code == 422

    await archive_clip(client.db, client.store, crime.id, np.zeros(16000, np.float32), 16000)
    body = (await client.http.get(f"/v1/incidents/{crime.id}", headers=auth)).json()
    assert body["state"] == "pending" and body["deliveries"] == []
    clip = await client.http.get(body["clip"]["url"])
    assert clip.status_code == 200 and clip.headers["content-type"] == "audio/flac" and clip.content[:4] == b"fLaC"
    tampered = body["clip"]["url"].replace("sig=", "sig=x")
    assert (await client.http.get(tampered)).status_code == 403


async def test_clip_link_issued_before_the_clip_exists_says_pending(client: Client) -> None:
    key = f"{uuid.uuid4()}.flac"
    response = await client.http.get(client.store.link(key, 60))
    assert response.status_code == 404 and response.json()["detail"]["code"] == "clip_pending"
    bad_key = client.store.link(key, 60).replace(key, "..%2Fsecret.flac")
    assert (await client.http.get(bad_key)).status_code in (403, 404)


async def test_every_clip_access_is_audited_and_shown_to_the_owner(client: Client) -> None:
    device, auth = await client.device()
    _, stranger = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="crime", confidence=0.9)).incident
    await archive_clip(client.db, client.store, incident.id, np.zeros(16000, np.float32), 16000)
    first = (await client.http.get(f"/v1/incidents/{incident.id}", headers=auth)).json()
    assert [a["event"] for a in first["clip_access"]] == ["clip_link_issued"]
    assert first["clip_access"][0]["actor"] == "owner" and first["clip_access"][0]["link_ttl_s"] == 3600

    # Whoever holds a link (an agency, a guardian, anyone it was forwarded to) leaves a trace.
    fetched = await client.http.get(first["clip"]["url"], headers={"Range": "bytes=0-3"})
    assert fetched.status_code == 206 and fetched.content == b"fLaC"
    refused = await client.http.get(first["clip"]["url"].replace("sig=", "sig=x"))
    assert refused.status_code == 403

    second = (await client.http.get(f"/v1/incidents/{incident.id}", headers=auth)).json()
    events = [a["event"] for a in second["clip_access"]]
    assert events == ["clip_link_issued", "clip_downloaded", "clip_link_issued"]  # a forged link is not an access
    download = second["clip_access"][1]
    assert download["actor"] == "link" and download["client"] == "127.0.0.1" and download["range"] == "bytes=0-3"
    assert download["link_expires_at"] == int(parse_qs(urlsplit(first["clip"]["url"]).query)["exp"][0])
    assert (await client.http.get(f"/v1/incidents/{incident.id}", headers=stranger)).status_code == 404


async def test_links_signed_before_a_key_rotation_still_play(client: Client, tmp_path: Path) -> None:
    device, auth = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="fire", confidence=0.9)).incident
    info = await archive_clip(client.db, client.store, incident.id, np.zeros(16000, np.float32), 16000)
    before_rotation = client.store.link(info.key, 600)  # e.g. in a report already sent
    rotated = LocalClipStore(client.store.root, "rotated-secret", "http://gw", previous_secrets=[client.store.secret])
    client.app.state.clip_store = rotated
    assert (await client.http.get(before_rotation)).status_code == 200
    fresh = (await client.http.get(f"/v1/incidents/{incident.id}", headers=auth)).json()["clip"]["url"]
    assert fresh != before_rotation and (await client.http.get(fresh)).status_code == 200
    client.app.state.clip_store = LocalClipStore(client.store.root, "rotated-secret", "http://gw")
    assert (await client.http.get(before_rotation)).status_code == 403  # the window closed
    assert (await client.http.get(fresh)).status_code == 200


async def test_a_clip_whose_incident_is_gone_is_not_served(client: Client) -> None:
    device, _ = await client.device()
    incident = (await open_incident(client.db, device_id=device, class_key="fire", confidence=0.9)).incident
    info = await archive_clip(client.db, client.store, incident.id, np.zeros(16000, np.float32), 16000)
    link = client.store.link(info.key, 600)
    async with client.db.session() as session:
        await session.execute(delete(Incident).where(Incident.id == incident.id))
    response = await client.http.get(link)
    assert response.status_code == 404 and response.json()["detail"]["code"] == "unknown_clip"
