"""The incident lifecycle as the gateway drives it: open, cancel or confirm, and read.

The states and the moves between them are :mod:`shared.incident_state`'s (the alerting
worker owns the moves after ``pending``). Every move is one conditional ``UPDATE ... WHERE
state = <expected>`` (:mod:`shared.incidents.moves`), so when a cancel races the deadline
exactly one of them changes the row and the other learns the truth from what it finds: a
cancel that loses answers ``already_reported``. Times come from the database clock
(:func:`shared.db.clock.db_now`), never from a process's clock.

After each committed change an :class:`~shared.incident_events.IncidentUpdate` is published
when an ``events`` bus is given; losing it loses nothing (see :mod:`shared.incident_events`).
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Text, cast, or_, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased, joinedload

from shared.anomaly.promotion import promote_to_emergency
from shared.db import Database, retry_when_busy
from shared.db.clock import db_now
from shared.db.models import Device, DispatchOutbox, Incident
from shared.incident_events import IncidentEvents
from shared.incident_state import (
    OPEN_INCIDENT_STATES,
    ActionOutcome,
    CancelKind,
    ContactEvent,
    DeliveryState,
    IncidentAction,
    IncidentKind,
    IncidentState,
)
from shared.incidents.audit import add_audit
from shared.incidents.contacts import queue_contact_notifications, withdraw_detection_notices
from shared.incidents.device_trail import device_deliveries
from shared.incidents.duress_cancel import cancel_under_duress, is_duress_code, open_under_duress
from shared.incidents.moves import move_incident
from shared.incidents.threshold_learning import FalseAlarmLearner
from shared.incidents.views import (
    ActionResult,
    DeviceTokenChanged,
    IncidentLocation,
    IncidentView,
    OpenedIncident,
    ScorePoint,
    owned,
    read_incident,
    view_of,
)
from shared.taxonomy import by_key

COUNTDOWN_S = 60.0
# A detection of the class of the device's last report, heard within this long of that report's
# last detection, is the same event still going on (a smoke alarm sounds until someone resets
# it): evidence for the report, never a second one.
SAME_EVENT_S = 600.0
# A detection's write (the gateway's ``retry_when_busy``), and a person's cancel or confirm,
# are tried again this long while the database cannot be reached: a PostgreSQL failover or
# restart takes seconds to tens of seconds, and the client is told only after that.
WRITE_RETRY_S = 30.0
# An incident keeps at most this many score points (a long event keeps adding evidence).
MAX_TIMELINE_POINTS = 600


async def open_incident(
    db: Database,
    *,
    device_id: uuid.UUID,
    class_key: str,
    confidence: float,
    scores: Sequence[ScorePoint] = (),
    location: IncidentLocation | None = None,
    session_id: str | None = None,
    countdown_s: float = COUNTDOWN_S,
    events: IncidentEvents | None = None,
    actor: str = "gateway",
    sound_signature: Sequence[float] | None = None,
    kind: IncidentKind = IncidentKind.EMERGENCY,
    token_hash: str | None = None,
    same_event_s: float = SAME_EVENT_S,
) -> OpenedIncident:
    """Open an incident for a detection, or add the detection to the device's open one, or to
    the report it continues.

    A new incident is ``pending`` with ``deadline_at`` = database now + ``countdown_s``,
    and its emergency contacts are queued a "detected" notice in the same transaction.
    The location is kept only when the device consented to location; ``sound_signature``
    (:mod:`shared.incidents.sound_signature`) and ``kind`` (what opened it, and so how it is
    routed and told: :class:`~shared.incident_state.IncidentKind`) with a new incident only; a
    detection joining an open incident leaves its kind as it is. ``token_hash``: the hash of
    the token the detection's session was opened with; when given it is checked in the same
    transaction, and :class:`DeviceTokenChanged` raised (nothing written) when it is no longer
    the device's. Raises ValueError for an unknown or non-emergency class, LookupError for an
    unknown device.

    With no incident open, a detection of a class of the device's latest dispatched report (its
    own, or one it was also reported for) whose last detection is at most ``same_event_s`` old is evidence for that
    report: the agency already has it, and a sound that goes on (an alarm nobody reset) must not
    be reported again and again. It opens no countdown (``created`` False, the view
    ``dispatched``). A failed report is not joined: a new detection tries again; neither is a
    cancelled one (the person is asked again). 0 turns the rule off.

    One transaction (eight statements for a new incident with contacts, seven without, six for
    evidence of an open incident, seven for a report's, counted with BEGIN and COMMIT): under
    load each round trip waits for a busy event loop, and a detection's message waits for its
    incident.
    """
    cls = by_key(class_key)
    if not cls.is_emergency:
        raise ValueError(f"class {class_key!r} is not an emergency; no incident is opened for it")
    detection = _Detection(
        class_key, confidence, scores, location, session_id, countdown_s, actor, sound_signature, kind, same_event_s
    )
    for _ in range(3):
        try:
            async with db.session() as session:
                opened = await _join_or_insert(session, device_id, detection, token_hash)
        except IntegrityError:
            if (reporting := await open_under_duress(db, device_id)) is not None:
                # A report under duress holds the device's open slot for the seconds it takes
                # to go out; the device sees that incident cancelled, so this joins nothing.
                return OpenedIncident(reporting, created=False)
            continue  # another detection opened one in between: add to it
        if opened.created and events is not None:
            await events.publish(opened.incident.as_update())
        return opened
    raise RuntimeError(f"could not open or join an incident for device {device_id}")


@dataclass(frozen=True)
class _Detection:
    """What ``open_incident`` was given, for its steps."""

    class_key: str
    confidence: float
    scores: Sequence[ScorePoint]
    location: IncidentLocation | None
    session_id: str | None
    countdown_s: float
    actor: str
    sound_signature: Sequence[float] | None
    kind: IncidentKind
    same_event_s: float


async def _join_or_insert(
    session: AsyncSession, device_id: uuid.UUID, detection: _Detection, token_hash: str | None
) -> OpenedIncident:
    # The write comes first: it takes the row (PostgreSQL) or database (SQLite) lock before
    # anything is read, so the read-modify-write of the timeline is not racy (and SQLite never
    # has to upgrade a read transaction, which fails at once instead of waiting).
    row = await _join(session, Incident.state.in_(OPEN_INCIDENT_STATES), Incident.device_id == device_id)
    if row is None and detection.same_event_s > 0:
        row = await _join(session, *_same_event(device_id, detection))
    device, now = None, None
    if token_hash is not None or row is None:
        # One statement: the device (its token to check; for a new incident its consent and its
        # contacts) with the database's time, which a new incident's times are taken from.
        query = select(Device, db_now()).where(Device.id == device_id)
        if row is None:
            query = query.options(joinedload(Device.contacts))
        found = (await session.execute(query)).unique().first()
        if found is not None:
            device, now = found
    DeviceTokenChanged.check(device, token_hash)  # raised, it rolls the update back
    if row is not None:
        incident, now = row
        return await _add_evidence(session, incident, now, detection)
    if device is None or now is None:
        raise LookupError(f"no device {device_id}")
    return OpenedIncident(await _insert(session, device, now, detection), created=True)


async def _join(session: AsyncSession, *conditions: Any) -> Any:
    """The incident the detection joins, counted and returned whole with the database's now
    (evidence needs no read after its update), or None."""
    return (
        await session.execute(
            update(Incident)
            .where(*conditions, Incident.duress_at.is_(None))  # cancelled for the device: frozen as it saw it
            .values(detections=Incident.detections + 1, last_detected_at=db_now())
            .returning(Incident, db_now())
            .execution_options(synchronize_session=False)
        )
    ).first()


def _same_event(device_id: uuid.UUID, detection: _Detection) -> tuple[Any, ...]:
    """The conditions of the device's latest report that ``detection`` continues (the rule
    in ``open_incident``'s docstring). They are in the UPDATE's own WHERE as well as in the
    subquery that picks the one row: PostgreSQL re-checks them on a row another transaction changed."""

    def continues(report: Any) -> tuple[Any, ...]:
        return (
            report.device_id == device_id,
            report.state == IncidentState.DISPATCHED,
            # A class it was reported for: its own, or one heard while it was open whose
            # agencies got it too (``also_detected``, a JSON list of plain keys, matched as text
            # alike on SQLite and PostgreSQL). The class, not the kind: a daycare raise and the
            # model's crime detection of one fight are the same event for the police.
            or_(
                report.class_key == detection.class_key,
                cast(report.also_detected, Text).contains(f'"{detection.class_key}"'),
            ),
            report.last_detected_at >= db_now(-detection.same_event_s),
        )

    report = aliased(Incident, name="report")
    latest = select(report.id).where(*continues(report)).order_by(report.last_detected_at.desc()).limit(1)
    return (Incident.id == latest.scalar_subquery(), *continues(Incident))


async def _add_evidence(
    session: AsyncSession, incident: Incident, now: datetime, detection: _Detection
) -> OpenedIncident:
    class_key, confidence, incident_id = detection.class_key, detection.confidence, incident.id
    since = (now - incident.detected_at).total_seconds()
    timeline = incident.score_timeline + _points(detection.scores, class_key, since)
    incident.score_timeline = timeline[-MAX_TIMELINE_POINTS:]
    incident.confidence = max(incident.confidence, confidence)
    if promote_to_emergency(incident, class_key, confidence):  # the nine classes agree with an anomaly
        add_audit(session, incident_id, "gateway", "became_emergency", {"class": class_key})
    elif class_key not in (incident.class_key, *incident.also_detected) and incident.state.is_open:
        # Another emergency while the incident is open: the report goes to its agencies too (a
        # break-in heard while a cry for help counts down must reach the police). While the
        # report is being sent its agencies are already planned: the sweeper adds this class's.
        incident.also_detected = [*incident.also_detected, class_key]
        incident.routing_due = incident.state is IncidentState.DISPATCHING
    audited: dict[str, Any] = {"class": class_key, "confidence": confidence}
    if incident.state is IncidentState.DISPATCHED:
        audited["after_report"] = True  # the same event, heard again after the report went out
    add_audit(session, incident_id, "gateway", "evidence", audited)
    await session.flush()
    return OpenedIncident(view_of(incident, now), created=False, since_detected_s=since)


async def _insert(session: AsyncSession, device: Device, now: datetime, detection: _Detection) -> IncidentView:
    """The new incident, its contacts' notices and its audit entry, told from what was written:
    its times are the database's ``now`` read with the device, so it needs no read-back."""
    signature = detection.sound_signature
    kept = detection.location if device.consent_location else None
    incident = Incident(
        id=uuid.uuid4(),
        device_id=device.id,
        session_id=detection.session_id,
        kind=detection.kind,
        class_key=detection.class_key,
        confidence=detection.confidence,
        score_timeline=_points(detection.scores, detection.class_key, 0.0)[-MAX_TIMELINE_POINTS:],
        detections=1,
        detected_at=now,
        last_detected_at=now,
        deadline_at=now + timedelta(seconds=detection.countdown_s),
        state=IncidentState.PENDING,
        state_changed_at=now,
        latitude=kept.latitude if kept else None,
        longitude=kept.longitude if kept else None,
        location_accuracy_m=kept.accuracy_m if kept else None,
        sound_signature=None if signature is None else [float(v) for v in signature],
    )
    session.add(incident)
    await session.flush()  # first: the notices and the audit entry refer to it
    queue_contact_notifications(session, incident.id, device.contacts, ContactEvent.DETECTED, now)
    opened = {"class": detection.class_key, "confidence": detection.confidence, "kind": detection.kind.value}
    add_audit(session, incident.id, detection.actor, "opened", opened)
    await session.flush()
    return view_of(incident, now)


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
    kind: CancelKind | None = None,
    code: str | None = None,
    events: IncidentEvents | None = None,
    learning: FalseAlarmLearner | None = None,
    actor: str = "device",
) -> ActionResult:
    """Cancel a pending incident (then it is never reported) or confirm it (report now: its
    deadline becomes the database's now). Exactly one of the action and the deadline wins;
    the outcome says which, with the incident as it now stands.

    ``device_id`` restricts the action to that device's incidents (others look not found).
    ``reason`` is a cancel's, kept with the incident. After a cancel, contacts who have not
    yet been told of the detection are not told; those who have are told it was cancelled.
    ``kind`` (false alarm, handled, not sure) is a cancel's too; once a ``false_alarm`` cancel
    won, ``learning`` is told (:mod:`shared.incidents.threshold_learning`), after the commit
    and before the update is published.
    ``code``: a cancel's code; the device's duress code on a class duress applies to makes it
    a cancel under duress (:mod:`shared.incidents.duress_cancel`), answered exactly as this
    (and never learned from: the incident is reported).
    """
    if (reason is not None or kind is not None or code is not None) and action is not IncidentAction.CANCEL:
        raise ValueError(f"only a cancel takes a reason, a kind or a code, not a {action}")
    # An incident cancelled under duress is final for the device: no action changes it again.
    where = [*owned(incident_id, device_id), Incident.duress_at.is_(None)]
    audited: dict[str, Any] = {}
    if action is IncidentAction.CANCEL:
        cancelled_with: dict[str, Any] = {"cancel_reason": reason[:200] if reason else None, "cancel_kind": kind}
        audited = {"reason": reason} if kind is None else {"reason": reason, "kind": kind.value}
        if code is not None and await is_duress_code(db, incident_id, device_id, code):
            return await cancel_under_duress(
                db, incident_id, device_id=device_id, cancelled_with=cancelled_with, audited=audited,
                events=events, actor=actor,
            )  # fmt: skip
        change = move_incident(IncidentState.PENDING, IncidentState.CANCELLED, *where).values(**cancelled_with)
    else:  # the incident stays pending; the sweeper claims it at the deadline it now has
        change = (
            update(Incident)
            .where(Incident.state == IncidentState.PENDING, *where)
            .values(deadline_at=db_now(), trigger="confirmed", state_changed_at=db_now())
            .execution_options(synchronize_session=False)
        )
    async def apply() -> tuple[Any, IncidentView | None]:
        async with db.session() as session:
            won = (await session.execute(change.returning(Incident.device_id))).first()
            view = await read_incident(session, incident_id, device_id)
            if view is not None and won is not None:
                if action is IncidentAction.CANCEL:
                    await withdraw_detection_notices(session, incident_id, won.device_id)
                add_audit(session, incident_id, actor, action.outcome(won=True, found=view.state).value, audited)
        return won, view

    # A person's cancel or confirm is tried again rather than refused when SQLite stays locked
    # past its timeout on a loaded box (the transaction did nothing then), or while the database
    # cannot be reached (a failover): a cancel made in time must not be lost to it. Repeating it
    # is safe: it is conditional, and a first try that did land reads as already done.
    won, view = await retry_when_busy(apply, unreachable_for_s=WRITE_RETRY_S)
    if view is None:
        return ActionResult(action, ActionOutcome.NOT_FOUND, None)
    outcome = action.outcome(won=won is not None, found=view.state)
    # Learning before the update goes out: a session that has stopped closes once it hears its
    # incident settled, and that must not cut short the learning its own cancel started.
    if won is not None and learning is not None and kind is CancelKind.FALSE_ALARM:
        await learning.false_alarm(incident_id)
    if won is not None and events is not None:
        await events.publish(view.as_update())
    return ActionResult(action, outcome, view)


async def get_incident(
    db: Database, incident_id: uuid.UUID, *, device_id: uuid.UUID | None = None
) -> IncidentView | None:
    """The incident, or None (also when it belongs to another device than ``device_id``)."""
    async with db.session() as session:
        return await read_incident(session, incident_id, device_id)


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
    return [view_of(incident, now) for incident, now in rows]


async def incident_deliveries(db: Database, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Where the report went, as the incident's device sees it (none after a duress cancel:
    :mod:`shared.incidents.device_trail`): one entry per agency channel tried (state,
    attempts, sent_at)."""
    async with db.session() as session:
        duress_at = await session.scalar(select(Incident.duress_at).where(Incident.id == incident_id))
        rows = device_deliveries(duress_at, (
            await session.scalars(
                select(DispatchOutbox)
                .where(DispatchOutbox.incident_id == incident_id, DispatchOutbox.state != DeliveryState.STANDBY)
                .order_by(DispatchOutbox.agency_id, DispatchOutbox.position)
            )
        ).all())  # fmt: skip
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
