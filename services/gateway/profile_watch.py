"""A device's live sessions follow its listening settings, on every gateway, within a second:
its profile (``devices.profile``: home or daycare) and its spoken languages
(``devices.spoken_languages``: whose distress phrases it listens for, docs/spoken.md).

``PATCH /v1/devices/me`` commits a new profile or languages, then publishes a
:class:`ProfileChanged` on the Redis channel :data:`CHANNEL` (in-process without Redis, as the
revocations); each gateway's :class:`ProfileWatch` hears it, reads the device's settings once,
and switches that device's sessions here (``SessionRegistry.use_profile``,
``SessionRegistry.use_languages``): from their next window on, the daycare rule listens or
stops, and from their next audio the recognisers listen for the new languages. A session
starting takes the settings its device has then.

Pub/sub keeps nothing, so every ``check_interval_s`` (60 s) the watch also reads the settings
of every device with open sessions (one query): a message lost while Redis restarted costs at
most that long. The same settings again change nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection
from dataclasses import dataclass

from fastapi import Request
from sqlalchemy import select

from services.gateway.session_registry import SessionRegistry
from shared.db import Database, Device
from shared.device_modes import DeviceProfile
from shared.pubsub import ChannelWatch, LocalChannel, RedisChannel

log = logging.getLogger(__name__)

CHANNEL = "hearo:device-profile"
CHECK_INTERVAL_S = 60.0


@dataclass(frozen=True)
class ProfileChanged:
    """``device_id``'s profile or spoken languages changed: read them again."""

    device_id: str

    def to_json(self) -> str:
        return json.dumps({"device_id": self.device_id})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ProfileChanged:
        device_id = json.loads(raw)["device_id"]
        uuid.UUID(device_id)  # a ValueError for anything else
        return cls(device_id)


ProfileChannel = LocalChannel[ProfileChanged] | RedisChannel[ProfileChanged]


def create_profile_channel(redis_url: str) -> ProfileChannel:
    """Redis pub/sub when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisChannel(redis_url, CHANNEL, ProfileChanged.to_json, ProfileChanged.from_json)
    return LocalChannel()


def profile_changes_of(request: Request) -> ProfileChannel:
    """The app's channel: ``create_app`` sets ``app.state.profile_changes``."""
    channel: ProfileChannel = request.app.state.profile_changes
    return channel


async def listening_settings(
    db: Database, device_ids: Collection[uuid.UUID]
) -> dict[uuid.UUID, tuple[DeviceProfile, list[str]]]:
    """The profile and spoken languages of each device that still exists."""
    if not device_ids:
        return {}
    async with db.session() as session:
        rows = await session.execute(
            select(Device.id, Device.profile, Device.spoken_languages).where(Device.id.in_(list(device_ids)))
        )
        return {device_id: (profile, list(languages)) for device_id, profile, languages in rows}


class ProfileWatch(ChannelWatch[ProfileChanged]):
    """Switches live sessions' profiles and spoken languages: on each :class:`ProfileChanged`,
    and by a periodic read."""

    def __init__(
        self, sessions: SessionRegistry, channel: ProfileChannel, db: Database, check_interval_s: float = CHECK_INTERVAL_S
    ) -> None:
        super().__init__("profiles", channel, check_interval_s)
        self.sessions = sessions
        self.db = db

    async def heard(self, message: ProfileChanged) -> None:
        device_id = uuid.UUID(message.device_id)
        if not self.sessions.sessions_of(device_id):
            return
        try:
            await self.apply({device_id})
        except Exception as error:  # the database is away: the periodic read will do
            log.warning("device %s: profile and languages not re-read: %s", device_id, error)

    async def check(self) -> None:
        await self.apply({session.device.id for session in self.sessions.all()})

    async def apply(self, device_ids: set[uuid.UUID]) -> None:
        """Read the settings of ``device_ids`` and switch their sessions here."""
        for device_id, (profile, languages) in (await listening_settings(self.db, device_ids)).items():
            self.sessions.use_profile(device_id, profile)
            self.sessions.use_languages(device_id, languages)
