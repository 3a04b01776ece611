"""shared.db on SQLite: migrations build the schema, engines enforce it, timestamps are UTC."""

from __future__ import annotations

import asyncio
import sqlite3
import uuid
from datetime import datetime, timedelta, timezone
from collections.abc import AsyncIterator, Awaitable
from pathlib import Path

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import JSON, Column, Float, Integer, MetaData, String, Table, Uuid, func, insert, inspect, select
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.exc import IntegrityError, StatementError

from services.gateway.settings import GatewaySettings
from shared.db import (
    DEFAULT_DATABASE_URL,
    Base,
    Database,
    Device,
    EmergencyContact,
    database_url_from_env,
    is_database_busy,
    is_database_unreachable,
    retry_when_busy,
    upgrade_database,
)
from shared.db.base import UtcDateTime
from shared.db.clock import db_now
from shared.db.database import SQLITE_BUSY_TIMEOUT_S
from shared.db.migrations import alembic_config
from shared.db.models import Incident
from shared.incident_state import ActionOutcome, IncidentAction, IncidentState
from shared.incidents import OpenedIncident, act_on_incident, open_incident
from tests.alerting_support import assert_states_enforced, free_port, make_device


def new_device(token_hash: str = "0" * 64) -> Device:
    return Device(
        token_hash=token_hash,
        owner_name="Kim",
        birth_year=1950,
        consent_recording=True,
        consent_location=False,
        consent_share_profile=False,
    )


def schema(connection: Connection) -> tuple[list[str], str | None, list[object]]:
    tables = sorted(inspect(connection).get_table_names())
    revision = MigrationContext.configure(connection).get_current_revision()
    return tables, revision, compare_metadata(MigrationContext.configure(connection), Base.metadata)


async def read_schema(db: Database) -> tuple[list[str], str | None, list[object]]:
    async with db.engine.connect() as connection:
        return await connection.run_sync(schema)


async def test_upgrade_creates_the_schema_on_a_fresh_file(sqlite_url: str) -> None:
    path = Path(make_url(sqlite_url).database or "")
    assert not path.parent.exists()
    await asyncio.to_thread(upgrade_database, sqlite_url)
    assert path.is_file()

    db = Database(sqlite_url)
    try:
        tables, revision, differences = await read_schema(db)
    finally:
        await db.dispose()
    assert tables == [
        "alembic_version", "alerting_workers", "anomaly_activity", "anomaly_models", "anomaly_samples", "audit_log", "contact_notifications", "devices",
        "dispatch_outbox", "emergency_contacts", "households", "incident_clips", "incident_outcomes",
        "incidents", "segment_reviews", "threshold_adjustments",
    ]
    assert revision == "0011"
    assert differences == [], "models and migrations disagree; write a revision"


async def test_upgrade_twice_is_a_no_op(sqlite_db: Database) -> None:
    async with sqlite_db.session() as session:
        session.add(new_device())
    before = await read_schema(sqlite_db)

    await asyncio.to_thread(upgrade_database, sqlite_db.url)

    assert await read_schema(sqlite_db) == before
    async with sqlite_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Device)) == 1


