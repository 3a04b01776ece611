"""A streaming session's incident clips: cut from its ring buffer, archived in the background.

For each incident the session opened (``due``), 10 s before to 20 s after the detection is cut
from the ring buffer once the 20 s have been heard (``audio_advanced``), or with whatever is
held when the audio ends (``audio_ended``: ``stop`` or a disconnect), and archived by a
background task of the gateway (``IncidentBackend.spawn``), so neither the audio path nor the
session's end waits for the encoding and the store. A clip whose incident was deleted with its
device meanwhile is dropped, never stored.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import TYPE_CHECKING, Any

from sqlalchemy import select

from services.gateway.ring_buffer import RingBuffer
from shared.clips import CLIP_AFTER_S, CLIP_BEFORE_S
from shared.db.models import Incident
from shared.incidents import archive_clip

if TYPE_CHECKING:
    from services.gateway.session_incidents import IncidentBackend

log = logging.getLogger(__name__)

_ARCHIVE_ATTEMPTS = 3
_ARCHIVE_RETRY_S = 1.0


class SessionClips:
    """The clips one session owes (module docstring)."""

    def __init__(self, backend: IncidentBackend, session_id: str) -> None:
        self.backend = backend
        self.session_id = session_id
        self._due: dict[uuid.UUID, float] = {}  # incident -> detection stream time
        self._ended: RingBuffer | None = None  # the audio is over; clips are cut from this

    @property
    def ended(self) -> bool:
        return self._ended is not None

    def due(self, incident_id: uuid.UUID, detection_s: float) -> None:
        """The incident opened at stream time ``detection_s`` gets its clip."""
        self._due[incident_id] = detection_s
        if self._ended is not None:
            self._archive(self._ended, incident_id)

    def audio_advanced(self, ring: RingBuffer) -> None:
        """After each push of audio: archive the clips whose 20 s after the detection are in."""
        for incident_id, detection_s in list(self._due.items()):
            if ring.end_s >= detection_s + CLIP_AFTER_S:
                self._archive(ring, incident_id)

    def audio_ended(self, ring: RingBuffer) -> None:
        """No more audio (``stop`` or the client left): archive every clip with what is held."""
        self._ended = ring
        for incident_id in list(self._due):
            self._archive(ring, incident_id)

    def _archive(self, ring: RingBuffer, incident_id: uuid.UUID) -> None:
        detection_s = self._due.pop(incident_id)
        clip = ring.snapshot(CLIP_BEFORE_S + CLIP_AFTER_S, end_s=detection_s + CLIP_AFTER_S)
        if clip.duration_s == 0:
            log.warning("session %s: no audio left for the clip of incident %s", self.session_id, incident_id)
            return
        self.backend.spawn(
            self._store(incident_id, clip.samples, clip.sample_rate, detection_s - clip.start_s),
            name=f"archive-clip-{incident_id}",
        )

    async def _store(self, incident_id: uuid.UUID, samples: Any, sample_rate: int, before_s: float) -> None:
        for attempt in range(1, _ARCHIVE_ATTEMPTS + 1):
            try:
                if not await self._incident_exists(incident_id):
                    # Deleted with its device: its audio must not be stored after all.
                    log.info("incident %s: deleted with its device; its clip is dropped", incident_id)
                    return
                info = await archive_clip(self.backend.db, self.backend.clip_store, incident_id, samples, sample_rate)
            except Exception:
                if attempt == _ARCHIVE_ATTEMPTS:
                    log.exception("incident %s: the clip could not be archived", incident_id)
                    return
                await asyncio.sleep(_ARCHIVE_RETRY_S * attempt)
                continue
            log.info("incident %s: clip archived (%.1f s, %.1f s before the detection)", incident_id,
                     info.duration_s, before_s)  # fmt: skip
            return

    async def _incident_exists(self, incident_id: uuid.UUID) -> bool:
        async with self.backend.db.session() as session:
            return await session.scalar(select(Incident.id).where(Incident.id == incident_id)) is not None
