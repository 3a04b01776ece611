"""Engines and sessions for SQLite (embedded default) and PostgreSQL (production).

The backend follows the URL: ``sqlite+aiosqlite:///path`` or
``postgresql+asyncpg://user@host/db``. One :class:`Database` per process holds the engine
and its session factory::

    db = Database(settings.database_url)
    async with db.session() as session:
        session.add(device)      # committed when the block exits, rolled back on error
    await db.dispose()
"""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, TypeVar

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from sqlalchemy import event
from sqlalchemy.engine import URL, make_url
from asyncpg.exceptions import OperatorInterventionError, PostgresConnectionError
from sqlalchemy.exc import DBAPIError, OperationalError
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import ConnectionPoolEntry

from shared.outlasting import Outlasting
from shared.settings import DEFAULT_DATA_DIR

DEFAULT_DATABASE_URL = f"sqlite+aiosqlite:///{DEFAULT_DATA_DIR / 'hearo.db'}"
# The longest pause between tries of a write while the database cannot be reached.
UNREACHABLE_PAUSE_MAX_S = 4.0

log = logging.getLogger(__name__)

# Every service's settings reads its database URL from either name, prefix or not:
# ``database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=DATABASE_URL_ENV)``
# (with ``populate_by_name=True`` so code and tests can pass ``database_url=...``).
DATABASE_URL_ENV = AliasChoices("HEARO_DATABASE_URL", "DATABASE_URL")

# How long a SQLite connection waits for another connection's write lock before it fails with
# "database is locked". Python's default is 5 s. Under load a gateway's event loop fell seconds
# behind while one of its write transactions held the lock (each statement of a transaction waits
# for the loop), and the alerting worker's and the other sessions' writes timed out: detections were
# not recorded (hearo bench load, 80 homes on one SQLite box).
SQLITE_BUSY_TIMEOUT_S = 30.0

T = TypeVar("T")


class _DatabaseUrlSettings(BaseSettings):
    model_config = SettingsConfigDict(extra="ignore")

    database_url: str = Field(default=DEFAULT_DATABASE_URL, validation_alias=DATABASE_URL_ENV)


def database_url_from_env() -> str:
    """The URL every service would use, for callers outside one (the CLI's migrate step).

    ``HEARO_DATABASE_URL``, else ``DATABASE_URL``, else :data:`DEFAULT_DATABASE_URL`: the
    same rule as the services' settings classes.
    """
    return _DatabaseUrlSettings().database_url


def make_engine(url: str, *, sqlite_foreign_keys: bool = True, **kwargs: Any) -> AsyncEngine:
    """An async engine for ``url``; extra keyword arguments go to ``create_async_engine``.

    For a SQLite file the folder is created, and every new connection is switched to WAL
    (readers do not block the writer) with foreign keys enforced, and waits up to
    :data:`SQLITE_BUSY_TIMEOUT_S` for a write lock (``connect_args={"timeout": ...}`` overrides
    it). The migrations turn enforcement off (``sqlite_foreign_keys=False``): a batch table rebuild drops the old
    table, and with enforcement on that would cascade into the rows that refer to it.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite":
        return create_async_engine(parsed, **kwargs)
    _create_sqlite_folder(parsed)
    kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT_S, **kwargs.get("connect_args", {})}
    engine = create_async_engine(parsed, **kwargs)

    @event.listens_for(engine.sync_engine, "connect")
    def _set_sqlite_pragmas(dbapi_connection: Any, _record: ConnectionPoolEntry) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA foreign_keys={'ON' if sqlite_foreign_keys else 'OFF'}")
        cursor.close()

    return engine


def _create_sqlite_folder(url: URL) -> None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    Path(database).parent.mkdir(parents=True, exist_ok=True)


class Database:
    """The process's engine and session factory. Create once at startup, ``dispose()`` at exit.

    The schema is not created here: run :func:`shared.db.upgrade_database` first.
    """

    def __init__(self, url: str, **engine_kwargs: Any) -> None:
        self.url = url
        self.engine: AsyncEngine = make_engine(url, **engine_kwargs)
        # Objects stay readable after commit: under asyncio an expired attribute cannot be
        # reloaded lazily, and callers (auth, the WebSocket handler) use rows after the block.
        self.sessionmaker: async_sessionmaker[AsyncSession] = async_sessionmaker(
            self.engine, expire_on_commit=False
        )
        self._outlasting = Outlasting("database work")

    @asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: commits when the block exits normally, rolls back if it raises."""
        async with self.sessionmaker() as session:
            try:
                yield session
                await session.commit()
            except BaseException:
                await session.rollback()
                raise

    async def outlasting(self, work: Coroutine[Any, Any, T]) -> T:
        """``await work``, which runs to its end even if the caller is cancelled meanwhile
        (:mod:`shared.outlasting`: no cancellation inside an asyncpg call); ``dispose`` waits for it."""
        return await self._outlasting.run(work)

    async def dispose(self, wait_s: float = 5.0) -> None:
        """Close every pooled connection, after up to ``wait_s`` for :meth:`outlasting` work."""
        await self._outlasting.wait(wait_s)
        await self.engine.dispose()


