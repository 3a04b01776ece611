"""Helpers for the alerting tests: devices, a real receiving agency server, worker processes.

The agency is the real ``hearo agency`` app served by uvicorn on a loopback port in a
thread of the test process, with switchable misbehaviour (answer 500, hang past the
sender's timeout) in front of it, so the tests count what actually arrived over HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import redis
import uvicorn
from sqlalchemy import text, update
from sqlalchemy.exc import IntegrityError, StatementError

from hearo.agency import AgencySettings, create_agency_app
from hearo.agency_store import ReportStore
from services.alerting.faults import FaultInjector
from services.alerting.routing import Router
from services.alerting.settings import AgencyConfig, ChannelConfig
from services.alerting.sweeper import SweepPolicy, Sweeper
from services.alerting.webhooks import new_secret
from shared.db import Database, Device, EmergencyContact, upgrade_database
from shared.db.clock import db_now
from shared.db.models import DispatchOutbox, Incident
from shared.incident_state import ContactEvent, DeliveryState, EvidenceMark, IncidentState
from shared.incidents import open_incident

REPO = Path(__file__).resolve().parents[1]
SECRET = new_secret()
AGENCY_PASSWORD = "drill-agency-password"
REDIS_URL_ENV = "HEARO_TEST_REDIS_URL"
# The Redis database these tests use as a broker: flushed before and after, nothing else touched.
BROKER_DB = 13

# Timings scaled to 1-2 s deadlines (see AlertingSettings for what each means).
FAST = {
    "sweep_interval_s": "0.2",
    "redrive_after_s": "0.6",
    "heartbeat_s": "0.25",
    "worker_stale_s": "1.0",
    "lease_s": "10",
    "send_timeout_s": "1.0",
    "backoff_base_s": "0.2",
    "backoff_max_s": "1.0",
    "max_attempts": "12",
    "clip_wait_s": "0",
}


@pytest.fixture
def redis_broker_url() -> Iterator[str]:
    """Redis database ``BROKER_DB`` on the test server, empty."""
    base = os.environ.get(REDIS_URL_ENV, "redis://127.0.0.1:6379")
    url = f"{base.rstrip('/').split('/')[0]}//{base.split('//', 1)[1].split('/')[0]}/{BROKER_DB}"
    client = redis.Redis.from_url(url)
    try:
        client.flushdb()
    except redis.ConnectionError as error:
        pytest.fail(f"Redis is needed at {url}: {error}", pytrace=False)
    yield url
    client.flushdb()
    client.close()


@pytest.fixture
async def alerting_pg(postgres_url: str) -> AsyncIterator[Database]:
    """A fresh PostgreSQL database migrated to head."""
    await asyncio.to_thread(upgrade_database, postgres_url)
    db = Database(postgres_url)
    yield db
    await db.dispose()


@pytest.fixture
def agency() -> Iterator[AgencyServer]:
    """The receiving agency server, up on a loopback port."""
    with AgencyServer() as server:
        yield server


def sweeper(db: Database, published: list[tuple[str, str]] | None = None) -> Sweeper:
    """A sweeper for in-process tests: 112/119 webhooks, publishing into ``published``."""
    sink = published if published is not None else []
    agencies = {
        a: AgencyConfig(name=a, channels=[ChannelConfig(kind="webhook", url=f"http://x/{a}", secrets=[SECRET])])
        for a in ("112", "119")
    }
    return Sweeper(
        db, owner="test-worker", router=Router(agencies, {}), publish=lambda t, i: sink.append((t, i)),
        policy=SweepPolicy(interval_s=0.1, redrive_after_s=1, claim_batch=50, worker_stale_s=2, heartbeat_s=1),
        faults=FaultInjector(frozenset(), 0),
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


async def make_device(
    db: Database,
    *,
    contacts: int = 0,
    contact_webhook: str | None = None,
    consent_location: bool = True,
    consent_share_profile: bool = True,
) -> uuid.UUID:
    """A registered device (with a registered location) and ``contacts`` guardians."""
    async with db.session() as session:
        device = Device(
            token_hash=uuid.uuid4().hex + uuid.uuid4().hex,
            owner_name="홍길동",
            birth_year=1948,
            medical_notes="심장질환",
            address="서울특별시 중구 세종대로 110",
            latitude=37.5665 if consent_location else None,
            longitude=126.978 if consent_location else None,
            location_accuracy_m=30.0 if consent_location else None,
            consent_recording=True,
            consent_location=consent_location,
            consent_share_profile=consent_share_profile,
        )
        session.add(device)
        await session.flush()
        for position in range(contacts):
            session.add(
                EmergencyContact(
                    device_id=device.id, position=position, name=f"보호자{position}", relation="daughter",
                    phone=f"+8210000000{position:02d}", webhook_url=contact_webhook,
                )
            )
        return device.id


class FlakyAgency:
    """ASGI wrapper: while ``mode`` is ``"500"`` answers 500; while ``"hang"`` the agency
    takes the request in (stores it) but its answer comes ``hang_s`` late, after the sender
    timed out; else it passes through to the agency app."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.mode = "ok"
        self.hang_s = 5.0
        self.misbehaved = 0

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["method"] == "POST" and self.mode != "ok":
            self.misbehaved += 1
            if self.mode == "hang":
                # Accepted but answered too late: the sender gives up and retries the same id.
                answer: list[Any] = []

                async def hold(message: Any) -> None:
                    answer.append(message)

                await self.app(scope, receive, hold)
                await asyncio.sleep(self.hang_s)
                for message in answer:
                    await send(message)
                return
            await send({"type": "http.response.start", "status": 500, "headers": [(b"content-type", b"text/plain")]})
            await send({"type": "http.response.body", "body": b"agency down"})
            return
        await self.app(scope, receive, send)


