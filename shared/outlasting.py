"""Work that runs to its end even when the task awaiting it is cancelled.

Database work in tasks that are cancelled as a matter of course (a session's incident
followers when it ends, the settings and revocation watches at shutdown) must not be cut off
inside an asyncpg call: the pooled connection is left mid-protocol, and the pool, closing it,
logs "Exception closing connection ... CancelledError" and loses the connection. So such work
runs in a task of its own, the caller awaits it shielded, and whoever closes the resource
waits for what is still under way::

    work = Outlasting("incident polls")
    view = await work.run(get_incident(db, incident_id))   # a cancel stops the wait, not the read
    ...
    await work.wait(5.0)                                   # before disposing of the engine
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Coroutine
from typing import Any, TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")


class Outlasting:
    """The work under way that its callers' cancellation does not reach (module docstring)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._running: set[asyncio.Task[Any]] = set()

    async def run(self, work: Coroutine[Any, Any, T]) -> T:
        """``await work``; a cancellation of the caller ends only the wait."""
        task = asyncio.ensure_future(work)
        self._running.add(task)
        task.add_done_callback(self._done)
        return await asyncio.shield(task)

    async def wait(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the work under way."""
        if self._running:
            await asyncio.wait(set(self._running), timeout=timeout_s)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._running.discard(task)
        # Read here, for the caller may be gone: an error nobody reads is an asyncio error log.
        if not task.cancelled() and task.exception() is not None:
            log.debug("%s: work failed: %s", self.name, task.exception())
