"""docker-compose.yml's services, run natively: the migrate job, inference, two gateways, two
alerting workers and the drill agency, each with the command and environment compose gives
its container (tests/deploy_support.py), on the real PostgreSQL, Redis and an S3 server (moto).

One run shows what issue 15 asks of the multi-node deployment:

* a cancel made through the other gateway holds, and the streaming gateway hears of it;
* a detection is reported exactly once, with its clip in S3, although the gateway that
  streamed it and one worker are SIGKILLed mid-countdown;
* every service exports the metric names docs/operations.md lists.

Only timings are changed from compose (a 10 s countdown instead of 60 s, the chaos suite's
fast sweeps), so that the run is short; everything else is what the containers get.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import asyncpg
import boto3
import httpx
import pytest
import redis
from sqlalchemy.engine import make_url
from websockets.asyncio.client import ClientConnection, connect

from tests.alerting_support import FAST, REDIS_URL_ENV
from tests.deploy_support import NativeService, dotenv, load_compose, replicas, service_spec
from tests.gateway_support import RATE, smoke_alarm, start
from tests.s3_support import BUCKET

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]

REPO = Path(__file__).resolve().parents[2]
# Redis databases 10 (incident updates) and 11 (broker): compose's 0 and 1, shifted.
REDIS_DB_OFFSET = 10
COUNTDOWN_S = 10.0
TIMINGS = {
    # No early report for a growing alarm (docs/evidence.md): at half of a 10 s countdown it would
    # go before the clip (cut 20 s after the detection) is stored, which is not what this checks.
    "gateway": {"HEARO_GATEWAY_INCIDENT_COUNTDOWN_S": str(COUNTDOWN_S), "HEARO_GATEWAY_INCIDENT_POLL_INTERVAL_S": "0.5",
                "HEARO_GATEWAY_EVIDENCE": '{"shortening": {}}'},
    "alerting": {
        **{f"HEARO_ALERTING_{k.upper()}": v for k, v in FAST.items()},
        "HEARO_ALERTING_CLIP_WAIT_S": "5", "HEARO_ALERTING_METRICS_INTERVAL_S": "0.5",
    },
}  # fmt: skip


def documented_metrics() -> dict[str, set[str]]:
    """Service -> the metric names docs/operations.md lists for it (its "Metrics" table)."""
    text = (REPO / "docs" / "operations.md").read_text()
    section = text.split("\n## Metrics", 1)[1].split("\n## ", 1)[0]
    names: dict[str, set[str]] = {}
    for service, name in re.findall(r"^\|\s*(gateway|inference|alerting)\s*\|\s*`(hearo_[a-z_]+)`", section, re.M):
        names.setdefault(service, set()).add(name)
    return names


@pytest.fixture
def redis_hostport() -> Iterator[str]:
    base = make_url(os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379").replace("redis://", "postgresql://"))
    hostport = f"{base.host or '127.0.0.1'}:{base.port or 6379}"
    clients = [redis.Redis.from_url(f"redis://{hostport}/{REDIS_DB_OFFSET + n}") for n in (0, 1)]
    for client in clients:
        client.flushdb()
    yield hostport
    for client in clients:
        client.flushdb()
        client.close()


class Stack:
    """The compose services of one test, started in compose's order."""

    def __init__(self, postgres_url: str, s3_endpoint: str, redis_hostport: str, root: Path) -> None:
        pg = make_url(postgres_url)
        self.variables = dotenv(POSTGRES_USER=pg.username or "postgres", POSTGRES_DB=pg.database or "")
        compose = load_compose()
        specs = {name: service_spec(compose, name, self.variables) for name in
                 ("migrate", "inference", "agency", "gateway", "alerting")}  # fmt: skip
        assert specs["gateway"].replicas == 2 and specs["alerting"].replicas == 2
        (self.inference,) = replicas(specs["inference"], {}, root, REDIS_DB_OFFSET)
        (self.agency,) = replicas(specs["agency"], {}, root, REDIS_DB_OFFSET)
        hosts = {
            "postgres:5432": f"{pg.host}:{pg.port or 5432}",
            "redis:6379": redis_hostport,
            "minio:9000": s3_endpoint.removeprefix("http://"),
            "inference:8001": f"127.0.0.1:{self.inference.port}",
            "agency:8090": f"127.0.0.1:{self.agency.port}",
        }
        (self.migrate,) = replicas(specs["migrate"], hosts, root, REDIS_DB_OFFSET)
        self.gateways = replicas(specs["gateway"], hosts, root, REDIS_DB_OFFSET, TIMINGS["gateway"])
        self.workers = replicas(specs["alerting"], hosts, root, REDIS_DB_OFFSET, TIMINGS["alerting"])
        self.all = [self.inference, self.agency, *self.gateways, *self.workers]

    def up(self) -> None:
        self.migrate.run_to_completion(120)  # depends_on: service_completed_successfully
        for service in self.all:
            service.start()
        for service in self.all:
            service.wait_healthy(180)
        for gateway in self.gateways:  # connected to inference (compose: inference service_healthy)
            for _ in range(300):
                if httpx.get(f"{gateway.url}/healthz").json()["inference"]["connected"]:
                    break
                time.sleep(0.2)
            else:
                raise AssertionError(f"{gateway.name} never connected to inference:\n{gateway.log()}")

    def down(self) -> None:
        for service in reversed(self.all):
            service.stop()

    def logs(self) -> str:
        return "\n".join(f"--- {s.name}\n{s.log(2500)}" for s in self.all)

    def register(self, gateway: NativeService, name: str) -> str:
        body = {
            "profile": {"name": name, "birth_year": 1940},
            "consent_recording": True, "consent_location": False, "consent_share_profile": True,
        }  # fmt: skip
        headers = {"X-Hearo-Enrolment-Key": self.variables["HEARO_GATEWAY_ENROLMENT_KEY"]}
        response = httpx.post(f"{gateway.url}/v1/devices", json=body, headers=headers, timeout=10)
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def agency_reports(self) -> list[dict[str, Any]]:
        auth = ("agency", self.variables["HEARO_AGENCY_PASSWORD"])
        response = httpx.get(f"{self.agency.url}/reports", auth=auth, timeout=5)
        assert response.status_code == 200, response.text
        return [d for d in response.json() if d["type"] == "incident.reported"]


