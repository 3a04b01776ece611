"""Alembic environment: runs the revisions over the project's async engine.

Loaded by Alembic from ``alembic_config(url)``; the URL comes from
``config.attributes["url"]``.
"""

from __future__ import annotations

import asyncio
from typing import Any, Literal

from alembic import context
from alembic.autogenerate.api import AutogenContext
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.pool import NullPool

from shared.db import models  # noqa: F401  (registers the tables on Base.metadata)
from shared.db.base import Base, UtcDateTime
from shared.db.database import make_engine

url: str = context.config.attributes["url"]


def _render_item(kind: str, obj: object, _context: AutogenContext) -> str | Literal[False]:
    # A revision is frozen DDL: write the plain column type, not the Python-side decorator
    # (which would also need an import the generated file lacks).
    if kind == "type" and isinstance(obj, UtcDateTime):
        return "sa.DateTime(timezone=True)"
    return False


def _configure(**kwargs: Any) -> None:
    # SQLite cannot ALTER most things in place; batch mode rebuilds the table instead.
    context.configure(
        target_metadata=Base.metadata,
        render_as_batch=make_url(url).get_backend_name() == "sqlite",
        compare_type=True,
        render_item=_render_item,
        **kwargs,
    )


def _run_on(connection: Connection) -> None:
    _configure(connection=connection)
    with context.begin_transaction():
        context.run_migrations()


async def _run_online() -> None:
    engine = make_engine(url, poolclass=NullPool, sqlite_foreign_keys=False)
    try:
        async with engine.connect() as connection:
            await connection.run_sync(_run_on)
    finally:
        await engine.dispose()


if context.is_offline_mode():
    # ``upgrade(..., sql=True)``: print the DDL for a DBA instead of running it.
    _configure(url=url, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    asyncio.run(_run_online())