async def test_sqlite_connections_use_wal_and_enforce_foreign_keys(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as connection:
        assert (await connection.exec_driver_sql("PRAGMA journal_mode")).scalar() == "wal"
        assert (await connection.exec_driver_sql("PRAGMA foreign_keys")).scalar() == 1

    orphan = EmergencyContact(
        device_id=uuid.uuid4(),
        position=0,
        name="A",
        relation="son",
        phone="+821012345678",
    )
    with pytest.raises(IntegrityError):
        async with sqlite_db.session() as session:
            session.add(orphan)


async def test_sqlite_waits_for_a_busy_lock_longer_than_pythons_five_seconds(sqlite_db: Database) -> None:
    async with sqlite_db.engine.connect() as connection:
        busy_ms = (await connection.exec_driver_sql("PRAGMA busy_timeout")).scalar()
    assert busy_ms == SQLITE_BUSY_TIMEOUT_S * 1000 > 5000


async def test_a_write_that_finds_the_database_locked_is_tried_again_until_the_lock_is_free(
    sqlite_db: Database, sqlite_url: str
) -> None:
    # Another connection (another process, in a box) holds the write lock longer than this
    # engine's busy timeout: its first attempt fails busy, the retry after the lock is free lands.
    impatient = Database(sqlite_url, connect_args={"timeout": 0.1})
    holder = sqlite3.connect(sqlite_url.removeprefix("sqlite+aiosqlite:///"), isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    attempts = 0

    async def add_device() -> None:
        nonlocal attempts
        attempts += 1
        async with impatient.session() as session:
            session.add(new_device())

    async def release_later() -> None:
        await asyncio.sleep(0.3)
        holder.execute("COMMIT")

    try:
        with pytest.raises(Exception) as busy:
            await add_device()
        assert is_database_busy(busy.value)
        await asyncio.gather(retry_when_busy(add_device, attempts=4, pause_s=0.2), release_later())
        async with impatient.session() as session:
            assert await session.scalar(select(func.count()).select_from(Device)) == 1
        assert attempts >= 3  # the one above, at least one busy retry, and the one that landed
    finally:
        holder.close()
        await impatient.dispose()


async def test_only_a_busy_database_is_tried_again(sqlite_db: Database) -> None:
    calls = 0

    async def fails() -> None:
        nonlocal calls
        calls += 1
        raise RuntimeError("database is locked")  # the words, but not SQLite's error

    with pytest.raises(RuntimeError):
        await retry_when_busy(fails, attempts=3, pause_s=0.0)
    assert calls == 1


class LateProxy:
    """A TCP port where nothing listens (connections are refused, as while PostgreSQL restarts)
    until ``open()``; then it forwards each connection to ``target``."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.port = free_port()
        self.server: asyncio.Server | None = None

    async def open(self) -> None:
        self.server = await asyncio.start_server(self._forward, "127.0.0.1", self.port)

    async def close(self) -> None:
        if self.server is not None:
            self.server.close()

    async def _forward(self, client_in: asyncio.StreamReader, client_out: asyncio.StreamWriter) -> None:
        server_in, server_out = await asyncio.open_connection(*self.target)

        async def pipe(source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
            while data := await source.read(65536):
                sink.write(data)
                await sink.drain()
            sink.close()

        await asyncio.gather(pipe(client_in, server_out), pipe(server_in, client_out), return_exceptions=True)


@pytest.fixture
async def late_database(postgres_url: str) -> AsyncIterator[tuple[Database, Database, LateProxy]]:
    """A migrated PostgreSQL database, reached directly and through a :class:`LateProxy` (closed
    until the test opens it)."""
    await asyncio.to_thread(upgrade_database, postgres_url)
    direct = Database(postgres_url)
    url = make_url(postgres_url)
    proxy = LateProxy((url.host or "127.0.0.1", url.port or 5432))
    through = Database(url.set(port=proxy.port).render_as_string(hide_password=False))
    try:
        yield direct, through, proxy
    finally:
        await through.dispose()
        await proxy.close()
        await direct.dispose()


async def open_after(proxy: LateProxy, delay_s: float) -> None:
    await asyncio.sleep(delay_s)
    await proxy.open()


@pytest.mark.postgres
async def test_a_detection_outlasts_a_database_that_cannot_be_reached_for_a_while(
    late_database: tuple[Database, Database, LateProxy],
) -> None:
    """PostgreSQL refuses connections (a restart, a failover) when a detection is written: the
    write is tried again until the database is back, and lands once. Without the retry window,
    the error says the database could not be reached."""
    direct, through, proxy = late_database
    device = await make_device(direct)

    def detection() -> Awaitable[OpenedIncident]:
        return open_incident(through, device_id=device, class_key="fire", confidence=0.9)

    with pytest.raises(Exception) as refused:
        await retry_when_busy(detection, pause_s=0.05, unreachable_for_s=0.2)
    assert is_database_unreachable(refused.value) and not is_database_busy(refused.value)
    opened, _ = await asyncio.gather(retry_when_busy(detection, pause_s=0.1, unreachable_for_s=10.0), open_after(proxy, 1.0))
    assert opened.created
    async with direct.session() as session:
        assert await session.scalar(select(func.count()).select_from(Incident)) == 1


@pytest.mark.postgres
async def test_a_cancel_outlasts_a_database_that_cannot_be_reached_for_a_while(
    late_database: tuple[Database, Database, LateProxy],
) -> None:
    """The person cancels while PostgreSQL refuses connections: the cancel lands once it is back."""
    direct, through, proxy = late_database
    device = await make_device(direct)
    incident = (await open_incident(direct, device_id=device, class_key="fire", confidence=0.9)).incident
    result, _ = await asyncio.gather(
        act_on_incident(through, incident.id, IncidentAction.CANCEL, device_id=device, reason="toast"), open_after(proxy, 1.0)
    )
    assert result.outcome is ActionOutcome.CANCELLED
    assert result.incident is not None and result.incident.state is IncidentState.CANCELLED


async def test_a_refused_write_is_not_an_unreachable_database(sqlite_db: Database) -> None:
    async with sqlite_db.session() as session:
        session.add(new_device("1" * 64))
    with pytest.raises(IntegrityError) as duplicate:
        async with sqlite_db.session() as session:
            session.add(new_device("1" * 64))
    assert not is_database_unreachable(duplicate.value)
    assert not is_database_unreachable(RuntimeError("connection refused"))  # the words, not the error


async def test_deleting_a_device_cascades_to_its_contacts_in_the_database(
    sqlite_db: Database,
) -> None:
    device = new_device()
    device.contacts = [
        EmergencyContact(position=i, name=f"C{i}", relation="friend", phone="+8210000000")
        for i in range(3)
    ]
    async with sqlite_db.session() as session:
        session.add(device)
    async with sqlite_db.engine.begin() as connection:
        await connection.exec_driver_sql("DELETE FROM devices")
    async with sqlite_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(EmergencyContact)) == 0


async def test_session_rolls_back_when_the_block_raises(sqlite_db: Database) -> None:
    with pytest.raises(RuntimeError):
        async with sqlite_db.session() as session:
            session.add(new_device())
            await session.flush()
            raise RuntimeError("boom")
    async with sqlite_db.session() as session:
        assert await session.scalar(select(func.count()).select_from(Device)) == 0


async def test_timestamps_come_back_as_utc(sqlite_db: Database) -> None:
    device = new_device()
    seoul = timezone(timedelta(hours=9))
    device.location_updated_at = datetime(2025, 3, 1, 9, 30, tzinfo=seoul)
    async with sqlite_db.session() as session:
        session.add(device)
    async with sqlite_db.session() as session:
        stored = await session.get(Device, device.id)
    assert stored is not None
    assert stored.location_updated_at == datetime(2025, 3, 1, 0, 30, tzinfo=timezone.utc)
    assert stored.location_updated_at.tzinfo == timezone.utc
    assert stored.created_at.tzinfo == timezone.utc
    assert abs(datetime.now(timezone.utc) - stored.created_at) < timedelta(minutes=1)


async def test_naive_timestamps_are_refused(sqlite_db: Database) -> None:
    device = new_device()
    device.location_updated_at = datetime(2025, 3, 1, 9, 30)
    with pytest.raises(StatementError, match="naive datetime"):
        async with sqlite_db.session() as session:
            session.add(device)


def test_database_url_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("HEARO_DATABASE_URL", "DATABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert DEFAULT_DATABASE_URL == "sqlite+aiosqlite:///var/hearo.db"
    assert GatewaySettings().database_url == database_url_from_env() == DEFAULT_DATABASE_URL

    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://plain/db")
    assert GatewaySettings().database_url == database_url_from_env() == "postgresql+asyncpg://plain/db"
    monkeypatch.setenv("HEARO_DATABASE_URL", "postgresql+asyncpg://hearo/db")
    assert GatewaySettings().database_url == database_url_from_env() == "postgresql+asyncpg://hearo/db"
    assert GatewaySettings(database_url="sqlite+aiosqlite:///x.db").database_url.endswith("x.db")


async def test_state_columns_take_the_enums_states_and_nothing_else(sqlite_db: Database) -> None:
    await assert_states_enforced(sqlite_db)


@pytest.fixture(params=["sqlite_url", pytest.param("postgres_url", marks=pytest.mark.postgres)])
def database_url(request: pytest.FixtureRequest) -> str:
    """A fresh, empty database on SQLite, then on PostgreSQL."""
    url: str = request.getfixturevalue(request.param)
    return url


async def test_incidents_recorded_before_0010_keep_their_times_and_route_as_before(database_url: str) -> None:
    """Migrations 0010 and 0011 on rows already there: the latest detection is the first one,
    nothing else was detected and no routing is due (so each is reported where it always was)."""
    await asyncio.to_thread(command.upgrade, alembic_config(database_url), "0009")
    db = Database(database_url)
    try:
        device = await make_device(db)
        incident_id = uuid.uuid4()
        # The table as 0009 left it (the model's own has the new columns).
        incidents = Table(
            "incidents", MetaData(), Column("id", Uuid), Column("device_id", Uuid), Column("kind", String),
            Column("class_key", String), Column("confidence", Float), Column("score_timeline", JSON),
            Column("detections", Integer), Column("evidence", String), Column("detected_at", UtcDateTime),
            Column("deadline_at", UtcDateTime), Column("state", String), Column("state_changed_at", UtcDateTime),
        )  # fmt: skip
        async with db.session() as session:
            await session.execute(insert(incidents).values(
                id=incident_id, device_id=device, kind="emergency", class_key="fire", confidence=0.9,
                score_timeline=[], detections=2, evidence="steady", detected_at=db_now(-90), deadline_at=db_now(-30),
                state="dispatched", state_changed_at=db_now(-30),
            ))  # fmt: skip
        await asyncio.to_thread(upgrade_database, database_url)
        async with db.session() as session:
            row = await session.get_one(Incident, incident_id)
        assert row.last_detected_at == row.detected_at and row.also_detected == [] and row.routing_due is False
    finally:
        await db.dispose()