class AgencyServer:
    """``hearo agency`` on a free loopback port in a background thread."""

    def __init__(self) -> None:
        self.port = free_port()
        self.store = ReportStore(":memory:")
        self.app = FlakyAgency(create_agency_app(AgencySettings(secrets=[SECRET], password=AGENCY_PASSWORD), self.store))
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning", lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> AgencyServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("agency server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
        self.store.close()

    def agencies(self, *, sms_fallback: bool = True) -> dict[str, AgencyConfig]:
        """112 and 119 pointing here: webhook first, then SMS through this server's /sms."""
        def agency(agency_id: str) -> AgencyConfig:
            channels = [ChannelConfig(kind="webhook", url=f"{self.url}/webhooks/{agency_id}", secrets=[SECRET])]
            if sms_fallback:
                channels.append(ChannelConfig(kind="sms", to=f"+82{agency_id}"))
            return AgencyConfig(name=f"agency {agency_id}", channels=channels)

        return {"112": agency("112"), "119": agency("119")}

    def reports(self) -> list[dict[str, Any]]:
        return [d for d in self.store.list("webhook") if d["type"] == "incident.reported"]

    def report_counts(self) -> Counter[tuple[str, str]]:
        """(incident_id, agency) -> distinct reports received (idempotency keys)."""
        return Counter((d["payload"]["data"]["incident_id"], d["agency"]) for d in self.reports())


def worker_env(
    database_url: str, data_dir: Path, agency: AgencyServer, broker_url: str = "", **settings: str
) -> dict[str, str]:
    """Environment for a worker subprocess reporting to ``agency``."""
    import json

    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARO_")}
    env.update(
        {
            "HEARO_DATABASE_URL": database_url,
            "HEARO_DATA_DIR": str(data_dir),
            "HEARO_CLIPS_DIR": str(data_dir / "clips"),
            "HEARO_ALERTING_BROKER_URL": broker_url,
            "HEARO_ALERTING_AGENCIES": json.dumps({k: v.model_dump() for k, v in agency.agencies().items()}),
            "HEARO_ALERTING_CONTACT_WEBHOOK_SECRETS": json.dumps([SECRET]),
            "HEARO_ALERTING_SMS_PROVIDER_URL": f"{agency.url}/sms",
            "HEARO_ALERTING_SMS_PROVIDER_SECRETS": json.dumps([SECRET]),  # the agency's /sms verifies
            "PYTHONPATH": str(REPO),
        }
    )
    env.update({f"HEARO_ALERTING_{k.upper()}": v for k, v in settings.items()})
    return env


