"""Incident updates on their way to whichever gateway holds the client.

The database is the truth; these events only make the truth arrive sooner. Every state
change (opened, deadline moved, cancelled, dispatching, dispatched, failed) is published
after its transaction commits:

* :class:`RedisIncidentEvents` (production): Redis pub/sub on one channel, so every
  gateway hears every update and forwards those of its own sessions. Pub/sub keeps
  nothing: an update published while Redis restarts is simply lost.
* :class:`LocalIncidentEvents` (embedded mode): the same within one process.

Because an event can be lost (and in embedded mode the worker is another process), the
gateway follows an incident with :class:`shared.incident_watcher.IncidentWatcher`, which
takes pushed events and polls the database as a backstop, so the client learns every state
at most one poll interval late, whatever happened to the events.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.incident_state import IncidentState

log = logging.getLogger(__name__)

CHANNEL = "hearo:incident-updates"


@dataclass(frozen=True)
class IncidentUpdate:
    """An incident's state as of ``at`` (database clock, ISO 8601). ``detail`` varies by state:
    ``reason`` for cancelled, ``agencies`` for dispatched or failed."""

    incident_id: str
    device_id: str
    state: IncidentState
    deadline_at: str
    at: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IncidentUpdate:
        """Raises ValueError for a state this version does not know."""
        data = json.loads(raw)
        return cls(**{**data, "state": IncidentState(data["state"])})


class IncidentEvents(abc.ABC):
    """Publish/subscribe of :class:`IncidentUpdate`; publishing never raises.

    Example::

        async with events.subscribe() as updates:
            async for update in updates:
                ...
    """

    @abc.abstractmethod
    async def publish(self, update: IncidentUpdate) -> None:
        """Send ``update`` to current subscribers; failures are logged, not raised."""

    @abc.abstractmethod
    def subscribe(self) -> contextlib.AbstractAsyncContextManager[AsyncIterator[IncidentUpdate]]:
        """Every update published from now until the block exits."""

    async def close(self) -> None:
        """Release connections."""


class LocalIncidentEvents(IncidentEvents):
    """In-process fan-out. A subscriber that falls behind by ``max_queue`` loses the oldest."""

    def __init__(self, max_queue: int = 1000) -> None:
        self._queues: set[asyncio.Queue[IncidentUpdate]] = set()
        self._max_queue = max_queue

    async def publish(self, update: IncidentUpdate) -> None:
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(update)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[IncidentUpdate]]:
        queue: asyncio.Queue[IncidentUpdate] = asyncio.Queue(self._max_queue)
        self._queues.add(queue)

        async def updates() -> AsyncIterator[IncidentUpdate]:
            while True:
                yield await queue.get()

        try:
            yield updates()
        finally:
            self._queues.discard(queue)


class RedisIncidentEvents(IncidentEvents):
    """Redis pub/sub on :data:`CHANNEL`. A subscription survives Redis restarts (it reconnects)."""

    def __init__(self, url: str, *, reconnect_delay_s: float = 0.5) -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=2)
        self._reconnect_delay_s = reconnect_delay_s

    async def publish(self, update: IncidentUpdate) -> None:
        try:
            await self._redis.publish(CHANNEL, update.to_json())
        except Exception as error:  # the database has the state; the poll will carry it
            log.warning("incident update not published: %s", error)

    @contextlib.asynccontextmanager
    async def subscribe(self) -> AsyncIterator[AsyncIterator[IncidentUpdate]]:
        queue: asyncio.Queue[IncidentUpdate] = asyncio.Queue(1000)
        ready = asyncio.Event()
        reader = asyncio.create_task(self._read(queue, ready))
        try:
            # Wait (briefly) until subscribed, so updates published after this returns arrive.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ready.wait(), 2.0)

            async def updates() -> AsyncIterator[IncidentUpdate]:
                while True:
                    yield await queue.get()

            yield updates()
        finally:
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader

    async def _read(self, queue: asyncio.Queue[IncidentUpdate], ready: asyncio.Event) -> None:
        while True:
            pubsub = self._redis.pubsub(ignore_subscribe_messages=True)
            try:
                await pubsub.subscribe(CHANNEL)
                ready.set()
                while True:
                    message = await pubsub.get_message(timeout=1.0)
                    if message is None or message.get("type") != "message":
                        continue
                    try:
                        update = IncidentUpdate.from_json(message["data"])
                    except (ValueError, TypeError) as error:  # not ours to read; the poll has the truth
                        log.warning("incident update ignored: %s", error)
                        continue
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(update)
            except asyncio.CancelledError:
                raise
            except Exception as error:
                log.warning("incident updates: Redis subscription lost (%s); reconnecting", error)
                await asyncio.sleep(self._reconnect_delay_s)
            finally:
                with contextlib.suppress(Exception):
                    await pubsub.aclose()

    async def close(self) -> None:
        await self._redis.aclose()


def create_incident_events(redis_url: str) -> IncidentEvents:
    """Redis pub/sub when ``redis_url`` is set, else the in-process fan-out."""
    return RedisIncidentEvents(redis_url) if redis_url else LocalIncidentEvents()
