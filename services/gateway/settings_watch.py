"""A device's live sessions follow its listening settings, on every gateway, within a second.

The settings: its profile (``devices.profile``: home or daycare, docs/daycare.md), its spoken
languages (``devices.spoken_languages``: whose distress phrases it listens for, docs/spoken.md),
and its listening mode with its anomaly model (``devices.listening_mode``, docs/anomaly.md).

``PATCH /v1/devices/me`` commits a change to any of them, then publishes one
:class:`SettingsChanged` on the Redis channel :data:`CHANNEL` (in-process without Redis, as the
revocations). Each gateway's :class:`SettingsWatch` hears it and asks each of its followers to
read that device again: :class:`ProfileAndLanguages` switches the sessions' daycare rule and
recognisers (``SessionRegistry.use_profile``, ``use_languages``), and the anomaly backend
(``services.gateway.session_anomaly.AnomalyBackend``) their mode and model, from their next
window on. A session starting takes the settings its device has then.

Pub/sub keeps nothing, so every ``check_interval_s`` (60 s) the watch also has each follower
read every device it has live sessions of (one query each): a message lost while Redis restarted
costs at most that long, and a model the alerting worker has just trained reaches the sessions
the same way. The same settings again change nothing.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol

from fastapi import Request
from sqlalchemy import select

from services.gateway.session_registry import SessionRegistry
from shared.db import Database, Device
from shared.device_modes import DeviceProfile
from shared.pubsub import ChannelWatch, LocalChannel, RedisChannel

log = logging.getLogger(__name__)

CHANNEL = "hearo:device-settings"
CHECK_INTERVAL_S = 60.0


@dataclass(frozen=True)
class SettingsChanged:
    """``device_id``'s listening settings changed: read them again."""

    device_id: str

    def to_json(self) -> str:
        return json.dumps({"device_id": self.device_id})

    @classmethod
    def from_json(cls, raw: str | bytes) -> SettingsChanged:
        device_id = json.loads(raw)["device_id"]
        uuid.UUID(device_id)  # a ValueError for anything else
        return cls(device_id)


SettingsChannel = LocalChannel[SettingsChanged] | RedisChannel[SettingsChanged]


def create_settings_channel(redis_url: str) -> SettingsChannel:
    """Redis pub/sub when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisChannel(redis_url, CHANNEL, SettingsChanged.to_json, SettingsChanged.from_json)
    return LocalChannel()


def settings_changes_of(request: Request) -> SettingsChannel:
    """The app's channel: ``create_app`` sets ``app.state.settings_changes``."""
    channel: SettingsChannel = request.app.state.settings_changes
    return channel


class SettingsFollower(Protocol):
    """Something live sessions take from the device's settings."""

    def devices(self) -> set[uuid.UUID]:
        """The devices it has live sessions of here."""

    async def refresh(self, device_ids: set[uuid.UUID]) -> None:
        """Read the settings of ``device_ids`` and switch their sessions here."""


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


class ProfileAndLanguages:
    """Follows the profile (the daycare rule) and the spoken languages (the recognisers)."""

    def __init__(self, sessions: SessionRegistry, db: Database) -> None:
        self.sessions = sessions
        self.db = db

    def devices(self) -> set[uuid.UUID]:
        return {session.device.id for session in self.sessions.all()}

    async def refresh(self, device_ids: set[uuid.UUID]) -> None:
        live = {device_id for device_id in device_ids if self.sessions.sessions_of(device_id)}
        for device_id, (profile, languages) in (await listening_settings(self.db, live)).items():
            self.sessions.use_profile(device_id, profile)
            self.sessions.use_languages(device_id, languages)


class SettingsWatch(ChannelWatch[SettingsChanged]):
    """Has each follower re-read a device: on each :class:`SettingsChanged`, and periodically."""

    def __init__(
        self, followers: Sequence[SettingsFollower], channel: SettingsChannel,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:  # fmt: skip
        super().__init__("settings", channel, check_interval_s)
        self.followers = list(followers)

    async def heard(self, message: SettingsChanged) -> None:
        device_id = uuid.UUID(message.device_id)
        for follower in self.followers:
            try:
                await follower.refresh({device_id})
            except Exception as error:  # the database is away: the periodic read will do
                log.warning("device %s: settings not re-read by %s: %s", device_id, type(follower).__name__, error)

    async def check(self) -> None:
        for follower in self.followers:
            await follower.refresh(follower.devices())
