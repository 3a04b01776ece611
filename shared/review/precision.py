"""Per-class precision from reviewed incidents (``hearo review report``, ``GET /v1/review/report``).

For each class the system raised (the incident's class when it was reviewed), over the
incidents whose newest label is not ``unclear``: ``confirmed`` are those reviewers labelled
with that class, ``precision`` = confirmed / judged. Reported incidents and donated false
alarms count alike: both were raised as the class. ``unclear`` labels are counted apart and
left out of the share; ``corrected`` says what reviewers heard instead.

This is the precision of what was reviewed, not of everything raised: cancelled incidents
reach review only when donated, so the figure leans on reports; the counts beside it say how
much it rests on.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import select

from shared.db import Database
from shared.db.models import Incident
from shared.db.review_tables import SegmentReview
from shared.review.labels import UNCLEAR

__all__ = ["ClassPrecision", "PrecisionReport", "ReviewedLabel", "review_precision", "summarise_reviews"]


@dataclass(frozen=True)
class ReviewedLabel:
    """The newest label of one incident: what the system raised and what the reviewer heard."""

    model_label: str
    label: str
    kind: str = "emergency"


@dataclass
class ClassPrecision:
    class_key: str
    reviewed: int = 0
    confirmed: int = 0
    unclear: int = 0
    corrected: Counter[str] = field(default_factory=Counter)

    @property
    def judged(self) -> int:
        return self.reviewed - self.unclear

    @property
    def precision(self) -> float | None:
        return None if self.judged == 0 else self.confirmed / self.judged

    def to_json(self) -> dict[str, Any]:
        return {"class": self.class_key, "reviewed": self.reviewed, "judged": self.judged, "confirmed": self.confirmed,
                "unclear": self.unclear, "corrected": dict(sorted(self.corrected.items())),
                "precision": None if self.precision is None else round(self.precision, 4)}  # fmt: skip


@dataclass
class PrecisionReport:
    classes: list[ClassPrecision]
    overall: ClassPrecision

    def to_json(self) -> dict[str, Any]:
        return {"classes": [row.to_json() for row in self.classes], "overall": self.overall.to_json()}


def summarise_reviews(labels: Iterable[ReviewedLabel]) -> PrecisionReport:
    """The report over each incident's newest label (the pure part; tests feed it by hand)."""
    rows: dict[str, ClassPrecision] = {}
    overall = ClassPrecision("overall")
    for one in labels:
        row = rows.setdefault(one.model_label, ClassPrecision(one.model_label))
        for target in (row, overall):
            target.reviewed += 1
            if one.label == UNCLEAR:
                target.unclear += 1
            elif one.label == one.model_label:
                target.confirmed += 1
            else:
                target.corrected[one.label] += 1
    return PrecisionReport([rows[key] for key in sorted(rows)], overall)


async def review_precision(db: Database, *, kind: str | None = None) -> PrecisionReport:
    """The report over every reviewed incident (of ``kind`` only, when given), labelled or not
    still reviewable: a review outlives its clip's retention."""
    query = (
        select(SegmentReview.incident_id, SegmentReview.model_label, SegmentReview.label, Incident.kind)
        .join(Incident, Incident.id == SegmentReview.incident_id)
        .order_by(SegmentReview.incident_id, SegmentReview.reviewed_at.desc(), SegmentReview.id.desc())
    )  # fmt: skip
    if kind is not None:
        query = query.where(Incident.kind == kind)
    async with db.session() as session:
        rows = (await session.execute(query)).all()
    newest: dict[Any, ReviewedLabel] = {}
    for incident_id, model_label, label, incident_kind in rows:
        newest.setdefault(incident_id, ReviewedLabel(model_label, label, str(incident_kind)))
    return summarise_reviews(newest.values())
