"""Redis restarted empty while incidents count down and while they are in flight, or down
throughout.

These tests run their own redis-server (no persistence) on a spare port as the broker and the
pub/sub, and replace it with a fresh, empty one twice, or kill it for good. Nothing may be lost:
the outbox in PostgreSQL is the queue of record, the sweeper publishes again what Redis forgot,
and while the broker refuses messages each worker delivers the due rows itself.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from tests.alerting_support import free_port
from tests.chaos_support import Chaos

pytestmark = [pytest.mark.slow, pytest.mark.postgres, pytest.mark.redis]


class RedisServer:
    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.process = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 10
        while True:
            try:
                redis.Redis(port=self.port).ping()
                return
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.05)

    def kill(self) -> None:
        assert self.process is not None
        self.process.kill()
        self.process.wait()

    def restart_empty(self) -> None:
        self.kill()
        self.start()
        # Empty: it loaded nothing and keeps nothing. Not dbsize() == 0: the workers reconnect
        # within milliseconds and write their own keys again (seen under CI load).
        persistence = redis.Redis(port=self.port).info("persistence")
        assert persistence["rdb_last_load_keys_loaded"] == 0 and persistence["aof_enabled"] == 0, persistence


@pytest.fixture
def own_redis(tmp_path: Path) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.fail("redis-server is needed on PATH for this test", pytrace=False)
    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.kill()


async def test_redis_restarted_empty_during_countdowns_and_dispatch(chaos: Chaos, own_redis: RedisServer) -> None:
    with chaos.workers(broker_url=own_redis.url, redis_url=own_redis.url) as workers:
        await asyncio.sleep(2.0)  # worker up and consuming
        ids = await chaos.open_incidents(12, countdown_s=1.0, spread_s=3.0, contacts_every=3)
        await asyncio.sleep(0.6)  # all counting down, none due yet
        own_redis.restart_empty()
        await asyncio.sleep(1.2)  # some reported, some in flight, some still counting
        own_redis.restart_empty()
        await chaos.settle(workers, timeout_s=40)
    figures = await chaos.exactly_once()
    print(f"\nredis restarted twice: {figures}")
    assert figures["incidents"] == len(ids)


async def test_redis_down_through_every_deadline_and_report(chaos: Chaos, own_redis: RedisServer) -> None:
    """Redis (broker and pub/sub) dies while the incidents count down and stays dead: the
    workers deliver the reports and the guardians' notices themselves, each exactly once."""
    with chaos.workers(count=2, broker_url=own_redis.url, redis_url=own_redis.url) as workers:
        await asyncio.sleep(2.0)  # workers up and consuming
        ids = await chaos.open_incidents(8, countdown_s=1.0, spread_s=2.0, contacts_every=2)
        own_redis.kill()
        await chaos.settle(workers, timeout_s=40)
    figures = await chaos.exactly_once()
    print(f"\nredis down throughout: {figures}")
    assert figures["incidents"] == len(ids)
