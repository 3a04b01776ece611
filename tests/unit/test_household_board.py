"""The household activity board (shared/household/board.py): in-process, and in Redis for real
(``HEARO_TEST_REDIS_URL``, default 127.0.0.1:6379, database 13, flushed around each test)."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis

from shared.household import LocalActivityBoard, RedisActivityBoard, WindowSummary, create_activity_board
from tests.alerting_support import redis_broker_url  # noqa: F401 (fixture)

HOME, OTHER_HOME = uuid.UUID(int=1), uuid.UUID(int=2)


def summary(at: float, device: str = "kitchen", level: float = -40.0, **scores: float) -> WindowSummary:
    return WindowSummary(device, at, level, dict(scores))


def test_a_summary_is_compact_json_and_back() -> None:
    heard = WindowSummary("d1", 1_800_000_000.1234, -38.26, {"fire": 0.41234}, ("fire",))
    assert heard.to_json() == '{"d":"d1","t":1800000000.123,"db":-38.3,"s":{"fire":0.412},"p":["fire"]}'
    assert WindowSummary.from_json(heard.to_json()) == WindowSummary("d1", 1_800_000_000.123, -38.3, {"fire": 0.412}, ("fire",))
    assert WindowSummary.from_json(summary(5.0).to_json()).patterns == ()


def test_the_backend_follows_the_redis_url() -> None:
    assert isinstance(create_activity_board(""), LocalActivityBoard)


async def test_local_board_reads_a_households_span_in_time_order() -> None:
    board, now = LocalActivityBoard(), time.time()
    for at in (now - 2.0, now - 1.0, now, now - 1.5):
        board.post(HOME, summary(at))
    board.post(OTHER_HOME, summary(now))
    heard = await board.read(HOME, now - 1.6, now - 0.5)
    assert [s.heard_at for s in heard] == [now - 1.5, now - 1.0]
    assert await board.read(uuid.UUID(int=3), now - 10, now) == []


async def test_local_board_forgets_after_its_ttl() -> None:
    board, now = LocalActivityBoard(ttl_s=1.0), time.time()
    board.post(HOME, summary(now - 5.0))
    board.post(HOME, summary(now))
    assert [s.heard_at for s in await board.read(HOME, 0, now + 1)] == [now]


@pytest.mark.redis
async def test_redis_board_shares_what_one_gateway_posts_with_another(redis_broker_url: str) -> None:  # noqa: F811
    poster, reader = RedisActivityBoard(redis_broker_url), RedisActivityBoard(redis_broker_url)
    await poster.start()
    try:
        now = time.time()
        for i in range(5):
            poster.post(HOME, summary(now - 2.0 + 0.5 * i, fire=0.1 * i))
        poster.post(OTHER_HOME, summary(now, "elsewhere"))
        heard = await _eventually(reader, HOME, now - 10, now + 1, count=5)
        assert [s.scores.get("fire", 0.0) for s in heard] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4])
        assert [s.heard_at for s in await reader.read(HOME, now - 1.1, now - 0.4)] == pytest.approx([now - 1.0, now - 0.5])
        # The key expires with the board's memory, and older summaries are trimmed at each write.
        client = redis.Redis.from_url(redis_broker_url)
        assert 0 < client.ttl(RedisActivityBoard.key(HOME)) <= 60
        poster.post(HOME, summary(now - 120.0))
        poster.post(HOME, summary(now + 0.1))
        await _eventually(reader, HOME, now, now + 1, count=1)
        assert client.zcount(RedisActivityBoard.key(HOME), "-inf", now - 61) == 0
        client.close()
        assert poster.lost == 0
    finally:
        await poster.close()
        await reader.close()


@pytest.mark.redis
async def test_redis_board_ignores_what_it_cannot_read(redis_broker_url: str) -> None:  # noqa: F811
    board, now = RedisActivityBoard(redis_broker_url), time.time()
    client = redis.Redis.from_url(redis_broker_url)
    client.zadd(RedisActivityBoard.key(HOME), {"not json": now, summary(now).to_json(): now})
    client.close()
    try:
        assert [s.heard_at for s in await board.read(HOME, now - 1, now + 1)] == pytest.approx([now])
    finally:
        await board.close()


async def test_redis_away_loses_posts_without_raising_or_waiting() -> None:
    counted: list[tuple[str, int]] = []
    board = RedisActivityBoard("redis://127.0.0.1:1", on_lost=lambda reason, n: counted.append((reason, n)), max_queued=3)
    await board.start()
    try:
        started = time.perf_counter()
        for i in range(5):
            board.post(HOME, summary(time.time()))
        assert time.perf_counter() - started < 0.05  # posting never waits for Redis
        assert counted[:2] == [("queue_full", 1), ("queue_full", 1)]
        for _ in range(100):
            if board.lost == 5:
                break
            await asyncio.sleep(0.05)
        assert board.lost == 5 and sum(n for reason, n in counted if reason == "redis_error") == 3
        with pytest.raises(redis.ConnectionError):
            await board.read(HOME, 0, time.time())
    finally:
        await board.close()


async def _eventually(board: RedisActivityBoard, household: uuid.UUID, since: float, until: float,
                      count: int) -> list[WindowSummary]:  # fmt: skip
    for _ in range(100):
        heard = await board.read(household, since, until)
        if len(heard) >= count:
            return heard
        await asyncio.sleep(0.02)
    raise AssertionError(f"{count} summaries never arrived; {len(heard)} did")
