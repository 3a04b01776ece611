"""Following incidents for one gateway process: pushed events first, database polls as backstop.

An :class:`~shared.incident_events.IncidentUpdate` can be lost (pub/sub keeps nothing, and in
embedded mode the worker is another process), so a watch also reads the incident from the
database whenever a poll interval passes without news: the client learns every state at
most one poll interval late, whatever happened to the events.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncGenerator

from shared.db import Database
from shared.incident_events import IncidentEvents, IncidentUpdate
from shared.incident_state import EvidenceMark, IncidentState
from shared.incidents import get_incident

class IncidentWatcher:
    """Follows incidents for one gateway process (see the module docstring).

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

    async def watch(
        self, incident_id: uuid.UUID | str, *, known: tuple[IncidentState, str] | None = None
    ) -> AsyncGenerator[IncidentUpdate, None]:
        """Each change of state, deadline or evidence mark of ``incident_id`` after ``known``
        (state, deadline_at; the mark then is taken from the first update read).

        Ends after a final state, or at once when the incident does not exist.
        """
        key = str(incident_id)
        queue: asyncio.Queue[IncidentUpdate] = asyncio.Queue()
        self._queues.setdefault(key, set()).add(queue)
        last = known
        mark: EvidenceMark | None = None
        try:
            while True:
                try:
                    update: IncidentUpdate | None = await asyncio.wait_for(queue.get(), self.poll_interval_s)
                except TimeoutError:
                    # Cancelled when the session ends: the read itself finishes (Database.outlasting).
                    view = await self.db.outlasting(get_incident(self.db, uuid.UUID(key)))
                    update = view.as_update() if view is not None else None
                    if update is None:
                        return
                assert update is not None
                current = (update.state, update.deadline_at)
                mark = mark or update.evidence
                # Events and polls arrive out of order: one about a state already left is stale.
                news = current != last or (update.evidence is not None and update.evidence != mark)
                if news and (last is None or last[0].leads_to(update.state)):
                    last, mark = current, update.evidence or mark
                    yield update
                if update.state.is_final:
                    return
        finally:
            queues = self._queues.get(key)
            if queues is not None:
                queues.discard(queue)
                if not queues:
                    del self._queues[key]
