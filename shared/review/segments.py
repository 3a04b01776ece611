"""Reviewable segments: incidents whose audio a reviewer may hear, and the labels given to them.

A segment is an incident with a stored clip, not yet past the retention
(``personal_data_deleted_at`` unset), that is either

* **reported** (``dispatching``, ``dispatched`` or ``failed``): its clip was archived as the
  report's evidence. Reviewing it measures the system's precision; no one consented to its
  use for training, so it is never exported (:attr:`Segment.exportable` is false);
* **a donated false alarm**: ``cancelled`` with ``clip_donated_at`` set, the owner's explicit
  consent to keep the clip for training (``docs/incidents.md#privacy``). Only these export.

A cancelled incident without donation never appears (its clip waits out the grace period for
the owner's decision only), nor does a countdown still running. An incident cancelled under
duress is, outside its device, a report, and is reviewed as one.

Every label is a new ``segment_reviews`` row: the newest row of an incident is its label and
the older ones stay as the history. Each hearing of a clip is audited on the incident
(``clip_downloaded``, actor ``reviewer``), where its owner sees it as any other access.
"""

from __future__ import annotations

import hashlib
import uuid
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, or_, select
from sqlalchemy.sql.elements import ColumnElement

from shared.clips import ClipStore
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Incident, IncidentClip
from shared.db.review_tables import SegmentReview
from shared.incident_state import IncidentState
from shared.incidents import CLIP_DOWNLOADED, ClipInfo, add_audit, audit_clip_access
from shared.review.labels import check_label

__all__ = [
    "REPORTED_STATES",
    "Review",
    "Segment",
    "SegmentGone",
    "device_pseudonym",
    "get_segment",
    "list_segments",
    "read_segment_audio",
    "record_review",
    "review_history",
]

REPORTED_STATES = (IncidentState.DISPATCHING, IncidentState.DISPATCHED, IncidentState.FAILED)
# Audit event of a label given (the owner's export lists it with the rest of the trail).
SEGMENT_REVIEWED = "segment_reviewed"
MAX_REVIEWER = 64
MAX_NOTE = 500


class SegmentGone(LookupError):
    """No such segment: no incident, no clip (any more), or its audio may not be reviewed."""


@dataclass(frozen=True)
class Review:
    label: str
    model_label: str
    reviewer: str
    note: str | None
    reviewed_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"label": self.label, "model_label": self.model_label, "reviewer": self.reviewer,
                "note": self.note, "reviewed_at": self.reviewed_at.isoformat()}  # fmt: skip


@dataclass(frozen=True)
class Segment:
    """An incident as a reviewer sees it: the decision, the scores and the newest label."""

    incident_id: uuid.UUID
    device_id: uuid.UUID
    kind: str
    class_key: str
    state: str
    cancel_kind: str | None
    confidence: float
    detected_at: datetime
    donated_at: datetime | None
    # The incident's score timeline: [{"t": s from the detection, "class", "score"}, ...].
    timeline: list[dict[str, Any]]
    clip: ClipInfo
    review: Review | None  # the newest; None: not reviewed yet
    reviews: int  # how many labels it was given, the newest included

    @property
    def averages(self) -> dict[str, float]:
        """Per class in the timeline, the mean of its window scores (the segment's average)."""
        scores: dict[str, list[float]] = defaultdict(list)
        for point in self.timeline:
            scores[str(point["class"])].append(float(point["score"]))
        return {key: round(sum(values) / len(values), 4) for key, values in sorted(scores.items())}

    @property
    def exportable(self) -> bool:
        """Whether its owner consented to training use: a donated false alarm."""
        return self.state == IncidentState.CANCELLED and self.donated_at is not None

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": str(self.incident_id), "kind": self.kind, "class": self.class_key,
            "state": self.state, "cancel_kind": self.cancel_kind, "confidence": round(self.confidence, 4),
            "detected_at": self.detected_at.isoformat(),
            "donated_at": None if self.donated_at is None else self.donated_at.isoformat(),
            "exportable": self.exportable, "timeline": self.timeline, "averages": self.averages,
            "clip": {"duration_s": round(self.clip.duration_s, 3), "content_type": self.clip.content_type,
                     "sha256": self.clip.sha256},
            "review": None if self.review is None else self.review.to_json(), "reviews": self.reviews,
        }  # fmt: skip


def device_pseudonym(device_id: uuid.UUID) -> str:
    """The device as an export names it: a hash that operators can match against a device id
    (to honour an erasure) and that tells no one else which home it was."""
    return hashlib.sha256(f"hearo-review-device:{device_id}".encode()).hexdigest()[:16]


def _reviewable() -> ColumnElement[bool]:
    donated = and_(
        Incident.state == IncidentState.CANCELLED, Incident.clip_donated_at.is_not(None), Incident.duress_at.is_(None)
    )
    return and_(Incident.personal_data_deleted_at.is_(None), or_(Incident.state.in_(REPORTED_STATES), donated))


