"""A session's latest position: kept for its incidents only when the device consented to location.

The client sends its position with ``start`` and in ``location`` messages; a device without
``consent_location`` has them dropped, and is told so once (``location_not_consented``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from shared.db import Device
from shared.incidents import IncidentLocation
from shared.protocol import ErrorCode, Location

log = logging.getLogger(__name__)


class SessionLocation:
    """One session's position (``latest``), set by ``heard`` and read by ``for_incident``."""

    def __init__(self, device: Device, session_id: str, warn: Callable[[ErrorCode, str], Awaitable[None]]) -> None:
        self.latest: Location | None = None
        self._device = device
        self._session_id = session_id
        self._warn = warn
        self._refused = False  # told the client its positions are not kept

    async def heard(self, location: Location | None) -> None:
        """Keep ``location`` as the device's latest position, if it consented to location."""
        if location is None:
            return
        if self._device.consent_location:
            self.latest = Location(lat=location.lat, lon=location.lon, accuracy_m=location.accuracy_m)
            return
        if not self._refused:
            self._refused = True
            log.warning("session %s: location sent by device %s, which has not consented to location",
                        self._session_id, self._device.id)  # fmt: skip
            await self._warn(
                ErrorCode.LOCATION_NOT_CONSENTED, "this device has not consented to location; its positions are not kept"
            )

    def for_incident(self) -> IncidentLocation | None:
        """The position to record with an incident; None leaves the report to the registered
        location (labelled as such) when consented."""
        if self.latest is None:
            return None
        return IncidentLocation(self.latest.lat, self.latest.lon, self.latest.accuracy_m or 0.0)
