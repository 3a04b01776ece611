"""shared.outlasting: work whose caller is cancelled runs to its end, and a PostgreSQL read
cut off that way loses no pooled connection and logs no error (the fuzz test's flake)."""

from __future__ import annotations

import asyncio
import gc
import logging

import pytest
from sqlalchemy import text

from shared.db import Database
from shared.outlasting import Outlasting


async def test_a_cancelled_caller_stops_waiting_but_the_work_finishes() -> None:
    finished = asyncio.Event()

    async def work() -> str:
        await asyncio.sleep(0.05)
        finished.set()
        return "done"

    outlasting = Outlasting("test")
    caller = asyncio.create_task(outlasting.run(work()))
    await asyncio.sleep(0.01)
    caller.cancel()
    with pytest.raises(asyncio.CancelledError):
        await caller
    assert not finished.is_set()
    await outlasting.wait(1.0)
    assert finished.is_set()


async def test_the_caller_gets_the_result_or_the_error() -> None:
    async def fails() -> None:
        raise ValueError("no")

    async def answers() -> int:
        return 7

    outlasting = Outlasting("test")
    assert await outlasting.run(answers()) == 7
    with pytest.raises(ValueError, match="no"):
        await outlasting.run(fails())


async def test_an_error_nobody_waits_for_is_not_an_asyncio_error(caplog: pytest.LogCaptureFixture) -> None:
    async def fails_later() -> None:
        await asyncio.sleep(0.02)
        raise ValueError("late")

    outlasting = Outlasting("test")
    caller = asyncio.create_task(outlasting.run(fails_later()))
    await asyncio.sleep(0.005)
    caller.cancel()
    await asyncio.wait({caller})
    await outlasting.wait(1.0)
    del caller  # the last reference to the work: asyncio reports an unread error when it goes
    gc.collect()
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def _backend_pid(db: Database) -> int:
    async with db.session() as session:
        return int((await session.execute(text("SELECT pg_backend_pid()"))).scalar_one())


async def _slow_read(db: Database) -> None:
    async with db.session() as session:
        await session.execute(text("SELECT pg_sleep(0.3)"))


async def _cancel_inside_pg_sleep(caller: asyncio.Task[None]) -> None:
    await asyncio.sleep(0.1)  # inside pg_sleep
    caller.cancel()
    await asyncio.wait({caller})


async def _until_checked_in(db: Database) -> None:
    for _ in range(100):
        if db.engine.pool.checkedout() == 0:  # type: ignore[attr-defined]
            return
        await asyncio.sleep(0.02)
    raise AssertionError("the read's connection never came back to the pool")


@pytest.mark.postgres
async def test_a_read_whose_caller_is_cancelled_keeps_its_pooled_connection(
    postgres_db: Database, caplog: pytest.LogCaptureFixture
) -> None:
    await _cancel_inside_pg_sleep(asyncio.create_task(postgres_db.outlasting(_slow_read(postgres_db))))
    assert postgres_db.engine.pool.checkedout() == 1  # type: ignore[attr-defined]  # still reading
    await postgres_db.dispose()  # waits for the read first
    assert postgres_db.engine.pool.checkedout() == 0  # type: ignore[attr-defined]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


@pytest.mark.postgres
async def test_the_connection_is_reused_after_an_outlasting_read(postgres_db: Database) -> None:
    before = await _backend_pid(postgres_db)
    await _cancel_inside_pg_sleep(asyncio.create_task(postgres_db.outlasting(_slow_read(postgres_db))))
    await _until_checked_in(postgres_db)
    assert await _backend_pid(postgres_db) == before  # waited for the read's connection to come back

    # Without it, the same cancellation costs the pool its connection (the reason for the above).
    await _cancel_inside_pg_sleep(asyncio.create_task(_slow_read(postgres_db)))
    await _until_checked_in(postgres_db)
    assert await _backend_pid(postgres_db) != before