async def list_segments(
    db: Database, *, pending: bool = True, limit: int = 500, exportable: bool = False
) -> list[Segment]:
    """The segments, oldest detection first: only those without a label when ``pending``, only
    donated false alarms when ``exportable``."""
    query = (
        select(Incident, IncidentClip).join(IncidentClip, IncidentClip.incident_id == Incident.id)
        .where(_reviewable()).order_by(Incident.detected_at, Incident.id)
    )  # fmt: skip
    if exportable:
        query = query.where(Incident.state == IncidentState.CANCELLED)
    if pending:
        query = query.where(~select(SegmentReview.id).where(SegmentReview.incident_id == Incident.id).exists())
    async with db.session() as session:
        rows = (await session.execute(query.limit(limit))).all()
        reviews = await _reviews(session, [incident.id for incident, _ in rows])
    return [_segment(incident, clip, reviews.get(incident.id, [])) for incident, clip in rows]


async def get_segment(db: Database, incident_id: uuid.UUID) -> Segment:
    """One segment; :class:`SegmentGone` when the incident is not (or no longer) one."""
    async with db.session() as session:
        row = (
            await session.execute(
                select(Incident, IncidentClip).join(IncidentClip, IncidentClip.incident_id == Incident.id)
                .where(Incident.id == incident_id, _reviewable())
            )
        ).first()  # fmt: skip
        if row is None:
            raise SegmentGone(f"no reviewable segment {incident_id}")
        reviews = await _reviews(session, [incident_id])
    return _segment(row[0], row[1], reviews.get(incident_id, []))


async def record_review(
    db: Database, incident_id: uuid.UUID, label: str, *, reviewer: str, note: str | None = None
) -> Review:
    """Give the segment ``label`` as ``reviewer``: a new row, the older ones kept as history.

    ValueError for an unknown label, an empty or too long reviewer or note; :class:`SegmentGone`
    when the incident is not a segment (its audio may not be reviewed, or it is gone).
    """
    check_label(label)
    reviewer = reviewer.strip()
    if not reviewer or len(reviewer) > MAX_REVIEWER:
        raise ValueError(f"the reviewer's name must be 1 to {MAX_REVIEWER} characters")
    if note is not None and len(note) > MAX_NOTE:
        raise ValueError(f"a note is at most {MAX_NOTE} characters")
    async with db.session() as session:
        incident = await session.scalar(
            select(Incident).join(IncidentClip, IncidentClip.incident_id == Incident.id)
            .where(Incident.id == incident_id, _reviewable())
        )  # fmt: skip
        if incident is None:
            raise SegmentGone(f"no reviewable segment {incident_id}")
        row = SegmentReview(
            incident_id=incident_id, label=label, model_label=incident.class_key, reviewer=reviewer,
            note=note or None, reviewed_at=db_now(),
        )  # fmt: skip
        session.add(row)
        add_audit(session, incident_id, "reviewer", SEGMENT_REVIEWED, {"label": label, "reviewer": reviewer})
        await session.flush()
        await session.refresh(row)
        return _review(row)


async def review_history(db: Database, incident_id: uuid.UUID) -> list[Review]:
    """Every label the incident was given, newest first."""
    async with db.session() as session:
        return (await _reviews(session, [incident_id])).get(incident_id, [])


async def read_segment_audio(db: Database, store: ClipStore, incident_id: uuid.UUID, *, reviewer: str, via: str) -> bytes:
    """The segment's clip (FLAC), its access audited first (``via``: ``review``, ``export``).
    :class:`SegmentGone` when it is not a segment or its clip went in between."""
    segment = await get_segment(db, incident_id)
    detail = {"via": via, "reviewer": reviewer}
    if not await audit_clip_access(db, incident_id, CLIP_DOWNLOADED, "reviewer", detail):
        raise SegmentGone(f"incident {incident_id} is gone")
    try:
        return await store.get(segment.clip.key)
    except FileNotFoundError as exc:  # deleted by the retention after the read
        raise SegmentGone(f"the clip of incident {incident_id} is gone") from exc


async def _reviews(session: Any, incident_ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, list[Review]]:
    if not incident_ids:
        return {}
    rows = await session.scalars(
        select(SegmentReview).where(SegmentReview.incident_id.in_(list(incident_ids)))
        .order_by(SegmentReview.reviewed_at.desc(), SegmentReview.id.desc())
    )  # fmt: skip
    found: dict[uuid.UUID, list[Review]] = defaultdict(list)
    for row in rows:
        found[row.incident_id].append(_review(row))
    return found


def _review(row: SegmentReview) -> Review:
    return Review(row.label, row.model_label, row.reviewer, row.note, row.reviewed_at)


def _segment(incident: Incident, clip: IncidentClip, reviews: list[Review]) -> Segment:
    return Segment(
        incident_id=incident.id, device_id=incident.device_id, kind=str(incident.kind), class_key=incident.class_key,
        state=str(incident.state), cancel_kind=None if incident.cancel_kind is None else str(incident.cancel_kind),
        confidence=incident.confidence, detected_at=incident.detected_at, donated_at=incident.clip_donated_at,
        timeline=list(incident.score_timeline or []), clip=ClipInfo.from_row(clip),
        review=reviews[0] if reviews else None, reviews=len(reviews),
    )  # fmt: skip
