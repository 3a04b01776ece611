"""Anomalies are findable with ``hearo ask`` / ``GET /v1/ask``: "anything unusual last night?"."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from sqlalchemy import update

from shared.anomaly.incidents import open_anomaly_incident
from shared.db import Database
from shared.db.models import Incident
from shared.history_query.ask import ask_history
from shared.incident_state import IncidentState
from tests.alerting_support import make_device


async def test_an_anomaly_last_night_is_found_and_named(sqlite_db: Database) -> None:
    device_id = await make_device(sqlite_db, contacts=1)
    opened = await open_anomaly_incident(sqlite_db, device_id=device_id, anomaly={"reason": "sound"}, countdown_s=60)
    assert opened is not None
    seoul = ZoneInfo("Asia/Seoul")
    now = datetime.now(seoul).replace(hour=9, minute=0)
    async with sqlite_db.session() as session:
        await session.execute(update(Incident).where(Incident.id == opened.incident.id).values(
            detected_at=(now - timedelta(hours=7)).astimezone(UTC), state=IncidentState.DISPATCHED))  # fmt: skip
    english = await ask_history(sqlite_db, device_id, "anything unusual last night?", now=now, tz=seoul)
    assert [e.id for e in english.events] == [opened.incident.id]
    assert "unusual sound" in english.text and "reported to the contacts" in english.text
    korean = await ask_history(sqlite_db, device_id, "어젯밤에 이상한 소리 있었어?", now=now, tz=seoul)
    assert [e.id for e in korean.events] == [opened.incident.id] and "이상한 소리" in korean.text
    fire = await ask_history(sqlite_db, device_id, "was there a fire last night?", now=now, tz=seoul)
    assert fire.events == ()
