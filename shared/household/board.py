"""The household activity board: what each listening device of a home heard in the last minute.

Every streaming session of a device that belongs to a household posts a compact
:class:`WindowSummary` of each classified window (when the gateway received it, how loud it
was, the emergency class scores above a small floor, the alarm rhythms matched) under its
household. A detection on one device then reads the others' summaries of the same moment
(:mod:`shared.household.corroboration`). Nothing older than ``ttl_s`` (60 s) is kept: the
board is a short memory of sound levels and scores, never audio.

* :class:`RedisActivityBoard` (production, several gateways): one sorted set per household,
  scored by the time heard, trimmed and expiring after ``ttl_s``. ``post`` puts the summary
  in a bounded queue and returns; one task per gateway writes the queue in pipelined batches.
* :class:`LocalActivityBoard` (embedded ``hearo run``: one gateway): the same in memory.

Posting never blocks, never raises and never slows classification: a full queue drops the
summary, a Redis error drops the batch; both are counted (``lost``, and ``on_lost`` for the
gateway's metrics) and logged once per failure spell. A lost summary only means that one
moment of that device is not there to corroborate another's detection.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import cast

log = logging.getLogger(__name__)

# A minute is twice what corroboration reads (a detection's few seconds and the 30 s before
# them for the device's usual level), and little enough that nothing lingers.
BOARD_TTL_S = 60.0
# Summaries waiting to be written (about 4 minutes of 8 streams): more means Redis is away.
MAX_QUEUED = 1000
_BATCH = 200

LostCounter = Callable[[str, int], None]


@dataclass(frozen=True)
class WindowSummary:
    """One classified window of one device: ``heard_at`` (epoch seconds, the gateway's clock,
    when the audio that ends it arrived), its loudness ``level_dbfs``, the emergency classes'
    smoothed ``scores`` at or above the board's floor, and the classes whose alarm rhythm was
    matched (in part or in full) since the device's previous window."""

    device_id: str
    heard_at: float
    level_dbfs: float
    scores: dict[str, float] = field(default_factory=dict)
    patterns: tuple[str, ...] = ()

    def to_json(self) -> str:
        data = {"d": self.device_id, "t": round(self.heard_at, 3), "db": round(self.level_dbfs, 1),
                "s": {key: round(score, 3) for key, score in self.scores.items()}}  # fmt: skip
        if self.patterns:
            data["p"] = list(self.patterns)
        return json.dumps(data, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> WindowSummary:
        """Raises ValueError (or KeyError, TypeError) for what is not a summary."""
        data = json.loads(raw)
        scores = {str(key): float(score) for key, score in data.get("s", {}).items()}
        return cls(str(data["d"]), float(data["t"]), float(data["db"]), scores, tuple(data.get("p", ())))


class ActivityBoard(abc.ABC):
    """Where a household's devices post what they hear and read what the others heard.

    >>> board.post(household_id, WindowSummary(str(device_id), time.time(), -38.5, {"fire": 0.41}))
    >>> await board.read(household_id, since=t - 33.0, until=t + 3.0)
    [WindowSummary(...), ...]
    """

    def __init__(self, ttl_s: float = BOARD_TTL_S, on_lost: LostCounter | None = None) -> None:
        self.ttl_s = ttl_s
        self.lost = 0  # summaries never posted (queue full, Redis error)
        self._on_lost = on_lost

    @abc.abstractmethod
    def post(self, household_id: uuid.UUID, summary: WindowSummary) -> None:
        """Keep ``summary`` for ``ttl_s``; returns at once, never raises."""

    @abc.abstractmethod
    async def read(self, household_id: uuid.UUID, since: float, until: float) -> list[WindowSummary]:
        """The household's summaries heard between ``since`` and ``until`` (epoch seconds), in
        time order; raises when the board cannot be read."""

    async def start(self) -> None:
        """Start what writes the posts (once, at the gateway's startup)."""

    async def close(self) -> None:
        """Stop writing (what is queued is dropped) and release connections."""

    def _count_lost(self, reason: str, count: int) -> None:
        self.lost += count
        if self._on_lost is not None:
            self._on_lost(reason, count)


class LocalActivityBoard(ActivityBoard):
    """In-process board for a single gateway (``hearo run``)."""

    def __init__(self, ttl_s: float = BOARD_TTL_S, on_lost: LostCounter | None = None) -> None:
        super().__init__(ttl_s, on_lost)
        self._households: dict[uuid.UUID, deque[WindowSummary]] = {}

    def post(self, household_id: uuid.UUID, summary: WindowSummary) -> None:
        heard = self._households.setdefault(household_id, deque())
        heard.append(summary)
        self._forget_old(time.time())

    async def read(self, household_id: uuid.UUID, since: float, until: float) -> list[WindowSummary]:
        self._forget_old(time.time())
        heard = self._households.get(household_id, ())
        return sorted((s for s in heard if since <= s.heard_at <= until), key=lambda s: s.heard_at)

    def _forget_old(self, now: float) -> None:
        oldest = now - self.ttl_s
        for household_id, heard in list(self._households.items()):
            while heard and heard[0].heard_at < oldest:
                heard.popleft()
            if not heard:
                del self._households[household_id]


_CLOSE_TIMEOUT_S = 3.0


class RedisActivityBoard(ActivityBoard):
    """The board in Redis, shared by every gateway: ``hearo:household:<id>:windows``, a sorted
    set of JSON summaries scored by ``heard_at``, trimmed to ``ttl_s`` and expiring with it."""

    def __init__(self, url: str, ttl_s: float = BOARD_TTL_S, on_lost: LostCounter | None = None,
                 max_queued: int = MAX_QUEUED) -> None:  # fmt: skip
        import redis.asyncio as redis

        super().__init__(ttl_s, on_lost)
        self._redis = redis.Redis.from_url(url, socket_timeout=2, socket_connect_timeout=2)
        self._queue: asyncio.Queue[tuple[uuid.UUID, WindowSummary]] = asyncio.Queue(max_queued)
        self._writer: asyncio.Task[None] | None = None
        self._failing = False  # logged once per spell of failures

    @staticmethod
    def key(household_id: uuid.UUID) -> str:
        return f"hearo:household:{household_id}:windows"

    def post(self, household_id: uuid.UUID, summary: WindowSummary) -> None:
        try:
            self._queue.put_nowait((household_id, summary))
        except asyncio.QueueFull:
            self._count_lost("queue_full", 1)

    async def read(self, household_id: uuid.UUID, since: float, until: float) -> list[WindowSummary]:
        raw = await self._redis.zrangebyscore(self.key(household_id), since, until)
        heard = []
        for member in raw:
            try:
                heard.append(WindowSummary.from_json(cast(bytes, member)))
            except (ValueError, KeyError, TypeError) as error:  # not ours to read
                log.warning("household board: an entry of %s ignored: %s", household_id, error)
        return heard

    async def start(self) -> None:
        if self._writer is None:
            self._writer = asyncio.create_task(self._write_forever(), name="household-board-writer")

    async def close(self) -> None:
        # Bounded: a write cancelled inside redis-py's pipeline cleanup has been seen to hang a
        # shutdown (a test run under heavy load waited forever here); what is queued is dropped
        # anyway, so after _CLOSE_TIMEOUT_S the board gives up on a clean close.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                if self._writer is not None:
                    self._writer.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await self._writer
                await self._redis.aclose()

    async def _write_forever(self) -> None:
        while True:
            batch = [await self._queue.get()]
            while len(batch) < _BATCH and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            try:
                await self._write(batch)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                self._count_lost("redis_error", len(batch))
                if not self._failing:
                    log.warning("household board: %d summaries not written (%s); dropping until Redis answers",
                                len(batch), error)  # fmt: skip
                self._failing = True
                continue
            if self._failing:
                log.info("household board: writing again")
            self._failing = False

    async def _write(self, batch: Iterable[tuple[uuid.UUID, WindowSummary]]) -> None:
        by_household: dict[uuid.UUID, dict[str, float]] = {}
        for household_id, summary in batch:
            by_household.setdefault(household_id, {})[summary.to_json()] = summary.heard_at
        oldest, expire_s = time.time() - self.ttl_s, math.ceil(self.ttl_s)
        async with self._redis.pipeline(transaction=False) as pipe:
            for household_id, members in by_household.items():
                key = self.key(household_id)
                pipe.zadd(key, members)
                pipe.zremrangebyscore(key, "-inf", oldest)
                pipe.expire(key, expire_s)
            await pipe.execute()


def create_activity_board(redis_url: str, ttl_s: float = BOARD_TTL_S, on_lost: LostCounter | None = None) -> ActivityBoard:
    """Redis when ``redis_url`` is set (every gateway shares it), else in-process."""
    return RedisActivityBoard(redis_url, ttl_s, on_lost) if redis_url else LocalActivityBoard(ttl_s, on_lost)
