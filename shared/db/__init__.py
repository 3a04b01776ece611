"""Persistence shared by the services: SQLAlchemy 2 async models, engines, Alembic migrations.

SQLite (``sqlite+aiosqlite``) is the embedded default, PostgreSQL (``postgresql+asyncpg``)
the production store; the URL decides. The schema exists only through migrations::

    upgrade_database(url)            # at startup or in the migrate step
    db = Database(url)
    async with db.session() as session:
        ...
"""

from __future__ import annotations

from shared.db.base import Base, UtcDateTime
from shared.db.database import (
    DATABASE_URL_ENV,
    DEFAULT_DATABASE_URL,
    Database,
    database_url_from_env,
    is_database_busy,
    is_database_unreachable,
    make_engine,
    retry_when_busy,
)
from shared.db.migrations import alembic_config, upgrade_database
from shared.db.models import Device, EmergencyContact
from shared.db import anomaly_tables, review_tables  # noqa: F401  (register their tables on Base.metadata)

__all__ = [
    "DATABASE_URL_ENV",
    "DEFAULT_DATABASE_URL",
    "Base",
    "Database",
    "Device",
    "EmergencyContact",
    "UtcDateTime",
    "alembic_config",
    "database_url_from_env",
    "is_database_busy",
    "is_database_unreachable",
    "make_engine",
    "retry_when_busy",
    "upgrade_database",
]
