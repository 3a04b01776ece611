"""Writing what the gateway heard during a countdown: the score timeline grows, the evidence
mark follows, and growing evidence may bring the deadline forward.

One transaction per batch (the gateway writes every few seconds, not per window). The first
statement is a conditional ``UPDATE ... WHERE state = 'pending'``: it takes the row
(PostgreSQL) or database (SQLite) lock before anything is read, and finds nothing once the
incident was cancelled or claimed, so nothing is written after a cancel or once the report is
going out. The deadline moves only by a second conditional ``UPDATE ... WHERE state =
'pending' AND deadline_at > <new>``: it never moves later, and a cancel that won stays
cancelled. Every mark change and every shortening is audited and, after the commit, published
(:mod:`shared.incident_events`), so the client's countdown follows.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Incident
from shared.incident_events import IncidentEvents
from shared.incident_state import IncidentState
from shared.incidents.audit import add_audit
from shared.incidents.evidence import EvidenceFacts, EvidencePolicy, Shortening, judge_evidence, shortened_deadline
from shared.incidents.lifecycle import MAX_TIMELINE_POINTS
from shared.incidents.views import IncidentView, ScorePoint, read_incident


@dataclass(frozen=True)
class EvidenceRecorded:
    """The incident after a batch; ``mark_changed`` and ``shortening`` say what was news."""

    incident: IncidentView
    mark_changed: bool
    shortening: Shortening | None


async def record_evidence(
    db: Database,
    incident_id: uuid.UUID,
    *,
    points: Sequence[ScorePoint],
    facts: EvidenceFacts,
    policy: EvidencePolicy,
    countdown_s: float,
    events: IncidentEvents | None = None,
    actor: str = "gateway",
) -> EvidenceRecorded | None:
    """Append ``points`` (``t`` from the detection, ``class_key`` set) to the pending incident's
    timeline (the newest :data:`MAX_TIMELINE_POINTS` kept), judge ``facts`` and store the mark
    and summary, and move the deadline earlier when ``policy`` says so.

    Returns None, writing nothing, when the incident is not pending (cancelled, under duress
    included; being reported; gone).
    """
    # Cancelled under duress is cancelled for the device: its evidence stays as it saw it.
    pending = Incident.id == incident_id, Incident.state == IncidentState.PENDING, Incident.duress_at.is_(None)
    async with db.session() as session:
        row = (
            await session.execute(
                update(Incident)
                .where(*pending)
                .values(evidence_summary=Incident.evidence_summary)
                .returning(db_now())
                .execution_options(synchronize_session=False)
            )
        ).first()
        if row is None:
            return None
        now = row[0]
        incident = await session.get_one(Incident, incident_id, populate_existing=True)
        timeline = incident.score_timeline + [_point(p) for p in points]
        incident.score_timeline = timeline[-MAX_TIMELINE_POINTS:]
        mark, before = judge_evidence(facts, countdown_s, policy.faded), incident.evidence
        summary: dict[str, Any] = {**facts.to_json(), "shortened": (incident.evidence_summary or {}).get("shortened")}
        incident.evidence, incident.evidence_summary = mark, summary
        if mark is not before:
            add_audit(session, incident_id, actor, "evidence", {"from": before.value, "to": mark.value, **summary})
        shortening = shortened_deadline(
            policy.shortening, facts, detected_at=incident.detected_at, deadline_at=incident.deadline_at,
            now=now, countdown_s=countdown_s,
        )  # fmt: skip
        if shortening is not None:
            shortening = await shorten_deadline(session, incident, shortening, summary, actor)
        await session.flush()
        view = await read_incident(session, incident_id)
        assert view is not None
    if events is not None and (mark is not before or shortening is not None):
        await events.publish(view.as_update({"shortened": shortening.reason} if shortening else None))
    return EvidenceRecorded(view, mark is not before, shortening)


async def shorten_deadline(
    session: AsyncSession, incident: Incident, shortening: Shortening, summary: dict[str, Any], actor: str
) -> Shortening | None:
    """Move ``incident``'s deadline to ``shortening``'s in the caller's transaction, only while
    pending and only earlier; record the move in ``summary`` (stored as the evidence summary's
    ``shortened``) and the audit trail. None when the conditional UPDATE found nothing to move."""
    earlier = (
        await session.execute(
            update(Incident)
            .where(
                Incident.id == incident.id,
                Incident.state == IncidentState.PENDING,
                Incident.duress_at.is_(None),  # its device was shown the deadline as it stands
                Incident.deadline_at > shortening.deadline_at,
            )
            .values(deadline_at=shortening.deadline_at)
            .returning(Incident.id)
            .execution_options(synchronize_session=False)
        )
    ).first()
    if earlier is None:
        return None
    moved = {"from": incident.deadline_at.isoformat(), "to": shortening.deadline_at.isoformat(), "reason": shortening.reason}
    incident.evidence_summary = {**summary, "shortened": moved}
    add_audit(session, incident.id, actor, "deadline_shortened", moved)
    return shortening


def _point(point: ScorePoint) -> dict[str, Any]:
    return {"t": round(point.t, 3), "class": point.class_key, "score": round(float(point.score), 4)}