def alarm_pcm(seconds: float) -> bytes:
    samples = smoke_alarm(RATE, seconds)
    return (samples.clip(-1, 1) * 32767).astype("<i2").tobytes()


async def _send(ws: ClientConnection, pcm: bytes, then_stop: bool) -> None:
    for i in range(0, len(pcm), 3200):
        await ws.send(pcm[i : i + 3200])
    if then_stop:
        await ws.send(json.dumps({"type": "stop"}))


async def clip_recorded(postgres_url: str, incident_id: str) -> bool:
    """Whether the gateway has recorded the incident's clip (``incident_clips``) in PostgreSQL."""
    url = make_url(postgres_url)
    connection = await asyncpg.connect(host=url.host, port=url.port or 5432, user=url.username or "postgres",
                                       password=url.password, database=url.database)  # fmt: skip
    try:
        return await connection.fetchval("SELECT 1 FROM incident_clips WHERE incident_id = $1", uuid.UUID(incident_id)) == 1
    finally:
        await connection.close()


async def next_incident(ws: ClientConnection, timeout_s: float, state: str | None = None) -> dict[str, Any]:
    """The next ``incident`` message (in ``state``, when given)."""
    async with asyncio.timeout(timeout_s):
        while True:
            message = json.loads(await ws.recv())
            if message["type"] == "incident" and (state is None or message["state"] == state):
                return dict(message)


