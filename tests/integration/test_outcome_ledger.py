"""The outcome ledger end to end (issue 18): the real gateway app (``create_app`` under uvicorn,
the fake classifier in place of inference), a real alerting worker process and the real drill
agency. Incidents are reported to the agency; the agency answers through its own code path
(``send_outcome``, and the page's button route for one); ``GET /v1/stats`` on the gateway
publishes the precision those answers make. On SQLite and on PostgreSQL."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx
import pytest

from hearo.agency_outcome import send_outcome
from services.gateway import app as gateway_app
from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.db import Database, upgrade_database
from shared.incident_state import IncidentOutcome
from shared.incidents import open_incident
from tests.alerting_support import (  # noqa: F401 (fixtures)
    AGENCY_PASSWORD,
    FAST,
    AgencyServer,
    WorkerSupervisor,
    agency,
    free_port,
    make_device,
    settled,
    worker_env,
)
from tests.gateway_apps import FakeInferenceClient
from tests.gateway_support import ServerThread

pytestmark = pytest.mark.slow
REPORTS = 6


@pytest.fixture(params=["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    url: str = request.getfixturevalue(request.param)
    return url


def fire(stats: dict[str, object]) -> dict[str, object]:
    classes = stats["classes"]
    assert isinstance(classes, list)
    found: dict[str, object] = next(c for c in classes if c["class"] == "fire")
    return found


async def test_an_answer_posted_back_changes_the_published_precision(
    agency: AgencyServer, database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    data_dir = tmp_path / "var"
    port = free_port()
    # The gateway and the worker read the clip key from the same data folder: the callback
    # secret the worker hands out is the one the gateway checks.
    clips = ClipStorageSettings(dir=data_dir / "clips", data_dir=data_dir, public_base_url=f"http://127.0.0.1:{port}")
    await asyncio.to_thread(upgrade_database, database_url)
    db = Database(database_url)
    monkeypatch.setattr(gateway_app, "InferenceClient", FakeInferenceClient)
    gateway = ServerThread(gateway_app.create_app(GatewaySettings(database_url=database_url, clips=clips)), port)
    env = {**worker_env(database_url, data_dir, agency, **FAST), "HEARO_CLIPS_PUBLIC_BASE_URL": clips.public_base_url}
    try:
        with WorkerSupervisor(env, tmp_path / "logs") as workers:
            for _ in range(REPORTS):
                device = await make_device(db)
                await open_incident(db, device_id=device, class_key="fire", confidence=0.9, countdown_s=1)
            assert await settled(db, timeout_s=60), workers.logs()
        reports = sorted(agency.reports(), key=lambda d: d["payload"]["data"]["incident_id"])
        assert len(reports) == REPORTS
        callback = reports[0]["payload"]["data"]["outcome_callback"]
        assert callback["url"].startswith(f"http://127.0.0.1:{port}/v1/incidents/")

        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as gateway_http:
            before = fire((await gateway_http.get("/v1/stats")).json())
            assert before["incidents"] == REPORTS and before["reported"] == REPORTS
            assert before["outcomes"] is None  # nobody has answered yet

            answers = [IncidentOutcome.CONFIRMED_EMERGENCY] * 4 + [IncidentOutcome.NO_EMERGENCY_FOUND]
            for report, outcome in zip(reports, answers):
                reply = await send_outcome(report["payload"], outcome, client=gateway_http)
                assert reply.accepted and reply.result == "recorded", reply.body
            middle = fire((await gateway_http.get("/v1/stats")).json())["outcomes"]
            assert isinstance(middle, dict)
            assert (middle["answered"], middle["precision"]) == (5, 0.8)

            # The dispatcher's button on the drill agency's page, for the last report.
            async with httpx.AsyncClient(base_url=agency.url, auth=("agency", AGENCY_PASSWORD)) as page:
                pressed = await page.post(
                    f"/reports/{reports[-1]['key']}/outcome", data={"outcome": "no_emergency_found"},
                    headers={"origin": agency.url},
                )
                assert pressed.status_code == 303
                assert "sent no_emergency_found" in (await page.get("/")).text
            after = fire((await gateway_http.get("/v1/stats")).json())["outcomes"]
            assert isinstance(after, dict)
            assert (after["answered"], after["no_emergency_found"], after["precision"]) == (6, 2, 0.6667)

            # The first agency changes its mind: confirmed becomes no emergency found.
            reply = await send_outcome(reports[0]["payload"], IncidentOutcome.NO_EMERGENCY_FOUND, client=gateway_http)
            assert reply.result == "replaced"
            final = fire((await gateway_http.get("/v1/stats")).json())["outcomes"]
            assert isinstance(final, dict)
            assert final["precision"] == 0.5
    finally:
        gateway.stop()
        await db.dispose()
