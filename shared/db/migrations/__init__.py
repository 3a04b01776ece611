"""Alembic migrations, run from code (there is no ``alembic.ini``).

``upgrade_database(url)`` brings any database to the newest revision; it is what the
``migrate`` step, the embedded default's startup and the tests all call. To write a new
revision, autogenerate it against a database already at head::

    from alembic import command
    command.revision(alembic_config(url), message="incidents", autogenerate=True)

then edit it by hand, name it ``NNNN_<what>.py`` in ``versions/`` with
``revision = "NNNN"`` and ``down_revision`` the previous one.
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

MIGRATIONS_DIR = Path(__file__).resolve().parent


def alembic_config(url: str) -> Config:
    """An Alembic ``Config`` pointing at these migrations and at ``url``.

    The URL travels in ``config.attributes`` rather than the ini options, where
    configparser would read a ``%`` in a URL-encoded password as interpolation.
    """
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    config.attributes["url"] = url
    return config


def upgrade_database(url: str) -> None:
    """Apply every pending migration to the database at ``url``; a no-op when at head.

    Accepts ``sqlite+aiosqlite://`` and ``postgresql+asyncpg://`` URLs. It runs its own
    event loop, so from async code call it in a thread:
    ``await asyncio.to_thread(upgrade_database, url)``.
    """
    command.upgrade(alembic_config(url), "head")
