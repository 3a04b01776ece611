"""Incident updates on their way to whichever gateway holds the client.

The database is the truth; these events only make the truth arrive sooner. Every state
change (opened, deadline moved, cancelled, dispatching, dispatched, failed) is published
after its transaction commits:

* :class:`RedisIncidentEvents` (production): Redis pub/sub on one channel, so every
  gateway hears every update and forwards those of its own sessions. Pub/sub keeps
  nothing: an update published while Redis restarts is simply lost.
* :class:`LocalIncidentEvents` (embedded mode): the same within one process.

Because an event can be lost (and in embedded mode the worker is another process), the
gateway follows an incident with :class:`IncidentWatcher`, which takes pushed events and
polls the database as a backstop, so the client learns every state at most one poll
interval late, whatever happened to the events.
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from shared.db import Database

log = logging.getLogger(__name__)

CHANNEL = "hearo:incident-updates"
FINAL_STATES = frozenset({"cancelled", "dispatched", "failed"})
# States only move forward; a late event about an earlier state is not news.
_RANK = {"pending": 0, "dispatching": 1, "cancelled": 2, "dispatched": 2, "failed": 2}


@dataclass(frozen=True)
class IncidentUpdate:
    """An incident's state as of ``at`` (database clock, ISO 8601). ``detail`` varies by state:
    ``reason`` for cancelled, ``agencies`` for dispatched or failed."""

    incident_id: str
    device_id: str
    state: str
    deadline_at: str
    at: str
    detail: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IncidentUpdate:
        return cls(**json.loads(raw))


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
                    if queue.full():
                        queue.get_nowait()
                    queue.put_nowait(IncidentUpdate.from_json(message["data"]))
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


class IncidentWatcher:
    """Follows incidents for one gateway process: pushed events first, database polls as backstop.

    One subscription serves every watch. ``start()`` once at startup, ``close()`` at
    shutdown; then for each incident a session cares about::

        async for update in watcher.watch(incident_id):
            await send_to_client(update)      # ends after cancelled/dispatched/failed
    """

    def __init__(self, db: Database, events: IncidentEvents, poll_interval_s: float = 1.0) -> None:
        self.db = db
        self.events = events
        self.poll_interval_s = poll_interval_s
        self._queues: dict[str, set[asyncio.Queue[IncidentUpdate]]] = {}
        self._task: asyncio.Task[None] | None = None
        self._subscribed = asyncio.Event()

    async def start(self) -> None:
        self._task = asyncio.create_task(self._route())
        await self._subscribed.wait()

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def _route(self) -> None:
        async with self.events.subscribe() as updates:
            self._subscribed.set()
            async for update in updates:
                for queue in self._queues.get(update.incident_id, ()):
                    queue.put_nowait(update)

    async def watch(self, incident_id: uuid.UUID | str, *, known: tuple[str, str] | None = None) -> AsyncIterator[IncidentUpdate]:
        """Each change of state or deadline of ``incident_id`` after ``known`` (state, deadline_at).

        Ends after a final state, or at once when the incident does not exist.
        """
        from shared.incidents import get_incident  # shared.incidents publishes through this module

        key = str(incident_id)
        queue: asyncio.Queue[IncidentUpdate] = asyncio.Queue()
        self._queues.setdefault(key, set()).add(queue)
        last = known
        try:
            while True:
                try:
                    update: IncidentUpdate | None = await asyncio.wait_for(queue.get(), self.poll_interval_s)
                except TimeoutError:
                    view = await get_incident(self.db, uuid.UUID(key))
                    update = view.as_update() if view is not None else None
                    if update is None:
                        return
                assert update is not None
                current = (update.state, update.deadline_at)
                if current != last and (last is None or _RANK[update.state] >= _RANK[last[0]]):
                    last = current
                    yield update
                if update.state in FINAL_STATES:
                    return
        finally:
            queues = self._queues.get(key)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[key]
