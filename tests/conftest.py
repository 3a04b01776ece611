"""Fixtures shared by the whole suite: databases on SQLite and on the real PostgreSQL server.

Every database is built by the Alembic migrations, never by ``create_all``, so the tests
exercise the schema production runs on.

PostgreSQL fixtures create a fresh, uniquely named database on the server given by
``HEARO_TEST_POSTGRES_URL`` (an admin connection; default
``postgresql+asyncpg://postgres@127.0.0.1:5432/test``) and drop it afterwards. An
unreachable server fails the test: a PostgreSQL test that silently skips proves nothing.
"""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from shared.db import Database, upgrade_database

POSTGRES_URL_ENV = "HEARO_TEST_POSTGRES_URL"
DEFAULT_POSTGRES_ADMIN_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


@pytest.fixture(autouse=True)
def data_dir_outside_the_repo(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test's ``HEARO_DATA_DIR``: a fresh folder, so that what settings generate there
    (development secrets, see shared/local_secrets.py) never lands in the repo's ``var/``."""
    folder = tmp_path_factory.mktemp("hearo-data")
    monkeypatch.setenv("HEARO_DATA_DIR", str(folder))
    return folder


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    """The URL of a SQLite file that does not exist yet (its folder neither)."""
    return f"sqlite+aiosqlite:///{tmp_path / 'data' / 'hearo.db'}"


@pytest.fixture
async def sqlite_db(sqlite_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on a fresh SQLite file migrated to head."""
    await asyncio.to_thread(upgrade_database, sqlite_url)
    db = Database(sqlite_url)
    yield db
    await db.dispose()


@pytest.fixture
async def postgres_url() -> AsyncIterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    admin_url = make_url(os.environ.get(POSTGRES_URL_ENV, DEFAULT_POSTGRES_ADMIN_URL))
    name = f"hearo_test_{uuid.uuid4().hex[:16]}"
    # CREATE/DROP DATABASE cannot run inside a transaction.
    admin = create_async_engine(
        admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool, connect_args={"timeout": 5}
    )
    try:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'CREATE DATABASE "{name}"')
    except Exception as exc:  # any failure here means there is no database to test against
        await admin.dispose()
        pytest.fail(
            f"PostgreSQL is needed and was not usable at "
            f"{admin_url.render_as_string(hide_password=True)}: {exc!r}. Start the server or "
            f"point {POSTGRES_URL_ENV} at an admin connection.",
            pytrace=False,
        )
    try:
        yield admin_url.set(database=name).render_as_string(hide_password=False)
    finally:
        async with admin.connect() as connection:
            await connection.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.dispose()


@pytest.fixture
async def postgres_db(postgres_url: str) -> AsyncIterator[Database]:
    """A :class:`Database` on a fresh PostgreSQL database migrated to head."""
    await asyncio.to_thread(upgrade_database, postgres_url)
    db = Database(postgres_url)
    yield db
    await db.dispose()


@pytest.fixture
def s3_endpoint(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """moto's S3 server on a loopback port with the bucket ``tests.s3_support.BUCKET``."""
    from tests.s3_support import moto_s3  # moto is slow to import; only S3 tests pay for it

    with moto_s3(monkeypatch) as endpoint:
        yield endpoint


@pytest.fixture(params=["sqlite_db", pytest.param("postgres_db", marks=pytest.mark.postgres)])
def db(request: pytest.FixtureRequest) -> Database:
    """The test runs twice: on the embedded SQLite and on PostgreSQL (row locks, SKIP LOCKED)."""
    database: Database = request.getfixturevalue(request.param)
    return database
