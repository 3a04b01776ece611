"""The incident lifecycle as the gateway drives it: open, cancel or confirm, read, archive the clip.

The states and the moves between them are :mod:`shared.incident_state`'s (the alerting
worker owns the moves after ``pending``). Every move is one conditional ``UPDATE ... WHERE
state = <expected>`` built by :func:`move_incident` or :func:`move_deliveries`, so when a
cancel races the deadline exactly one of them changes the row and the other learns the
truth from what it finds: a cancel that loses answers ``already_reported``. Times come
from the database clock (:func:`shared.db.clock.db_now`), never from a process's clock.

After each committed change an :class:`~shared.incident_events.IncidentUpdate` is published
when an ``events`` bus is given; losing it loses nothing (see :mod:`shared.incident_events`).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import Update, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.clips import CONTENT_TYPE, ClipStore, clip_key, encode_flac
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import (
    AuditEntry,
    ContactNotification,
    Device,
    DispatchOutbox,
    EmergencyContact,
    Incident,
    IncidentClip,
)
from shared.incident_events import IncidentEvents, IncidentUpdate
from shared.incident_state import (
    OPEN_INCIDENT_STATES,
    ActionOutcome,
    DeliveryState,
    IncidentAction,
    IncidentState,
)
from shared.taxonomy import by_key

COUNTDOWN_S = 60.0
# An incident keeps at most this many score points (a long event keeps adding evidence).
MAX_TIMELINE_POINTS = 600


@dataclass(frozen=True)
class ScorePoint:
    """A class score ``t`` seconds from the detection (negative: before it)."""

    t: float
    score: float
    class_key: str | None = None


@dataclass(frozen=True)
class Location:
    latitude: float
    longitude: float
    accuracy_m: float


@dataclass(frozen=True)
class IncidentView:
    """An incident as read, with ``seconds_left`` to its deadline on the database clock."""

    id: uuid.UUID
    device_id: uuid.UUID
    class_key: str
    confidence: float
    state: IncidentState
    detected_at: datetime
    deadline_at: datetime
    state_changed_at: datetime
    seconds_left: float
    detections: int
    score_timeline: list[dict[str, Any]]
    trigger: str | None
    cancel_reason: str | None
    location: Location | None

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``GET /v1/incidents/{id}``)."""
        cls = by_key(self.class_key)
        return {
            "incident_id": str(self.id),
            "class": cls.key,
            "class_id": cls.id,
            "label_en": cls.label_en,
            "label_ko": cls.label_ko,
            "confidence": self.confidence,
            "state": self.state.value,
            "detected_at": self.detected_at.isoformat(),
            "deadline_at": self.deadline_at.isoformat(),
            "state_changed_at": self.state_changed_at.isoformat(),
            "seconds_left": round(self.seconds_left, 3) if self.state is IncidentState.PENDING else 0.0,
            "detections": self.detections,
            "score_timeline": self.score_timeline,
            "trigger": self.trigger,
            "cancel_reason": self.cancel_reason,
            "location": None if self.location is None else {
                "latitude": self.location.latitude,
                "longitude": self.location.longitude,
                "accuracy_m": self.location.accuracy_m,
            },
        }

    def as_update(self, detail: dict[str, Any] | None = None) -> IncidentUpdate:
        return IncidentUpdate(
            incident_id=str(self.id),
            device_id=str(self.device_id),
            state=self.state,
            deadline_at=self.deadline_at.isoformat(),
            at=self.state_changed_at.isoformat(),
            detail=detail if detail is not None else (
                {"reason": self.cancel_reason} if self.state is IncidentState.CANCELLED else {}
            ),
        )


@dataclass(frozen=True)
class OpenedIncident:
    """``created`` is False when the detection was added as evidence to an open incident."""

    incident: IncidentView
    created: bool


@dataclass(frozen=True)
class ActionResult:
    """The answer to a cancel or confirm, with the incident as it now stands (None: not found)."""

    action: IncidentAction
    outcome: ActionOutcome
    incident: IncidentView | None

    @property
    def fulfilled(self) -> bool:
        """The incident stands as the person asked (:meth:`IncidentAction.fulfilled`)."""
        return self.action.fulfilled(self.outcome)


