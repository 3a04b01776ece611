"""Revocation: a rotated or deleted device token ends that device's open sessions, on every
gateway, within about a second.

``POST /v1/devices/me/token`` and ``DELETE /v1/devices/me`` commit, then publish a
:class:`DeviceRevoked` (the device, and the hash of its token now, None once deleted) on the
Redis channel :data:`CHANNEL` of ``HEARO_REDIS_URL`` (in-process when there is none, as the
incident updates). Each gateway's :class:`RevocationWatch` hears it and
``SessionRegistry.revoke`` closes that device's sessions opened with another token (fatal
``token_revoked``, close 4001).

Pub/sub keeps nothing, so two backstops stand behind a lost message: every
``token_check_interval_s`` (5 s) the watch reads the current token of every device with open
sessions (one query) and ends the stale ones, and no session opens an incident before its
token has been checked (``session_incidents``).
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from dataclasses import asdict, dataclass

from fastapi import Request

from services.gateway.auth import current_token_hashes
from services.gateway.session_registry import SessionRegistry
from shared.db import Database
from shared.pubsub import ChannelWatch, LocalChannel, RedisChannel

log = logging.getLogger(__name__)

CHANNEL = "hearo:device-revocations"

@dataclass(frozen=True)
class DeviceRevoked:
    """Every token of ``device_id`` but the one whose SHA-256 is ``token_hash`` is revoked;
    all of them when ``token_hash`` is None (the device was deleted)."""

    device_id: str
    token_hash: str | None

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, raw: str | bytes) -> DeviceRevoked:
        data = json.loads(raw)
        uuid.UUID(data["device_id"])  # a ValueError for anything else
        return cls(device_id=data["device_id"], token_hash=data["token_hash"])


RevocationChannel = LocalChannel[DeviceRevoked] | RedisChannel[DeviceRevoked]


def create_revocations(redis_url: str) -> RevocationChannel:
    """Redis pub/sub when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisChannel(redis_url, CHANNEL, DeviceRevoked.to_json, DeviceRevoked.from_json)
    return LocalChannel()


def revocations_of(request: Request) -> RevocationChannel:
    """The app's channel: ``create_app`` sets ``app.state.revocations``."""
    channel: RevocationChannel = request.app.state.revocations
    return channel


class RevocationWatch(ChannelWatch[DeviceRevoked]):
    """Ends the sessions of revoked tokens: on each :class:`DeviceRevoked`, and by a periodic
    check of the open sessions' tokens against the database."""

    def __init__(
        self, sessions: SessionRegistry, channel: RevocationChannel, db: Database, check_interval_s: float
    ) -> None:
        super().__init__("revocations", channel, check_interval_s)
        self.sessions = sessions
        self.db = db

    async def heard(self, message: DeviceRevoked) -> None:
        self.sessions.revoke(uuid.UUID(message.device_id), message.token_hash)

    async def check(self) -> None:
        await self.check_once()

    async def check_once(self) -> int:
        """End every open session whose token is no longer its device's; returns how many."""
        # Only sessions admitted before the read: a session opened later with a token newer
        # than what the read saw must not be taken for a stale one.
        opened = [(session, session.device.id) for session in self.sessions.all() if session.device is not None]
        if not opened:
            return 0
        started = time.monotonic()
        current = await current_token_hashes(self.db, {device_id for _, device_id in opened})
        ended = 0
        for session, device_id in opened:
            if current.get(device_id) != session.token_hash and self.sessions.end_revoked(session):
                ended += 1
        if ended:
            log.info("token check: %d sessions on revoked tokens closed (%.0f ms)", ended,
                     (time.monotonic() - started) * 1000)  # fmt: skip
        return ended
