"""A device's live sessions follow its learned thresholds, on every gateway, within a second.

A step or an undo (:class:`~services.gateway.device_thresholds.DeviceThresholds`) commits,
then publishes a :class:`~services.gateway.device_thresholds.ThresholdsChanged`; each gateway's
:class:`ThresholdWatch` hears it, reads the device's learned thresholds once, and retunes the
detectors of that device's sessions here (``SessionRegistry.retune``): from their next window
on, the scores are judged against them. A session starting reads them itself
(``SessionRegistry.detector_for``).

Pub/sub keeps nothing, so every ``check_interval_s`` (60 s) the watch also reads the learned
thresholds of every device with open sessions (one query) and retunes them: a message lost
while Redis restarted costs at most that long. Retuning to the same values changes nothing.
"""

from __future__ import annotations

import logging
import uuid

from services.gateway.device_thresholds import DeviceThresholds, ThresholdChannel, ThresholdsChanged
from services.gateway.session_registry import SessionRegistry
from shared.pubsub import ChannelWatch

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 60.0


class ThresholdWatch(ChannelWatch[ThresholdsChanged]):
    """Retunes live sessions: on each :class:`ThresholdsChanged`, and by a periodic read."""

    def __init__(
        self,
        sessions: SessionRegistry,
        channel: ThresholdChannel,
        thresholds: DeviceThresholds,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        super().__init__("thresholds", channel, check_interval_s)
        self.sessions = sessions
        self.thresholds = thresholds

    async def heard(self, message: ThresholdsChanged) -> None:
        device_id = uuid.UUID(message.device_id)
        if not self.sessions.sessions_of(device_id):
            return
        try:
            await self.retune({device_id})
        except Exception as error:  # the database is away: the periodic read will do
            log.warning("device %s: thresholds not re-read: %s", device_id, error)

    async def check(self) -> None:
        await self.retune({session.device.id for session in self.sessions.all()})

    async def retune(self, device_ids: set[uuid.UUID]) -> None:
        """Read the learned thresholds of ``device_ids`` and retune their sessions here."""
        learned = await self.thresholds.learned(device_ids)
        for device_id in device_ids:
            self.sessions.retune(device_id, learned.get(device_id, {}))