@dataclass(frozen=True)
class ClipInfo:
    key: str
    sha256: str
    duration_s: float
    size_bytes: int
    content_type: str

    @classmethod
    def from_row(cls, clip: IncidentClip) -> ClipInfo:
        return cls(clip.key, clip.sha256, clip.duration_s, clip.size_bytes, clip.content_type)


async def open_incident(
    db: Database,
    *,
    device_id: uuid.UUID,
    class_key: str,
    confidence: float,
    scores: Sequence[ScorePoint] = (),
    location: Location | None = None,
    session_id: str | None = None,
    countdown_s: float = COUNTDOWN_S,
    events: IncidentEvents | None = None,
    actor: str = "gateway",
) -> OpenedIncident:
    """Open an incident for a detection, or add the detection to the device's open one.

    A new incident is ``pending`` with ``deadline_at`` = database now + ``countdown_s``,
    and its emergency contacts are queued a "detected" notice in the same transaction.
    The location is kept only when the device consented to location. Raises ValueError
    for an unknown or non-emergency class, LookupError for an unknown device.
    """
    cls = by_key(class_key)
    if not cls.is_emergency:
        raise ValueError(f"class {class_key!r} is not an emergency; no incident is opened for it")
    for _ in range(3):
        existing = await _add_evidence(db, device_id, class_key, confidence, scores)
        if existing is not None:
            return OpenedIncident(existing, created=False)
        try:
            view = await _insert(db, device_id, class_key, confidence, scores, location, session_id, countdown_s, actor)
        except IntegrityError:
            continue  # another detection opened one in between: add to it
        if events is not None:
            await events.publish(view.as_update())
        return OpenedIncident(view, created=True)
    raise RuntimeError(f"could not open or join an incident for device {device_id}")