class WorkerSupervisor:
    """Runs worker subprocesses and restarts any that dies (as k8s or ``hearo run`` would)."""

    def __init__(self, env: Mapping[str, str], log_dir: Path, count: int = 1, restart_delay_s: float = 0.2) -> None:
        self.env = dict(env)
        self.log_dir = log_dir
        self.count = count
        self.restart_delay_s = restart_delay_s
        self.processes: list[subprocess.Popen[bytes]] = []
        self.deaths: list[int] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._supervise, daemon=True)
        self._started = 0

    def _spawn(self) -> subprocess.Popen[bytes]:
        self._started += 1
        # The child keeps its own descriptor of the log; the parent's is closed at once.
        with open(self.log_dir / f"worker-{self._started}.log", "wb") as log:
            return subprocess.Popen(
                [sys.executable, "-m", "services.alerting.worker"], cwd=REPO, env=self.env,
                stdout=log, stderr=subprocess.STDOUT,
            )

    def __enter__(self) -> WorkerSupervisor:
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self.processes = [self._spawn() for _ in range(self.count)]
        self._thread.start()
        return self

    def _supervise(self) -> None:
        while not self._stop.is_set():
            for i, process in enumerate(self.processes):
                code = process.poll()
                if code is not None and not self._stop.is_set():
                    self.deaths.append(code)
                    time.sleep(self.restart_delay_s)
                    self.processes[i] = self._spawn()
            time.sleep(0.05)

    def kill_one(self) -> None:
        """SIGKILL the first worker (the supervisor restarts it)."""
        self.processes[0].send_signal(signal.SIGKILL)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        for process in self.processes:
            if process.poll() is None:
                process.terminate()
        for process in self.processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    @property
    def kills(self) -> int:
        return sum(1 for code in self.deaths if code == -signal.SIGKILL)

    def logs(self) -> str:
        return "\n".join(p.read_text(errors="replace")[-3000:] for p in sorted(self.log_dir.glob("worker-*.log")))


async def wait_for(predicate: Callable[[], Awaitable[bool]], timeout_s: float, interval_s: float = 0.1) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; returns its last value."""
    deadline = time.monotonic() + timeout_s
    while True:
        if await predicate():
            return True
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(interval_s)


FINAL = ("cancelled", "dispatched", "failed")


async def open_incidents(
    db: Database, count: int, *, countdown_s: float, spread_s: float = 0.0, contacts_every: int = 0,
    class_keys: tuple[str, ...] = ("fire", "crime"),
) -> list[uuid.UUID]:
    """``count`` pending incidents on fresh devices, deadlines spread over ``spread_s``;
    every ``contacts_every``-th device has a guardian (0: none)."""
    ids = []
    for i in range(count):
        guardian = 1 if contacts_every and i % contacts_every == 0 else 0
        device = await make_device(db, contacts=guardian)
        opened = await open_incident(
            db, device_id=device, class_key=class_keys[i % len(class_keys)], confidence=0.9,
            countdown_s=countdown_s + spread_s * i / max(1, count),
        )
        ids.append(opened.incident.id)
    return ids


async def assert_states_enforced(db: Database) -> None:
    """The migrated schema takes every state of the enums and refuses any other name, in
    ``incidents`` and both delivery tables (raw SQL, past the ORM, which refuses one too), and
    likewise the incidents' evidence marks."""
    incident = (await open_incident(db, device_id=await make_device(db, contacts=1), class_key="fire",
                                    confidence=0.9)).incident  # fmt: skip
    async with db.session() as session:
        session.add(DispatchOutbox(
            incident_id=incident.id, agency_id="119", position=0, kind="webhook", state=DeliveryState.PENDING,
            attempts=0, next_attempt_at=db_now(), created_at=db_now(),
        ))  # fmt: skip
    tables = (("incidents", IncidentState), ("dispatch_outbox", DeliveryState), ("contact_notifications", DeliveryState))
    for table, states in tables:
        for state in states:
            async with db.session() as session:
                await session.execute(text(f"UPDATE {table} SET state = :state"), {"state": state.value})
        with pytest.raises(IntegrityError, match=f"ck_{table}_state"):
            async with db.session() as session:
                await session.execute(text(f"UPDATE {table} SET state = 'lost'"))
    with pytest.raises(StatementError, match="lost"):
        async with db.session() as session:
            await session.execute(update(Incident).values(state="lost"))
    for mark in EvidenceMark:  # the countdown evidence mark, by the same rule
        async with db.session() as session:
            await session.execute(text("UPDATE incidents SET evidence = :mark"), {"mark": mark.value})
    with pytest.raises(IntegrityError, match="ck_incidents_evidence"):
        async with db.session() as session:
            await session.execute(text("UPDATE incidents SET evidence = 'lost'"))


