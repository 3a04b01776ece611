"""A device's live sessions follow its listening mode and anomaly model, on every gateway.

``PATCH /v1/devices/me`` with a new ``listening_mode`` commits, then publishes a
:class:`ModeChanged` on the Redis channel :data:`CHANNEL` (in-process without Redis); each
gateway's :class:`ModeWatch` hears it and re-reads that device's mode and active model for
its live sessions here (``AnomalyBackend.refresh``): from their next window on they judge
under it. Every ``check_interval_s`` (60 s) the watch also re-reads every device with live
sessions: a message lost while Redis restarted costs at most that long, and a model the
alerting worker has just trained reaches the sessions the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from dataclasses import dataclass

from fastapi import Request

from services.gateway.session_anomaly import AnomalyBackend
from shared.anomaly.policy import AnomalyPolicy
from shared.pubsub import ChannelWatch, LocalChannel, RedisChannel

log = logging.getLogger(__name__)

CHANNEL = "hearo:device-modes"
CHECK_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ModeChanged:
    """``device_id``'s listening mode changed: read it again."""

    device_id: str

    def to_json(self) -> str:
        return json.dumps({"device_id": self.device_id})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ModeChanged:
        device_id = json.loads(raw)["device_id"]
        uuid.UUID(device_id)  # a ValueError for anything else
        return cls(device_id)


ModeChannel = LocalChannel[ModeChanged] | RedisChannel[ModeChanged]


def create_mode_channel(redis_url: str) -> ModeChannel:
    """Redis pub/sub when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisChannel(redis_url, CHANNEL, ModeChanged.to_json, ModeChanged.from_json)
    return LocalChannel()


def mode_changes_of(request: Request) -> ModeChannel:
    """The app's channel: ``create_app`` sets ``app.state.mode_changes``."""
    channel: ModeChannel = request.app.state.mode_changes
    return channel


def anomaly_policy_of(request: Request) -> AnomalyPolicy:
    """The app's anomaly policy (``app.state.anomaly_policy``; the default when unset)."""
    policy: AnomalyPolicy = getattr(request.app.state, "anomaly_policy", AnomalyPolicy())
    return policy


class ModeWatch(ChannelWatch[ModeChanged]):
    """Sets live sessions' mode and model: on each :class:`ModeChanged`, and by a periodic read."""

    def __init__(self, backend: AnomalyBackend, channel: ModeChannel, check_interval_s: float = CHECK_INTERVAL_S) -> None:
        super().__init__("modes", channel, check_interval_s)
        self.backend = backend

    async def heard(self, message: ModeChanged) -> None:
        try:
            await self.backend.refresh({uuid.UUID(message.device_id)})
        except Exception as error:  # the database is away: the periodic read will do
            log.warning("device %s: listening mode not re-read: %s", message.device_id, error)

    async def check(self) -> None:
        await self.backend.refresh(self.backend.devices())