async def _add_evidence(
    db: Database, device_id: uuid.UUID, class_key: str, confidence: float, scores: Sequence[ScorePoint]
) -> IncidentView | None:
    async with db.session() as session:
        # The write comes first: it takes the row (PostgreSQL) or database (SQLite) lock
        # before anything is read, so the read-modify-write of the timeline is not racy.
        row = (
            await session.execute(
                update(Incident)
                .where(Incident.device_id == device_id, Incident.state.in_(OPEN_INCIDENT_STATES))
                .values(detections=Incident.detections + 1)
                .returning(Incident.id, db_now())
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is None:
            return None
        incident_id, now = row
        incident = await session.get_one(Incident, incident_id, populate_existing=True)
        since = (now - incident.detected_at).total_seconds()
        timeline = incident.score_timeline + _points(scores, class_key, since)
        incident.score_timeline = timeline[-MAX_TIMELINE_POINTS:]
        incident.confidence = max(incident.confidence, confidence)
        add_audit(session, incident_id, "gateway", "evidence", {"class": class_key, "confidence": confidence})
        await session.flush()
        return _view(incident, now)


async def _insert(
    db: Database,
    device_id: uuid.UUID,
    class_key: str,
    confidence: float,
    scores: Sequence[ScorePoint],
    location: Location | None,
    session_id: str | None,
    countdown_s: float,
    actor: str,
) -> IncidentView:
    async with db.session() as session:
        device = await session.get(Device, device_id)
        if device is None:
            raise LookupError(f"no device {device_id}")
        kept = location if device.consent_location else None
        incident_id = uuid.uuid4()
        session.add(
            Incident(
                id=incident_id,
                device_id=device_id,
                session_id=session_id,
                class_key=class_key,
                confidence=confidence,
                score_timeline=_points(scores, class_key, 0.0)[-MAX_TIMELINE_POINTS:],
                detections=1,
                detected_at=db_now(),
                deadline_at=db_now(countdown_s),
                state=IncidentState.PENDING,
                state_changed_at=db_now(),
                latitude=kept.latitude if kept else None,
                longitude=kept.longitude if kept else None,
                location_accuracy_m=kept.accuracy_m if kept else None,
            )
        )
        await session.flush()
        await add_contact_notifications(session, incident_id, device_id, "detected")
        add_audit(session, incident_id, actor, "opened", {"class": class_key, "confidence": confidence})
        await session.flush()
        view = await _read(session, incident_id)
        assert view is not None
        return view


def _points(scores: Sequence[ScorePoint], class_key: str, offset_s: float) -> list[dict[str, Any]]:
    return [
        {"t": round(p.t + offset_s, 3), "class": p.class_key or class_key, "score": round(float(p.score), 4)}
        for p in scores
    ]


async def act_on_incident(
    db: Database,
    incident_id: uuid.UUID,
    action: IncidentAction,
    *,
    device_id: uuid.UUID | None = None,
    reason: str | None = None,
    events: IncidentEvents | None = None,
    actor: str = "device",
) -> ActionResult:
    """Cancel a pending incident (then it is never reported) or confirm it (report now: its
    deadline becomes the database's now). Exactly one of the action and the deadline wins;
    the outcome says which, with the incident as it now stands.

    ``device_id`` restricts the action to that device's incidents (others look not found).
    ``reason`` is a cancel's, kept with the incident. After a cancel, contacts who have not
    yet been told of the detection are not told; those who have are told it was cancelled.
    """
    if reason is not None and action is not IncidentAction.CANCEL:
        raise ValueError(f"only a cancel takes a reason, not a {action}")
    owned = _owned(incident_id, device_id)
    if action is IncidentAction.CANCEL:
        change = move_incident(IncidentState.PENDING, IncidentState.CANCELLED, *owned).values(
            cancel_reason=reason[:200] if reason else None
        )
    else:  # the incident stays pending; the sweeper claims it at the deadline it now has
        change = (
            update(Incident)
            .where(Incident.state == IncidentState.PENDING, *owned)
            .values(deadline_at=db_now(), trigger="confirmed", state_changed_at=db_now())
            .execution_options(synchronize_session=False)
        )
    async with db.session() as session:
        won = (await session.execute(change.returning(Incident.device_id))).first()
        view = await _read(session, incident_id, device_id)
        if view is None:
            return ActionResult(action, ActionOutcome.NOT_FOUND, None)
        outcome = action.outcome(won=won is not None, found=view.state)
        if won is not None:
            if action is IncidentAction.CANCEL:
                await _withdraw_detection_notices(session, incident_id, won.device_id)
            detail = {"reason": reason} if action is IncidentAction.CANCEL else {}
            add_audit(session, incident_id, actor, outcome.value, detail)
    if won is not None and events is not None:
        await events.publish(view.as_update())
    return ActionResult(action, outcome, view)


async def _withdraw_detection_notices(session: AsyncSession, incident_id: uuid.UUID, device_id: uuid.UUID) -> None:
    # Contacts not yet told of the detection never will be; those told hear of the cancel.
    await session.execute(
        move_deliveries(
            ContactNotification, (DeliveryState.PENDING, DeliveryState.STANDBY), DeliveryState.SKIPPED,
            ContactNotification.incident_id == incident_id,
            ContactNotification.event == "detected",
            ContactNotification.attempts == 0,
        )
    )
    told = await session.scalars(
        select(ContactNotification.contact_id).where(
            ContactNotification.incident_id == incident_id,
            ContactNotification.event == "detected",
            ContactNotification.state != DeliveryState.SKIPPED,
        ).distinct()
    )
    await add_contact_notifications(session, incident_id, device_id, "cancelled", set(told))


def move_incident(source: IncidentState, target: IncidentState, *where: Any) -> Update:
    """``UPDATE incidents SET state = target WHERE state = source AND <where>``, stamping
    ``state_changed_at``: the one way an incident's state changes. Chain ``.values()`` and
    ``.returning()`` onto it; no row comes back when another change came first.

    Raises :class:`~shared.incident_state.IllegalTransition` when the table forbids the move.
    """
    return (
        update(Incident)
        .where(Incident.state == source, *where)
        .values(state=source.check_move(target), state_changed_at=db_now())
        .execution_options(synchronize_session=False)
    )


def move_deliveries(
    table: type[DispatchOutbox] | type[ContactNotification],
    sources: Iterable[DeliveryState],
    target: DeliveryState,
    *where: Any,
) -> Update:
    """``UPDATE <table> SET state = target WHERE state IN sources AND <where>``: the one way a
    delivery's state changes (chain ``.values()`` for the rest of the row).

    Raises :class:`~shared.incident_state.IllegalTransition` when a source may not become ``target``.
    """
    sources = tuple(sources)
    for source in sources:
        source.check_move(target)
    return (
        update(table)
        .where(table.state.in_(sources), *where)
        .values(state=target)
        .execution_options(synchronize_session=False)
    )


async def get_incident(
    db: Database, incident_id: uuid.UUID, *, device_id: uuid.UUID | None = None
) -> IncidentView | None:
    """The incident, or None (also when it belongs to another device than ``device_id``)."""
    async with db.session() as session:
        return await _read(session, incident_id, device_id)


async def list_incidents(
    db: Database,
    device_id: uuid.UUID,
    *,
    since: datetime | None = None,
    until: datetime | None = None,
    class_key: str | None = None,
    limit: int = 100,
) -> list[IncidentView]:
    """A device's incidents detected in ``[since, until)``, newest first."""
    query = select(Incident, db_now()).where(Incident.device_id == device_id)
    if since is not None:
        query = query.where(Incident.detected_at >= since)
    if until is not None:
        query = query.where(Incident.detected_at < until)
    if class_key is not None:
        query = query.where(Incident.class_key == class_key)
    query = query.order_by(Incident.detected_at.desc()).limit(limit)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    return [_view(incident, now) for incident, now in rows]


async def incident_deliveries(db: Database, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Where the report went: one entry per agency channel tried (state, attempts, sent_at)."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(DispatchOutbox)
                .where(DispatchOutbox.incident_id == incident_id, DispatchOutbox.state != DeliveryState.STANDBY)
                .order_by(DispatchOutbox.agency_id, DispatchOutbox.position)
            )
        ).all()
    return [
        {
            "agency": row.agency_id,
            "channel": row.kind,
            "state": row.state.value,
            "attempts": row.attempts,
            "sent_at": row.sent_at.isoformat() if row.sent_at else None,
        }
        for row in rows
    ]


async def archive_clip(
    db: Database, store: ClipStore, incident_id: uuid.UUID, samples: np.ndarray, sample_rate: int
) -> ClipInfo:
    """Encode ``samples`` as FLAC, store it under the incident's key and record it (checksum
    included). Storing again replaces the clip: the gateway may store a longer one later.

    Raises LookupError, with the stored object deleted again, when the incident is gone
    (its device erased while the clip was being stored): no audio outlives its incident.
    """
    # Encoding 30 s takes ~15 ms of CPU: off the event loop, which carries live audio.
    encoded = await asyncio.to_thread(encode_flac, samples, sample_rate)
    key = clip_key(incident_id)
    await store.put(key, encoded.data)
    info = ClipInfo(key, encoded.sha256, encoded.duration_s, len(encoded.data), CONTENT_TYPE)
    try:
        async with db.session() as session:
            clip = await session.get(IncidentClip, incident_id)
            if clip is None:
                session.add(IncidentClip(incident_id=incident_id, created_at=db_now(), **info.__dict__))
            else:
                for name, value in info.__dict__.items():
                    setattr(clip, name, value)
            add_audit(session, incident_id, "gateway", "clip", {"sha256": info.sha256, "duration_s": info.duration_s})
    except IntegrityError:
        async with db.session() as session:
            if await session.get(Incident, incident_id) is not None:
                raise  # not the incident's foreign key: the clip stays for the retry
        await store.delete(key)  # the incident was deleted after the put
        raise LookupError(f"no incident {incident_id}; its clip was not kept") from None
    return info


async def incident_clip(db: Database, incident_id: uuid.UUID) -> ClipInfo | None:
    """The recorded clip of an incident, or None when none is stored yet."""
    async with db.session() as session:
        clip = await session.get(IncidentClip, incident_id)
    return None if clip is None else ClipInfo.from_row(clip)


# Audit events of a clip: a link handed out, and the clip fetched through one.
CLIP_LINK_ISSUED = "clip_link_issued"
CLIP_DOWNLOADED = "clip_downloaded"


async def audit_clip_access(
    db: Database, incident_id: uuid.UUID, event: str, actor: str, detail: dict[str, Any]
) -> bool:
    """Write an access to the incident's clip (``CLIP_LINK_ISSUED`` or ``CLIP_DOWNLOADED``) to
    its audit trail. False, with nothing written, when there is no such incident (any more)."""
    try:
        async with db.session() as session:
            if await session.get(Incident, incident_id) is None:
                return False
            add_audit(session, incident_id, actor, event, detail)
    except IntegrityError:  # deleted between the read and the write
        return False
    return True


async def clip_accesses(db: Database, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every audited access to the incident's clip, oldest first: ``{at, event, actor, **detail}``."""
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.incident_id == incident_id, AuditEntry.event.in_((CLIP_LINK_ISSUED, CLIP_DOWNLOADED)))
                .order_by(AuditEntry.at, AuditEntry.id)
            )
        ).all()
    return [{"at": row.at.isoformat(), "event": row.event, "actor": row.actor, **row.detail} for row in rows]