async def settled(db: Database, timeout_s: float) -> bool:
    """Wait until every incident is final and every delivery row is final."""
    from sqlalchemy import func, select

    from shared.db.models import ContactNotification, DispatchOutbox, Incident

    async def done() -> bool:
        async with db.session() as session:
            open_incidents_ = await session.scalar(
                select(func.count()).select_from(Incident).where(Incident.state.not_in(FINAL))
            )
            open_rows = 0
            for model in (DispatchOutbox, ContactNotification):
                open_rows += await session.scalar(
                    select(func.count()).select_from(model).where(model.state.in_((DeliveryState.PENDING, DeliveryState.SENDING)))
                ) or 0
        return open_incidents_ == 0 and open_rows == 0

    return await wait_for(done, timeout_s, 0.2)


async def assert_exactly_once(db: Database, agency: AgencyServer) -> dict[str, int]:
    """The suite's invariant, counted at the receiving server; returns figures for the report.

    Every incident not cancelled reached each of its agencies exactly once (one idempotency
    key per incident and agency, whatever the retries), no cancelled incident reached any,
    and every guardian notice recorded as sent arrived exactly once.
    """
    from sqlalchemy import select

    from services.alerting.routing import Router, reported_classes
    from shared.db.models import ContactNotification, DispatchOutbox, Incident

    router = Router(agency.agencies(), {})
    async with db.session() as session:
        incidents = {i.id: i for i in (await session.scalars(select(Incident))).all()}
        agency_rows = (await session.scalars(select(DispatchOutbox))).all()
        contact_rows = (await session.scalars(select(ContactNotification))).all()
    received = {d["key"]: d for d in agency.store.list()}
    per_agency: Counter[tuple[str, str]] = Counter()
    for delivery in received.values():
        if delivery["type"] == "incident.reported":
            per_agency[(delivery["payload"]["data"]["incident_id"], delivery["agency"])] += 1
        elif delivery["channel"] == "sms" and delivery["agency"].startswith("+82") and len(delivery["agency"]) == 6:
            # An agency SMS (fallback): to +82112 / +82119.
            per_agency[(_incident_in(delivery["payload"]["text"], incidents), delivery["agency"][3:])] += 1

    problems = []
    for incident in incidents.values():
        expected = set() if incident.state == "cancelled" else set(router.agencies_for(*reported_classes(incident)))
        got = {a: n for (i, a), n in per_agency.items() if i == str(incident.id)}
        if incident.state != "dispatched" and incident.state != "cancelled":
            problems.append(f"{incident.id} ended {incident.state}")
        if set(got) != expected or any(n != 1 for n in got.values()):
            problems.append(f"{incident.id} ({incident.state}) expected {sorted(expected)} once each, received {got}")
    sent_contact = {str(r.id) for r in contact_rows if r.state == "sent"}
    sent_agency = {str(r.id) for r in agency_rows if r.state == "sent"}
    unexplained = set(received) - sent_contact - sent_agency
    missing = (sent_contact | sent_agency) - set(received)
    if unexplained:
        problems.append(f"received deliveries no row records as sent: {sorted(unexplained)[:5]}")
    if missing:
        problems.append(f"rows recorded as sent that never arrived: {sorted(missing)[:5]}")
    cancelled_notices = [
        r for r in contact_rows if r.event == ContactEvent.DISPATCHED and incidents[r.incident_id].state == IncidentState.CANCELLED
    ]
    if cancelled_notices:
        problems.append("a guardian was told a cancelled incident was reported")
    assert not problems, "\n".join(problems)
    return {
        "incidents": len(incidents),
        "cancelled": sum(1 for i in incidents.values() if i.state == "cancelled"),
        "reports": sum(per_agency.values()),
        "deliveries": len(received),
        "duplicate_attempts": sum(d["attempts"] - 1 for d in received.values()),
    }


def _incident_in(text: str, incidents: Mapping[uuid.UUID, Any]) -> str:
    for incident_id in incidents:
        if str(incident_id) in text:
            return str(incident_id)
    return "?"
