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

import asyncio
import contextlib
import logging
import uuid
from collections.abc import AsyncIterator

from services.gateway.device_thresholds import DeviceThresholds, ThresholdChannel, ThresholdsChanged
from services.gateway.session_registry import SessionRegistry

log = logging.getLogger(__name__)

CHECK_INTERVAL_S = 60.0


class ThresholdWatch:
    """Retunes live sessions: on each :class:`ThresholdsChanged`, and by a periodic read."""

    def __init__(
        self,
        sessions: SessionRegistry,
        channel: ThresholdChannel,
        thresholds: DeviceThresholds,
        check_interval_s: float = CHECK_INTERVAL_S,
    ) -> None:
        self.sessions = sessions
        self.channel = channel
        self.thresholds = thresholds
        self.check_interval_s = check_interval_s
        self._exit = contextlib.AsyncExitStack()
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        """Subscribe (changes published from now on are heard) and start the periodic reads."""
        messages = await self._exit.enter_async_context(self.channel.subscribe())
        self._tasks = [
            asyncio.create_task(self._listen(messages), name="hearo-threshold-changes"),
            asyncio.create_task(self._check(), name="hearo-threshold-checks"),
        ]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        if self._tasks:
            await asyncio.wait(self._tasks)
        await self._exit.aclose()

    async def _listen(self, messages: AsyncIterator[ThresholdsChanged]) -> None:
        async for changed in messages:
            device_id = uuid.UUID(changed.device_id)
            if not self.sessions.sessions_of(device_id):
                continue
            try:
                await self.retune({device_id})
            except Exception as error:  # the database is away: the periodic read will do
                log.warning("device %s: thresholds not re-read: %s", device_id, error)

    async def _check(self) -> None:
        while True:
            await asyncio.sleep(self.check_interval_s)
            try:
                await self.retune({session.device.id for session in self.sessions.all()})
            except Exception as error:
                log.warning("threshold check failed: %s", error)

    async def retune(self, device_ids: set[uuid.UUID]) -> None:
        """Read the learned thresholds of ``device_ids`` and retune their sessions here."""
        learned = await self.thresholds.learned(device_ids)
        for device_id in device_ids:
            self.sessions.retune(device_id, learned.get(device_id, {}))
