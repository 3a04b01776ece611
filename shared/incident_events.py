"""Incident updates on their way to whichever gateway holds the client.

The database is the truth; these events only make the truth arrive sooner. Every state
change (opened, deadline moved, cancelled, dispatching, dispatched, failed) is published
after its transaction commits:

* :class:`RedisIncidentEvents` (production): Redis pub/sub on one channel, so every
  gateway hears every update and forwards those of its own sessions. Pub/sub keeps
  nothing: an update published while Redis restarts is simply lost.
* :class:`LocalIncidentEvents` (embedded mode): the same within one process.

Both are the channels of ``shared.pubsub`` carrying :class:`IncidentUpdate` as JSON.

Because an event can be lost (and in embedded mode the worker is another process), the
gateway follows an incident with :class:`shared.incident_watcher.IncidentWatcher`, which
takes pushed events and polls the database as a backstop, so the client learns every state
at most one poll interval late, whatever happened to the events.
"""

from __future__ import annotations

import abc
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import Any

from shared.incident_state import EvidenceMark, IncidentState
from shared.pubsub import LocalChannel, RedisChannel

CHANNEL = "hearo:incident-updates"


@dataclass(frozen=True)
class IncidentUpdate:
    """An incident's state as of ``at`` (database clock, ISO 8601). ``detail`` varies by state:
    ``reason`` for cancelled, ``agencies`` for dispatched or failed, ``shortened`` (why) when
    growing evidence moved the deadline earlier. ``evidence``: the mark, None when not read."""

    incident_id: str
    device_id: str
    state: IncidentState
    deadline_at: str
    at: str
    detail: dict[str, Any] = field(default_factory=dict)
    evidence: EvidenceMark | None = None

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False, separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> IncidentUpdate:
        """Raises ValueError for a state this version does not know."""
        data = json.loads(raw)
        evidence = data.get("evidence")
        return cls(**{**data, "state": IncidentState(data["state"]), "evidence": evidence and EvidenceMark(evidence)})


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


class LocalIncidentEvents(LocalChannel[IncidentUpdate], IncidentEvents):
    """In-process fan-out (``shared.pubsub.LocalChannel``)."""


class RedisIncidentEvents(RedisChannel[IncidentUpdate], IncidentEvents):
    """Redis pub/sub on :data:`CHANNEL` (``shared.pubsub.RedisChannel``)."""

    def __init__(self, url: str, *, reconnect_delay_s: float = 0.5) -> None:
        super().__init__(url, CHANNEL, IncidentUpdate.to_json, IncidentUpdate.from_json, reconnect_delay_s=reconnect_delay_s)


def create_incident_events(redis_url: str) -> IncidentEvents:
    """Redis pub/sub when ``redis_url`` is set, else the in-process fan-out."""
    return RedisIncidentEvents(redis_url) if redis_url else LocalIncidentEvents()
