"""An incident as the gateway reads it: :class:`IncidentView` and the values around it."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.clock import db_now
from shared.db.models import Device, Incident
from shared.incident_events import IncidentUpdate
from shared.incident_state import ActionOutcome, CancelKind, EvidenceMark, IncidentAction, IncidentKind, IncidentState
from shared.taxonomy import by_key


@dataclass(frozen=True)
class ScorePoint:
    """A class score ``t`` seconds from the detection (negative: before it)."""

    t: float
    score: float
    class_key: str | None = None


@dataclass(frozen=True)
class IncidentLocation:
    """Where the device was when the incident was detected, as kept with the incident (only
    with the owner's consent to location). The client's wire position is
    :class:`shared.protocol.Location`."""

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
    last_detected_at: datetime  # the latest detection added (after the report too: the same event going on)
    score_timeline: list[dict[str, Any]]
    evidence: EvidenceMark
    evidence_summary: dict[str, Any] | None
    trigger: str | None
    cancel_reason: str | None
    cancel_kind: CancelKind | None  # why the person cancelled: false alarm, handled, not sure
    location: IncidentLocation | None
    # What the household's other devices heard (shared/household/corroboration.py); None until judged.
    corroboration: dict[str, Any] | None = None
    # What opened it (incidents.kind): a class's detection, or a rule such as the daycare profile's.
    kind: IncidentKind = IncidentKind.EMERGENCY
    # An anomaly's score, threshold, model version and reason (shared/anomaly/); None otherwise.
    anomaly: dict[str, Any] | None = None
    # Other emergency classes detected during its countdown: reported to their agencies too.
    also_detected: tuple[str, ...] = ()

    def to_json(self) -> dict[str, Any]:
        """The REST representation (``GET /v1/incidents/{id}``)."""
        cls = by_key(self.class_key)
        return {
            "incident_id": str(self.id),
            "kind": self.kind.value,
            "class": cls.key,
            "class_id": cls.id,
            "label_en": cls.label_en,
            "label_ko": cls.label_ko,
            "also_detected": list(self.also_detected),
            "confidence": self.confidence,
            "state": self.state.value,
            "detected_at": self.detected_at.isoformat(),
            "deadline_at": self.deadline_at.isoformat(),
            "state_changed_at": self.state_changed_at.isoformat(),
            "seconds_left": round(self.seconds_left, 3) if self.state is IncidentState.PENDING else 0.0,
            "detections": self.detections,
            "last_detected_at": self.last_detected_at.isoformat(),
            "score_timeline": self.score_timeline,
            "evidence": self.evidence.value,
            "evidence_summary": self.evidence_summary,
            "trigger": self.trigger,
            "cancel_reason": self.cancel_reason,
            "cancel_kind": None if self.cancel_kind is None else self.cancel_kind.value,
            "location": None if self.location is None else {
                "latitude": self.location.latitude,
                "longitude": self.location.longitude,
                "accuracy_m": self.location.accuracy_m,
            },
            "corroboration": self.corroboration,
            "anomaly": self.anomaly,
        }

    def as_update(self, detail: dict[str, Any] | None = None) -> IncidentUpdate:
        return IncidentUpdate(
            incident_id=str(self.id),
            device_id=str(self.device_id),
            state=self.state,
            deadline_at=self.deadline_at.isoformat(),
            at=self.state_changed_at.isoformat(),
            evidence=self.evidence,
            detail=detail if detail is not None else self._read_detail(),
        )

    def _read_detail(self) -> dict[str, Any]:
        """An update's detail from this read alone: why it was cancelled, or why its deadline
        stands earlier (a poll can see a shortened deadline before the event that says why)."""
        if self.state is IncidentState.CANCELLED:
            return {"reason": self.cancel_reason, **({"kind": self.cancel_kind.value} if self.cancel_kind else {})}
        moved = (self.evidence_summary or {}).get("shortened")
        if self.state is IncidentState.PENDING and moved and datetime.fromisoformat(moved["to"]) == self.deadline_at:
            return {"shortened": moved["reason"]}
        return {}


class DeviceTokenChanged(Exception):
    """The token a detection came with is no longer its device's: nothing was written.
    ``current_token_hash`` is the device's token hash now, None when the device is gone."""

    def __init__(self, current_token_hash: str | None) -> None:
        super().__init__("the device's token has changed")
        self.current_token_hash = current_token_hash

    @classmethod
    def check(cls, device: Device | None, token_hash: str | None) -> None:
        """Raise when ``token_hash`` is given and is not ``device``'s (or the device is gone)."""
        if token_hash is not None and (device is None or device.token_hash != token_hash):
            raise cls(None if device is None else device.token_hash)


@dataclass(frozen=True)
class OpenedIncident:
    """``created`` is False when the detection was added as evidence to an open incident, then
    ``since_detected_s`` after that incident's detection (database clock)."""

    incident: IncidentView
    created: bool
    since_detected_s: float = 0.0


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


def owned(incident_id: uuid.UUID, device_id: uuid.UUID | None) -> list[Any]:
    """The WHERE conditions for the incident, restricted to ``device_id``'s when given."""
    conditions: list[Any] = [Incident.id == incident_id]
    if device_id is not None:
        conditions.append(Incident.device_id == device_id)
    return conditions


async def read_incident(
    session: AsyncSession, incident_id: uuid.UUID, device_id: uuid.UUID | None = None
) -> IncidentView | None:
    """The incident as it stands in the caller's transaction, or None (see :func:`owned`)."""
    row = (
        await session.execute(
            select(Incident, db_now()).where(*owned(incident_id, device_id)).execution_options(populate_existing=True)
        )
    ).first()
    return None if row is None else view_of(row[0], row[1])


def view_of(incident: Incident, now: datetime) -> IncidentView:
    """The view of a row read at database time ``now``: the incident as its device sees it.

    One cancelled under duress (``duress_at``: :mod:`shared.incidents.duress_cancel`) is shown
    as the ordinary cancel the device asked for, wherever it stands in its report: cancelled
    at ``duress_at``, its deadline as it was, no trigger. Its timeline, evidence and
    detections were frozen at the cancel (nothing writes them after it), so they match too.
    """
    duress = incident.duress_at is not None
    location = None
    if incident.latitude is not None and incident.longitude is not None:
        location = IncidentLocation(incident.latitude, incident.longitude, incident.location_accuracy_m or 0.0)
    return IncidentView(
        id=incident.id,
        device_id=incident.device_id,
        class_key=incident.class_key,
        confidence=incident.confidence,
        state=IncidentState.CANCELLED if duress else incident.state,
        detected_at=incident.detected_at,
        deadline_at=incident.deadline_at,
        state_changed_at=incident.duress_at if incident.duress_at is not None else incident.state_changed_at,
        seconds_left=max(0.0, (incident.deadline_at - now).total_seconds()),
        detections=incident.detections,
        last_detected_at=incident.last_detected_at,
        score_timeline=list(incident.score_timeline),
        evidence=incident.evidence,
        evidence_summary=incident.evidence_summary,
        trigger=None if duress else incident.trigger,
        cancel_reason=incident.cancel_reason,
        cancel_kind=incident.cancel_kind,
        location=location,
        corroboration=incident.corroboration,
        kind=incident.kind,
        anomaly=incident.anomaly,
        also_detected=tuple(incident.also_detected),
    )
