"""A session's detections, told to its client: a ``detection`` message each, with the
incident it opened or joined (and that incident's countdown when it opened one).

Recording an incident is a database write, and a slow database must not hold up the
classification of the next windows: ``report`` starts the write (``SessionIncidents.open``,
which keeps detection order) and returns; the reporter's own task waits for each write in
turn and then tells the client, so the messages keep the order of the detections. A write
that failed is told as today (``incident_unavailable``); a token found revoked ends the
session (``SessionFatal``, ``token_revoked``) after the registry has ended the device's other
stale sessions. Without incidents a detection is told at once.

With incidents the reporter also keeps listening during their countdowns (``listen``: a
``CountdownEvidence`` the classifier feeds), and tells it each incident as its write returns.
A device of a household also posts what it hears to its home's board (``household``: a
``HouseholdListening`` the classifier feeds), and each incident it opens is then corroborated
by the home's other devices, as work of its own (``services.gateway.session_household``).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from services.gateway.metrics import GATEWAY_METRICS
from services.gateway.session_anomaly import SessionAnomaly
from services.gateway.session_evidence import CountdownEvidence
from services.gateway.session_household import HouseholdListening
from services.gateway.session_incidents import SessionIncidents, TokenRevoked
from services.gateway.session_spoken import SessionSpoken
from services.gateway.session_state import REVOKED_MESSAGE, SessionFatal
from shared.detector import DetectionEvent, DetectorConfig
from shared.incidents import IncidentLocation, OpenedIncident, ScorePoint
from shared.protocol import DetectionMessage, ErrorCode, ErrorMessage, Message

Send = Callable[[Message], Awaitable[None]]


@dataclass(frozen=True)
class _Opening:
    event: DetectionEvent
    work: asyncio.Task[OpenedIncident | None]
    incidents: SessionIncidents
    heard_at: float | None  # when its audio arrived (epoch seconds), for a household device


class DetectionReporter:
    """Tells one session's client of its detections; ``start`` its task, ``report`` each
    detection, ``finish`` at the end of the stream (it waits for the writes begun).

    ``revoked`` is called with the device's current token hash (None: the device is gone)
    when a write finds the session's token revoked.
    """

    def __init__(
        self, send: Send, incidents: SessionIncidents | None, revoked: Callable[[str | None], object]
    ) -> None:
        self._send = send
        self._incidents = incidents
        self._revoked = revoked
        self._openings: asyncio.Queue[_Opening | None] = asyncio.Queue()
        self._task: asyncio.Task[None] | None = None
        self._evidence: CountdownEvidence | None = None
        self._household: HouseholdListening | None = None
        self._anomaly: SessionAnomaly | None = None
        self.detections = 0

    def listen(
        self, config: DetectorConfig, session_id: str, spoken: SessionSpoken | None = None
    ) -> CountdownEvidence | None:
        """The evidence of this session's incidents' countdowns (None without incidents), for
        the classifier to feed with what it hears under the detector's ``config``; ``spoken``
        names the distress phrases heard around each incident."""
        if self._incidents is not None and self._evidence is None:
            self._evidence = CountdownEvidence(self._incidents.backend, config, session_id, spoken)
        return self._evidence

    def household(self, config: DetectorConfig, session_id: str) -> HouseholdListening | None:
        """What this session posts to its home's board and how its incidents are corroborated
        (None without incidents, household fusion or a household), for the classifier to feed."""
        incidents = self._incidents
        fusion = None if incidents is None else incidents.backend.household
        if self._household is None and fusion is not None and incidents is not None and incidents.device.household_id:
            self._household = HouseholdListening(fusion, incidents.backend, incidents.device, config, session_id, self._send)
        return self._household

    def anomaly(self) -> SessionAnomaly | None:
        """What this session learns of its home's sound and judges in away or alone mode (None
        without incidents or with the anomaly policy off), for the classifier to feed."""
        incidents = self._incidents
        backend = None if incidents is None else incidents.backend.anomaly
        if self._anomaly is None and backend is not None and incidents is not None:
            self._anomaly = backend.listen(incidents)
        return self._anomaly

    def start(self, name: str) -> asyncio.Task[None]:
        """The task that tells the client, in order, of the detections whose incidents were written."""
        if self._task is not None:
            raise RuntimeError("the reporter has already started")
        self._task = asyncio.create_task(self._tell_in_order(), name=name)
        return self._task

    async def report(
        self, event: DetectionEvent, timeline: list[ScorePoint], location: IncidentLocation | None,
        signature: list[float] | None = None,
    ) -> None:
        """Report ``event`` (``signature``: its sound's, kept with the incident it opens); with
        incidents, its write is started and the message waits for it."""
        self.detections += 1
        if self._incidents is None:
            await self._tell(event, None)
            return
        work = self._incidents.open(event, timeline, location, signature)
        heard_at = None if self._household is None else self._household.wall_time(event.stream_time_s)
        self._openings.put_nowait(_Opening(event, work, self._incidents, heard_at))

    async def finish(self) -> None:
        """Wait until every detection reported is told (re-raises what ended the reporter)."""
        if self._task is None:
            return
        self._openings.put_nowait(None)
        await asyncio.wait({self._task})
        self._task.result()
        if self._evidence is not None:
            self._evidence.finish()
        if self._anomaly is not None:
            self._anomaly.finish()

    async def _tell_in_order(self) -> None:
        while (opening := await self._openings.get()) is not None:
            # ``wait``, not ``await``: the write must outlive this task if it is cancelled.
            await asyncio.wait({opening.work})
            try:
                opened = opening.work.result()
            except TokenRevoked as revoked:
                # The backstop of the revocation events: this and the device's other stale
                # sessions end, and nothing is reported on a revoked token.
                self._revoked(revoked.current_token_hash)
                raise SessionFatal(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE) from None
            await self._tell(opening.event, opened)
            if self._evidence is not None:
                self._evidence.attach(opening.event, opened)
            if self._household is not None and opening.heard_at is not None and opened is not None and opened.created:
                self._household.corroborate(opened.incident.class_key, opening.heard_at, opened.incident.id)
            if opened is not None:
                await opening.incidents.announce(opened)
            else:
                await self._send(
                    ErrorMessage(
                        code=ErrorCode.INCIDENT_UNAVAILABLE,
                        message="this detection could not be recorded as an incident and will not be "
                        "reported; call 112/119 directly if you need help",
                    )
                )

    async def _tell(self, event: DetectionEvent, opened: OpenedIncident | None) -> None:
        await self._send(detection_message(event, opened))
        GATEWAY_METRICS.detection(event.emergency_class.key)


def detection_message(event: DetectionEvent, opened: OpenedIncident | None) -> DetectionMessage:
    """The ``detection`` message of ``event``; only the detection that opened its incident
    carries the countdown."""
    cls = event.emergency_class
    countdown = opened.incident if opened is not None and opened.created else None
    return DetectionMessage(
        detection_id=uuid.uuid4().hex,
        class_=cls.key,
        class_id=cls.id,
        label_en=cls.label_en,
        label_ko=cls.label_ko,
        confidence=round(event.confidence, 4),
        stream_time_s=round(event.stream_time_s, 3),
        detected_at=datetime.now(UTC),
        pattern=event.pattern,
        spoken=event.spoken,
        incident_id=str(opened.incident.id) if opened is not None else None,
        deadline_at=countdown.deadline_at if countdown is not None else None,
        seconds_left=round(countdown.seconds_left, 3) if countdown is not None else None,
        kind=event.kind if opened is None else opened.incident.kind,
    )