async def add_contact_notifications(
    session: AsyncSession,
    incident_id: uuid.UUID,
    device_id: uuid.UUID,
    event: str,
    only_contacts: set[int] | None = None,
) -> int:
    """Queue ``event`` for each emergency contact of the device (in the caller's transaction).

    Each contact gets its webhook (when it has one) then an SMS as the fallback. Returns
    how many contacts were queued.
    """
    contacts = (
        await session.scalars(
            select(EmergencyContact).where(EmergencyContact.device_id == device_id).order_by(EmergencyContact.position)
        )
    ).all()
    queued = 0
    for contact in contacts:
        if only_contacts is not None and contact.id not in only_contacts:
            continue
        kinds = (["webhook"] if contact.webhook_url else []) + ["sms"]
        for position, kind in enumerate(kinds):
            session.add(
                ContactNotification(
                    incident_id=incident_id, contact_id=contact.id, event=event, position=position, kind=kind,
                    state=DeliveryState.PENDING if position == 0 else DeliveryState.STANDBY, attempts=0,
                    next_attempt_at=db_now(), created_at=db_now(),
                )
            )
        queued += 1
    return queued


def add_audit(session: AsyncSession, incident_id: uuid.UUID | None, actor: str, event: str, detail: dict[str, Any]) -> None:
    """Add an audit entry, stamped by the database clock, to the caller's transaction."""
    session.add(AuditEntry(incident_id=incident_id, at=db_now(), actor=actor, event=event, detail=detail))