async def test_compose_services_run_natively(
    postgres_url: str, s3_endpoint: str, redis_hostport: str, tmp_path: Path
) -> None:
    stack = Stack(postgres_url, s3_endpoint, redis_hostport, tmp_path)
    try:
        await asyncio.to_thread(stack.up)
        first, second = stack.gateways
        token_a = stack.register(first, "Kim Ok-soon")
        token_b = stack.register(second, "Lee Mal-ja")
        pcm = alarm_pcm(30.0)

        # A streams through the first gateway; its incident is cancelled through the second.
        async with connect(first.url.replace("http", "ws") + "/v1/stream") as ws_a:
            await ws_a.send(json.dumps(start(token_a)))
            sending = asyncio.create_task(_send(ws_a, pcm, then_stop=False))
            opened_a = await next_incident(ws_a, 60)
            cancelled = httpx.post(
                f"{second.url}/v1/incidents/{opened_a['incident_id']}/cancel", json={"reason": "drill"},
                headers={"Authorization": f"Bearer {token_a}"}, timeout=10,
            )  # fmt: skip
            assert cancelled.status_code == 200, cancelled.text
            # The streaming gateway hears of the other gateway's cancel (Redis, or its poll).
            await next_incident(ws_a, 10, state="cancelled")
            sending.cancel()

        # B streams through the second gateway and stops: the clip is cut and stored in S3.
        s3 = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
        async with connect(second.url.replace("http", "ws") + "/v1/stream") as ws_b:
            await ws_b.send(json.dumps(start(token_b)))
            await _send(ws_b, pcm, then_stop=True)
            opened_b = await next_incident(ws_b, 60)
            incident_b = opened_b["incident_id"]
            clip_key = f"clips/{incident_b}.flac"
            for _ in range(100):
                listed = s3.list_objects_v2(Bucket=BUCKET, Prefix=clip_key).get("KeyCount", 0)
                # Stored, then recorded: the report names the clip only once the row exists.
                if listed and await clip_recorded(postgres_url, incident_b):
                    break
                await asyncio.sleep(0.1)
            # Mid-countdown: the gateway that streamed it and one worker die without a word.
            assert opened_b["state"] == "pending"
            second.kill()
            stack.workers[0].kill()
        assert listed, f"no clip in S3 for {incident_b}\n{stack.logs()}"

        # Reported exactly once, with its clip; the cancelled incident never.
        report = None
        for _ in range(int((COUNTDOWN_S + 40) / 0.25)):
            reports = await asyncio.to_thread(stack.agency_reports)
            mine = [r for r in reports if r["payload"]["data"]["incident_id"] == incident_b]
            if mine:
                report = mine[0]
                break
            await asyncio.sleep(0.25)
        assert report is not None, f"incident {incident_b} was not reported\n{stack.logs()}"
        await asyncio.sleep(2.0)  # a second report, if one were coming, would be here by now
        reports = await asyncio.to_thread(stack.agency_reports)
        keys = {(r["payload"]["data"]["incident_id"], r["agency"]) for r in reports}
        assert len([r for r in reports if r["payload"]["data"]["incident_id"] == incident_b]) == 1, reports
        assert keys == {(incident_b, "119")}, keys  # fire -> 119; the cancelled one nowhere
        assert report["payload"]["data"]["clip"]["status"] == "ready", report["payload"]["data"]["clip"]
        assert s3.head_object(Bucket=BUCKET, Key=clip_key)["ContentLength"] > 0

        # Every service exports what docs/operations.md lists.
        survivors = {"gateway": first, "inference": stack.inference, "alerting": stack.workers[1]}
        scraped = {}
        for service, target in survivors.items():
            response = httpx.get(target.url + "/metrics", timeout=5)
            assert response.status_code == 200, f"{service}: {response.status_code}"
            scraped[service] = response.text
        documented = documented_metrics()
        assert set(documented) == set(survivors), documented
        for service, names in documented.items():
            missing = [n for n in names if not re.search(rf"^{n}(_total|_bucket|_count|_sum)?[{{ ]", scraped[service], re.M)]
            assert not missing, f"{service} does not export {missing}"
        # The surviving worker delivered the report and measured it; the database's gauges agree.
        assert re.search(r'^hearo_alerting_incidents\{state="dispatched"\} [1-9]', scraped["alerting"], re.M)
        assert re.search(r"^hearo_alerting_dispatch_delay_seconds_count [1-9]", scraped["alerting"], re.M)
        assert re.search(r"^hearo_alerting_oldest_overdue_pending_seconds 0\.0$", scraped["alerting"], re.M)
    finally:
        await asyncio.to_thread(stack.down)
