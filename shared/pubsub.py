"""Publish/subscribe of small messages between processes: Redis pub/sub, or in-process.

The one mechanism under the incident updates (``shared.incident_events``) and the device
revocations (``services.gateway.revocation``), each on its own channel:

* :class:`RedisChannel` (production): every subscriber on every process hears every message
  published after it subscribed. Pub/sub keeps nothing: a message published while Redis
  restarts is lost, so each user has a backstop (a database poll).
* :class:`LocalChannel` (embedded mode): the same within one process.

Publishing never raises (a failure is logged); a message that cannot be decoded is logged and
skipped. Example::

    async with channel.subscribe() as messages:
        async for message in messages:
            ...
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Generic, TypeVar

from shared.outlasting import Outlasting

log = logging.getLogger(__name__)

T = TypeVar("T")


class LocalChannel(Generic[T]):
    """In-process fan-out. A subscriber that falls behind by ``max_queue`` loses the oldest."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._queues: set[asyncio.Queue[T]] = set()
        self._max_queue = max_queue

    async def publish(self, message: T) -> None:
        """Send ``message`` to current subscribers."""
        for queue in self._queues:
            _put_dropping_oldest(queue, message)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[T]]:
        """Every message published from now until the block exits."""
        queue: asyncio.Queue[T] = asyncio.Queue(self._max_queue)
        self._queues.add(queue)
        try:
            yield _drain(queue)
        finally:
            self._queues.discard(queue)

    async def close(self) -> None:
        """Nothing to release."""


class RedisChannel(Generic[T]):
    """Redis pub/sub on ``channel``; a subscription survives Redis restarts (it reconnects)."""

    def __init__(
        self,
        url: str,
        channel: str,
        encode: Callable[[T], str],
        decode: Callable[[str | bytes], T],
        *,
        reconnect_delay_s: float = 0.5,
    ) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self.channel = channel
        self._encode = encode
        self._decode = decode
        self._reconnect_delay_s = reconnect_delay_s

    async def publish(self, message: T) -> None:
        """Send ``message`` to current subscribers; a failure is logged, not raised."""
        try:
            await self._redis.publish(self.channel, self._encode(message))
        except Exception as error:  # each channel's users have a backstop for a lost message
            log.warning("%s: message not published: %s", self.channel, error)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[T]]:
        """Every message published from (about) now until the block exits."""
        queue: asyncio.Queue[T] = asyncio.Queue(1000)
        ready = asyncio.Event()
        reader = asyncio.create_task(self._read(queue, ready), name=f"subscribe-{self.channel}")
        try:
            # Wait (briefly) until subscribed, so messages published after this returns arrive.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 2.0)
            yield _drain(queue)
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, queue: asyncio.Queue[T], ready: asyncio.Event) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(self.channel)
                ready.set()
                while True:
                    raw = await pubsub.get_message(timeout=1.0)
                    if raw is None or raw.get("type") != "message":
                        continue
                    try:
                        message = self._decode(raw["data"])
                    except (ValueError, TypeError, KeyError) as error:  # not ours to read
                        log.warning("%s: message ignored: %s", self.channel, error)
                        continue
                    _put_dropping_oldest(queue, message)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("%s: Redis subscription lost (%s); reconnecting", self.channel, error)
                await asyncio.sleep(self._reconnect_delay_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        """Close the Redis connections."""
        await self._redis.aclose()


def _put_dropping_oldest(queue: asyncio.Queue[T], message: T) -> None:
    if queue.full():
        queue.get_nowait()
    queue.put_nowait(message)


async def _drain(queue: asyncio.Queue[T]) -> AsyncIterator[T]:
    while True:
        yield await queue.get()


class ChannelWatch(Generic[T]):
    """A channel's messages, and a periodic check behind them: pub/sub keeps nothing, so a
    message lost while Redis restarted is made good by the next check. A subclass says what a
    message does (``heard``) and what a check does (``check``); a check that fails is logged,
    and the next one runs on time. ``name`` names the tasks and the log lines.

    ``close`` lets a message or check under way finish (up to ``CLOSE_WAIT_S``) rather than
    cancel it: both read the database, and a cancellation inside an asyncpg call loses the
    pooled connection with an error in the log."""

    CLOSE_WAIT_S = 5.0

    def __init__(self, name: str, channel: LocalChannel[T] | RedisChannel[T], check_interval_s: float) -> None:
        self.name = name
        self.channel = channel
        self.check_interval_s = check_interval_s
        self._exit = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []
        self._working = Outlasting(f"{name} work")

    async def heard(self, message: T) -> None:
        raise NotImplementedError

    async def check(self) -> None:
        raise NotImplementedError

    async def start(self) -> None:
        """Subscribe (messages published from now on are heard) and start the checks."""
        messages = await self._exit.enter_async_context(self.channel.subscribe())
        self._tasks = [
            asyncio.create_task(self._listen(messages), name=f"hearo-{self.name}-messages"),
            asyncio.create_task(self._checks(), name=f"hearo-{self.name}-checks"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._working.wait(self.CLOSE_WAIT_S)
        await self._exit.aclose()

    async def _listen(self, messages: AsyncIterator[T]) -> None:
        async for message in messages:
            await self._working.run(self.heard(message))

    async def _checks(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self._working.run(self.check())
            except Exception as error:  # the database is away: the next check will do
                log.warning("%s check failed: %s", self.name, error)
