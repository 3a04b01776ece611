"""A streaming session's incidents: opened on detections, followed to their outcome, clipped.

The incident lifecycle itself lives in ``shared.incidents`` (docs/incidents.md); this is
what one ``/v1/stream`` session does with it:

* ``open`` on each detection, as work of its own in detection order (the session does not
  wait for the database to go on classifying): ``open_incident`` makes a pending incident
  with its countdown, or adds the detection as evidence to the device's open one;
  ``announce`` then tells the client (an ``incident`` message) and starts following it;
* following: one task per unresolved incident the session knows of pushes each change
  of state or deadline (``IncidentWatcher``: pushed events, database polls as backstop)
  until cancelled, dispatched or failed;
* clips: for each incident the session opened, 10 s before to 20 s after the detection is
  cut and archived (``services.gateway.session_clips``);
* ``cancel`` / ``confirm`` from the client are answered truthfully (``already_reported``
  when the deadline won).

``close`` stops following and never touches an incident: a disconnect is not a cancel.

Each incident is opened with the session's token checked against the database in the same
transaction: a session whose token was rotated, or whose device was deleted, never opens an
incident, even if the revocation event never reached this gateway (``open`` raises
:class:`TokenRevoked`).
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Coroutine, Mapping, Sequence
from typing import TYPE_CHECKING, Any, TypeVar

from services.gateway.device_thresholds import DeviceThresholds
from services.gateway.incident_messages import incident_message, update_message
from services.gateway.metrics import GATEWAY_METRICS
from services.gateway.ring_buffer import RingBuffer
from services.gateway.session_clips import SessionClips
from shared.clips import ClipStore
from shared.db import Database, Device, retry_when_busy
from shared.detector import DetectionEvent
from shared.incident_events import IncidentEvents
from shared.incident_state import ActionOutcome, CancelKind, IncidentAction, IncidentKind, IncidentState
from shared.incident_watcher import IncidentWatcher
from shared.incidents import (
    COUNTDOWN_S,
    SAME_EVENT_S,
    WRITE_RETRY_S,
    ActionResult,
    DeviceTokenChanged,
    EvidencePolicy,
    IncidentView,
    IncidentLocation as Location,
    OpenedIncident,
    ScorePoint,
    act_on_incident,
    open_incident,
)
from shared.protocol import CancelMessage, ConfirmMessage, ErrorCode, ErrorMessage, IncidentMessage, Message

if TYPE_CHECKING:  # the household and anomaly machinery run sessions' work through this backend
    from services.gateway.session_anomaly import AnomalyBackend
    from services.gateway.session_household import HouseholdFusion

log = logging.getLogger(__name__)

T = TypeVar("T")
Send = Callable[[Message], Awaitable[None]]


class TokenRevoked(Exception):
    """The session's token is no longer its device's; ``current_token_hash`` is the hash of
    the device's token now, None when the device is gone."""

    def __init__(self, current_token_hash: str | None) -> None:
        super().__init__("the session's device token was revoked")
        self.current_token_hash = current_token_hash


