"""``GET /v1/ask`` and ``hearo ask`` against the real gateway app (uvicorn, SQLite): a question
over the caller's device's incidents only, answered in the question's language."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import update
from typer.testing import CliRunner

from hearo.ask_client import ask_command
from hearo.cli import app as cli
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database
from shared.db.models import Incident
from shared.incident_state import IncidentState
from shared.incidents import open_incident
from tests.gateway_apps import Gateway, run_gateways

pytestmark = pytest.mark.slow

SEOUL = ZoneInfo("Asia/Seoul")


@pytest.fixture
def gateway(sqlite_url: str, sqlite_db: Database, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Gateway]:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    settings = GatewaySettings(
        database_url=sqlite_url, clips=ClipStorageSettings(dir=tmp_path / "clips"),
        rest_per_ip=None, rest_per_device=None, registration_per_ip=None,
    )  # fmt: skip
    with run_gateways(monkeypatch, settings) as (one,):
        yield one


def last_night(hour: int, minute: int) -> datetime:
    """``hour:minute`` of last night in Seoul (18:00 yesterday to 06:00 today)."""
    today = datetime.now(SEOUL).date()
    day = today - timedelta(days=1) if hour >= 18 else today
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=SEOUL)


async def incident(db: Database, device_id: str, class_key: str, state: IncidentState, detected_at: datetime) -> str:
    """An incident of the device, as if detected at ``detected_at`` and now standing in ``state``."""
    opened = (await open_incident(db, device_id=uuid.UUID(device_id), class_key=class_key, confidence=0.9)).incident
    async with db.session() as session:
        await session.execute(
            update(Incident)
            .where(Incident.id == opened.id)
            .values(state=state, detected_at=detected_at, deadline_at=detected_at + timedelta(seconds=60),
                    state_changed_at=detected_at + timedelta(seconds=30))
        )  # fmt: skip
    return str(opened.id)


def ask(gateway: Gateway, token: str, question: str, **params: str) -> httpx.Response:
    return httpx.get(
        f"{gateway.http}/v1/ask", params={"q": question, **params}, headers={"Authorization": f"Bearer {token}"}
    )


async def test_a_question_is_answered_over_the_callers_device_only(gateway: Gateway, sqlite_db: Database) -> None:
    grandma, grandma_token = gateway.register("Kim Young-ja")
    neighbour, neighbour_token = gateway.register("Lee Neighbour")
    fire = await incident(sqlite_db, grandma, "fire", IncidentState.CANCELLED, last_night(23, 14))
    fall = await incident(sqlite_db, grandma, "accident", IncidentState.DISPATCHED, last_night(2, 40))
    break_in = await incident(sqlite_db, neighbour, "crime", IncidentState.DISPATCHED, last_night(23, 30))
    await incident(sqlite_db, grandma, "gas", IncidentState.CANCELLED, last_night(12, 0) - timedelta(days=3))

    answer = ask(gateway, grandma_token, "어젯밤에 무슨 일 있었어?")
    assert answer.status_code == 200, answer.text
    body: dict[str, Any] = answer.json()
    assert (body["language"], body["understood"], body["classes"], body["states"]) == ("ko", True, [], [])
    assert [e["incident_id"] for e in body["events"]] == [fire, fall]
    assert [e["summary"] for e in body["events"]] == ["화재 경보 (취소됨)", "낙상·사고 (119에 신고됨)"]
    assert body["answer"].startswith("어젯밤 (") and "2건이 있었어요 — 23:14 화재 경보 (취소됨), 02:40 낙상·사고" in body["answer"]
    start, end = (datetime.fromisoformat(body["range"][k]) for k in ("start", "end"))
    assert (start.hour, end.hour, end - start, start.utcoffset()) == (18, 6, timedelta(hours=12), timedelta(hours=9))

    theirs = ask(gateway, neighbour_token, "what happened last night?").json()
    assert [e["incident_id"] for e in theirs["events"]] == [break_in]
    assert theirs["answer"].endswith("1 event — 23:30 break-in or scream (reported to 112).")

    reported = ask(gateway, grandma_token, "anything reported to 119 last night?").json()
    assert [e["incident_id"] for e in reported["events"]] == [fall]
    assert reported["states"] == ["dispatching", "dispatched"] and "crime" not in reported["classes"]

    nothing = ask(gateway, grandma_token, "어젯밤에 가스 경보 있었어?").json()
    assert nothing["events"] == [] and nothing["classes"] == ["gas"]
    assert nothing["answer"].endswith("찾는 일(가스 경보)은 없었어요.")


async def test_a_question_it_cannot_place_in_time_is_answered_honestly(gateway: Gateway) -> None:
    _, token = gateway.register()
    body = ask(gateway, token, "무슨 일 있었어?").json()
    assert (body["understood"], body["range"], body["events"]) == (False, None, [])
    assert body["answer"].startswith("언제를 말씀하시는지 알 수 없었어요.") and "어젯밤에 무슨 일 있었어?" in body["examples"]
    english = ask(gateway, token, "anything?").json()
    assert english["language"] == "en" and english["answer"].startswith("I could not tell which time you mean.")


async def test_the_time_zone_token_and_question_are_checked(gateway: Gateway) -> None:
    _, token = gateway.register()
    utc = ask(gateway, token, "yesterday", tz="UTC").json()
    assert datetime.fromisoformat(utc["range"]["start"]).utcoffset() == timedelta(0)
    unknown = ask(gateway, token, "yesterday", tz="Mars/Olympus")
    assert unknown.status_code == 422 and unknown.json()["detail"][0]["loc"] == ["query", "tz"]
    assert ask(gateway, token, "").status_code == 422
    refused = ask(gateway, "not-a-token", "yesterday")
    assert refused.status_code == 401 and refused.json()["detail"]["code"] == "invalid_token"


async def test_hearo_ask_prints_the_answer(gateway: Gateway, sqlite_db: Database, capsys: pytest.CaptureFixture[str]) -> None:
    device, token = gateway.register()
    fall = await incident(sqlite_db, device, "accident", IncidentState.DISPATCHED, last_night(2, 40))

    result = CliRunner().invoke(cli, ["ask", "어젯밤에 무슨 일 있었어?", "--api", gateway.http], env={"HEARO_TOKEN": token})
    assert result.exit_code == 0, result.output
    assert "1건이 있었어요 — 02:40 낙상·사고 (119에 신고됨)" in result.output and fall in result.output

    assert ask_command(gateway.http, token, "what happened?") == 1  # not understood: exit 1, with examples
    assert "I could not tell which time you mean" in capsys.readouterr().out
    assert ask_command(gateway.http, token, "last night", json_output=True) == 0
    assert '"understood": true' in capsys.readouterr().out
    assert ask_command(gateway.http, "not-a-token", "last night") == 2
    assert ask_command(gateway.http, token, "last night", tz="Mars/Olympus") == 3
    assert ask_command("http://127.0.0.1:9", token, "last night") == 4
    missing = CliRunner().invoke(cli, ["ask", "last night", "--api", gateway.http], env={"HEARO_TOKEN": ""})
    assert missing.exit_code == 2 and "device token" in missing.output