def _owned(incident_id: uuid.UUID, device_id: uuid.UUID | None) -> list[Any]:
    conditions: list[Any] = [Incident.id == incident_id]
    if device_id is not None:
        conditions.append(Incident.device_id == device_id)
    return conditions


async def _read(session: AsyncSession, incident_id: uuid.UUID, device_id: uuid.UUID | None = None) -> IncidentView | None:
    row = (
        await session.execute(
            select(Incident, db_now()).where(*_owned(incident_id, device_id)).execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else _view(row[0], row[1])


def _view(incident: Incident, now: datetime) -> IncidentView:
    location = None
    if incident.latitude is not None and incident.longitude is not None:
        location = Location(incident.latitude, incident.longitude, incident.location_accuracy_m or 0.0)
    return IncidentView(
        id=incident.id,
        device_id=incident.device_id,
        class_key=incident.class_key,
        confidence=incident.confidence,
        state=incident.state,
        detected_at=incident.detected_at,
        deadline_at=incident.deadline_at,
        state_changed_at=incident.state_changed_at,
        seconds_left=max(0.0, (incident.deadline_at - now).total_seconds()),
        detections=incident.detections,
        score_timeline=list(incident.score_timeline),
        trigger=incident.trigger,
        cancel_reason=incident.cancel_reason,
        location=location,
    )