class IncidentBackend:
    """The gateway process's incident machinery, shared by its sessions.

    ``spawn`` runs work that must outlive the session that starts it (clip archiving, an
    incident being opened when the client leaves); ``drain`` waits for it at shutdown.

    >>> backend = IncidentBackend(db, events, watcher, clip_store, countdown_s=60)
    >>> registry = SessionRegistry(settings, inference_client, authenticate, spec, backend)
    """

    def __init__(
        self,
        db: Database,
        events: IncidentEvents,
        watcher: IncidentWatcher,
        clip_store: ClipStore,
        countdown_s: float = COUNTDOWN_S,
        evidence: EvidencePolicy = EvidencePolicy(),
        household: HouseholdFusion | None = None,
        learning: DeviceThresholds | None = None,
        countdowns: Mapping[IncidentKind, float] | None = None,  # a kind's own countdown (else countdown_s)
        anomaly: AnomalyBackend | None = None,
        same_event_s: float = SAME_EVENT_S,  # a report's class heard again this soon is the same event
        write_retry_s: float = WRITE_RETRY_S,  # how long a detection's write outlasts an unreachable database
    ) -> None:
        self.evidence = evidence  # what a session does with what it hears during a countdown
        self.household = household  # the devices of one home corroborate each other (None: off)
        self.learning = learning  # what the device's false-alarm cancels teach its thresholds (None: nothing)
        self.anomaly = anomaly  # away and alone modes: learning, judging, activity (None: off)
        self.db = db
        self.events = events
        self.watcher = watcher
        self.clip_store = clip_store
        self.countdown_s = countdown_s
        self.countdowns = dict(countdowns or {})
        self.same_event_s = same_event_s
        self.write_retry_s = write_retry_s
        self._tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, work: Coroutine[Any, Any, T], name: str) -> asyncio.Task[T]:
        task = asyncio.create_task(work, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def drain(self, timeout_s: float) -> None:
        """Wait up to ``timeout_s`` for the spawned work, then cancel what is left."""
        if not self._tasks:
            return
        _, late = await asyncio.wait(set(self._tasks), timeout=timeout_s)
        for task in late:
            log.warning("incident work %s cut short by shutdown", task.get_name())
            task.cancel()
        if late:
            await asyncio.wait(late)


class SessionIncidents:
    """The incidents of one session's device as that session sees them (module docstring)."""

    def __init__(
        self, backend: IncidentBackend, device: Device, session_id: str, send: Send, *, token_hash: str
    ) -> None:
        self.backend = backend
        self.device = device
        self.token_hash = token_hash  # of the token the session was opened with
        self.session_id = session_id
        self._send = send
        self._followers: dict[str, asyncio.Task[None]] = {}
        self._told: dict[str, tuple[Any, ...]] = {}  # the (state, deadline, evidence) the client last heard
        self.clips = SessionClips(backend, session_id)
        self._opening: asyncio.Task[OpenedIncident | None] | None = None  # the latest detection's
        self._closed = False

    @property
    def unresolved(self) -> bool:
        """Some incident the session follows is not yet cancelled, dispatched or failed."""
        return any(not task.done() for task in self._followers.values())

    async def wait_resolved(self) -> None:
        """Return once every followed incident has reached a final state."""
        while pending := [task for task in self._followers.values() if not task.done()]:
            await asyncio.wait(pending)

    # --- detections ----------------------------------------------------------------------

    def open(
        self, event: DetectionEvent, scores: Sequence[ScorePoint], location: Location | None,
        signature: list[float] | None = None,
    ) -> asyncio.Task[OpenedIncident | None]:
        """Start recording ``event`` as an incident (or as evidence), with the ``signature`` of
        its sound (kept by a new incident), and return the work: its result is None when the
        database failed; it raises :class:`TokenRevoked` when the session's token is no longer valid.

        The work runs after the session's earlier detections' (so a detection is evidence of
        the incident an earlier one opened) and to its end even if the session ends
        meanwhile (``IncidentBackend.spawn``): no detection is lost, none is written twice,
        and an incident that was opened always gets its clip. The caller need not wait for
        it: the session goes on classifying.
        """
        work = self.backend.spawn(
            self._open_after(self._opening, event, scores, location, signature),
            name=f"session-{self.session_id}-open-incident",
        )
        work.add_done_callback(_retrieved)  # read by the session's reporter, unless it ended first
        self._opening = work
        return work

    async def _open_after(
        self,
        earlier: asyncio.Task[OpenedIncident | None] | None,
        event: DetectionEvent,
        scores: Sequence[ScorePoint],
        location: Location | None,
        signature: list[float] | None,
    ) -> OpenedIncident | None:
        if earlier is not None:
            await asyncio.wait({earlier})
        return await self._open(event, scores, location, signature)

    async def _open(
        self, event: DetectionEvent, scores: Sequence[ScorePoint], location: Location | None, signature: list[float] | None
    ) -> OpenedIncident | None:
        began = time.monotonic()
        try:
            # The token is checked in the incident's own transaction: a session whose token was
            # rotated, or whose device was deleted, writes nothing.
            # SQLite's lock may stay busy past its timeout on an overloaded box, and PostgreSQL
            # may be failing over: a detection is tried again rather than lost (a retry after a
            # commit whose answer was lost finds that incident and adds to it).
            opened = await retry_when_busy(lambda: open_incident(
                self.backend.db,
                device_id=self.device.id,
                class_key=event.emergency_class.key,
                confidence=event.confidence,
                scores=scores,
                location=location,
                session_id=self.session_id,
                countdown_s=self.backend.countdowns.get(event.kind, self.backend.countdown_s),
                events=self.backend.events,
                sound_signature=signature,
                kind=event.kind,
                token_hash=self.token_hash,
                same_event_s=self.backend.same_event_s,
            ), unreachable_for_s=self.backend.write_retry_s)
        except DeviceTokenChanged as changed:
            log.info("session %s: device %s token revoked; no incident opened", self.session_id, self.device.id)
            raise TokenRevoked(changed.current_token_hash) from None
        except Exception:
            log.exception("session %s: the %s detection could not be recorded", self.session_id,
                          event.emergency_class.key)  # fmt: skip
            return None
        finally:
            GATEWAY_METRICS.incident_opened(time.monotonic() - began)
        if opened.created:
            self.clip_due(opened.incident.id, event.stream_time_s)
        log.info("session %s: %s incident %s (%s, %.2f)", self.session_id,
                 "opened" if opened.created else "evidence for", opened.incident.id,
                 event.emergency_class.key, event.confidence)  # fmt: skip
        return opened

    async def announce(self, opened: OpenedIncident) -> None:
        """Tell the client where the incident of a detection stands, and follow it."""
        view = opened.incident
        if view.state.is_final and view.state is not IncidentState.DISPATCHED:
            return  # settled as the device sees it (held by a report under duress): nothing to tell
        # A dispatched one was joined by the same event going on: told, so the client shows the
        # report it belongs to and no new countdown.
        detail: dict[str, Any] = {"event": "opened" if opened.created else "evidence", "class": view.class_key}
        if not opened.created:
            detail["detections"] = view.detections
        if view.also_detected:  # reported to their agencies too (docs/incidents.md, "Routing")
            detail["also_detected"] = list(view.also_detected)
        await self._tell(incident_message(view, detail), always=True)
        self.follow(view)

    # --- the client's cancel and confirm ----------------------------------------------------

    async def _carry_out(
        self, key: uuid.UUID, action: IncidentAction, reason: str | None, kind: CancelKind | None, code: str | None
    ) -> ActionResult | None:
        """``act_on_incident``; None (logged) when it failed."""
        try:
            return await act_on_incident(
                self.backend.db, key, action, device_id=self.device.id, reason=reason, kind=kind, code=code,
                events=self.backend.events, learning=self.backend.learning,
            )
        except Exception:
            log.exception("session %s: %s of %s failed", self.session_id, action, key)
            return None

    async def act(self, message: CancelMessage | ConfirmMessage) -> None:
        """Answer a ``cancel`` or ``confirm``: an ``incident`` message with the truth, or
        ``unknown_incident``."""
        action = IncidentAction(message.type)
        reason = message.reason if isinstance(message, CancelMessage) else None
        kind = message.kind if isinstance(message, CancelMessage) else None
        code = message.code if isinstance(message, CancelMessage) else None
        key = _incident_uuid(message.incident_id)
        if key is None:
            await self._send(_unknown(message.incident_id))
            return
        # Carried out to its end even if the session ends meanwhile (shielded, in the backend's
        # drained work): the user's cancel or confirm is not lost, and a cancellation inside a
        # database call would leave asyncpg's connection half-closed.
        work = self.backend.spawn(
            self._carry_out(key, action, reason, kind, code), name=f"session-{self.session_id}-{action.value}"
        )
        result = await asyncio.shield(work)
        if result is None:
            await self._send(_not_recorded(action))
            return
        if result.outcome is ActionOutcome.NOT_FOUND or result.incident is None:
            await self._send(_unknown(message.incident_id))
            return
        detail: dict[str, Any] = {
            "event": action.value, "outcome": result.outcome.value, "message": result.outcome.message
        }
        if action is IncidentAction.CANCEL and result.incident.cancel_reason:
            detail["reason"] = result.incident.cancel_reason
        if action is IncidentAction.CANCEL and result.incident.cancel_kind:
            detail["kind"] = result.incident.cancel_kind.value
        await self._tell(incident_message(result.incident, detail), always=True)
        self.follow(result.incident)

    # --- following ---------------------------------------------------------------------------

    def follow(self, view: IncidentView) -> None:
        """Push the changes of ``view``'s incident to the client until it is final."""
        key = str(view.id)
        running = self._followers.get(key)
        if self._closed or view.state.is_final or (running is not None and not running.done()):
            return
        known = (view.state, view.deadline_at.isoformat())
        self._followers[key] = asyncio.create_task(
            self._follow(view.id, known), name=f"session-{self.session_id}-follow-{key}"
        )

    async def _follow(self, incident_id: uuid.UUID, known: tuple[IncidentState, str]) -> None:
        while True:
            try:
                async for update in self.backend.watcher.watch(incident_id, known=known):
                    known = (update.state, update.deadline_at)
                    await self._tell(update_message(update))
                return
            except Exception as error:  # the database is away: keep following once it is back
                log.warning("session %s: following incident %s: %s", self.session_id, incident_id, error)
                await asyncio.sleep(self.backend.watcher.poll_interval_s)

    async def _tell(self, message: IncidentMessage, always: bool = False) -> None:
        # The same state reaches us twice (an answer and the event it published, or an event
        # and a poll): a pushed change (evidence mark too) is told once; answers always.
        told = (message.state, message.deadline_at.isoformat(), message.evidence)
        if not always and self._told.get(message.incident_id) == told:
            return
        self._told[message.incident_id] = told
        await self._send(message)

    # --- clips (services.gateway.session_clips) ----------------------------------------------

    def clip_due(self, incident_id: uuid.UUID, detection_s: float) -> None:
        self.clips.due(incident_id, detection_s)

    def audio_advanced(self, ring: RingBuffer) -> None:
        self.clips.audio_advanced(ring)

    def audio_ended(self, ring: RingBuffer) -> None:
        self.clips.audio_ended(ring)

    def close(self, ring: RingBuffer | None) -> None:
        """The session is over: archive the clips still due (when there was audio) and stop
        following. No incident is changed: a disconnect is never a cancel."""
        if ring is not None and not self.clips.ended:
            self.clips.audio_ended(ring)
        self._closed = True
        for task in self._followers.values():
            task.cancel()


def _retrieved(work: asyncio.Task[Any]) -> None:
    if not work.cancelled():
        work.exception()  # a TokenRevoked nobody waited for is not an asyncio error


def _incident_uuid(text: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(text)
    except ValueError:
        return None


def _unknown(incident_id: str) -> ErrorMessage:
    return ErrorMessage(code=ErrorCode.UNKNOWN_INCIDENT, message=f"this device has no incident {incident_id!r}")


def _not_recorded(action: IncidentAction) -> ErrorMessage:
    return ErrorMessage(
        code=ErrorCode.INCIDENT_UNAVAILABLE,
        message=f"the {action} could not be recorded; try again (or POST /v1/incidents/<id>/{action})",
    )