def is_database_busy(error: BaseException) -> bool:
    """Whether ``error`` is SQLite's "database is locked" (or "busy"): the statement waited the
    busy timeout for another connection's lock and did nothing, so its transaction, rolled back,
    may simply be tried again. PostgreSQL waits for row locks instead and never answers this."""
    cause = error.orig if isinstance(error, OperationalError) else error
    return isinstance(cause, sqlite3.OperationalError) and any(
        word in str(cause).lower() for word in ("locked", "busy")
    )


def is_database_unreachable(error: BaseException) -> bool:
    """Whether ``error`` says the database could not be reached or dropped the connection: a
    restart, a failover, a network blip. The failed attempt's transaction did not commit, or its
    commit's answer was lost (then a retry sees what it wrote). Found in the error or the ones
    it wraps: an ``OSError`` (refused, reset, timed out), a connection SQLAlchemy invalidated,
    or PostgreSQL's connection errors (SQLSTATE class 08) and shutdowns (57P: admin or crash
    shutdown, cannot connect now)."""
    if isinstance(error, DBAPIError) and error.connection_invalidated:
        return True
    seen: BaseException | None = error
    for _ in range(8):  # a chain of causes is short; this bounds a cycle
        if seen is None:
            break
        if isinstance(seen, (OSError, PostgresConnectionError, OperatorInterventionError)):
            return True
        seen = seen.orig if isinstance(seen, DBAPIError) else seen.__cause__
    return False


async def retry_when_busy(
    work: Callable[[], Awaitable[T]], attempts: int = 3, pause_s: float = 0.5, *, unreachable_for_s: float = 0.0
) -> T:
    """``await work()``, tried again (up to ``attempts`` in all, ``pause_s`` apart, doubling) while
    it fails with :func:`is_database_busy`: for writes that must not be lost, such as a detection
    becoming an incident. With ``unreachable_for_s``, a database that cannot be reached
    (:func:`is_database_unreachable`) is tried again as well, pauses doubling up to
    ``UNREACHABLE_PAUSE_MAX_S``, until that long after its first such failure: a failover takes
    seconds, and ``work`` must be safe to repeat. Any other error, or the last attempt's, is raised."""
    busy = 0
    unreachable_since: float | None = None
    pause = pause_s
    while True:
        try:
            return await work()
        except Exception as error:
            if is_database_busy(error) and (busy := busy + 1) < attempts:
                await asyncio.sleep(pause_s * 2 ** (busy - 1))
                continue
            if unreachable_for_s <= 0 or not is_database_unreachable(error):
                raise
            now = time.monotonic()
            unreachable_since = now if unreachable_since is None else unreachable_since
            if now - unreachable_since >= unreachable_for_s:
                raise
            log.warning("database unreachable (%s); trying again in %.1f s", type(error).__name__, pause)
        await asyncio.sleep(pause)
        pause = min(pause * 2, UNREACHABLE_PAUSE_MAX_S)
