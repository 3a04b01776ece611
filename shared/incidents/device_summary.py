"""The owner's summary of one device over a period (the last 7 days by default): what was
heard, what was cancelled and why, what learning changed. ``GET /v1/devices/me/summary`` and
``hearo device summary``.

* ``heard``: per class, the incidents detected in the period (each detection opens one or adds
  to the open one, so ``detections`` counts those too), by state;
* ``cancelled``: the cancels by kind (``false_alarm``, ``handled``, ``not_sure``; ``unspecified``
  for a cancel that gave none);
* ``threshold_changes``: each threshold step made in the period and each undone in it
  (:mod:`shared.incidents.threshold_adjustments`);
* ``text``: the same in one paragraph, in Korean and English, for the person.

It shows the device what the device saw: an incident cancelled under duress is counted as the
cancel it looked like (as :func:`~shared.incidents.views.view_of` shows it). The deployment's
published figures are :mod:`shared.incident_stats`'s, which count across devices.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, or_, select

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Incident, ThresholdAdjustment
from shared.incident_state import CancelKind, IncidentState
from shared.incidents.threshold_adjustments import Adjustment
from shared.taxonomy import CLASSES, by_key

DEFAULT_DAYS = 7
MAX_DAYS = 366  # the longest period one summary covers
UNSPECIFIED = "unspecified"  # a cancel that gave no kind


@dataclass
class ClassHeard:
    incidents: int = 0
    detections: int = 0
    states: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class DeviceSummary:
    since: datetime
    until: datetime
    heard: dict[str, ClassHeard]  # classes with incidents, in taxonomy order
    cancelled: dict[str, int]  # by kind, every kind
    changes: list[Adjustment]  # made or undone in the period, oldest first

    def to_json(self) -> dict[str, Any]:
        classes = [
            {"class": key, "label_en": by_key(key).label_en, "label_ko": by_key(key).label_ko,
             "incidents": heard.incidents, "detections": heard.detections, "states": heard.states}
            for key, heard in self.heard.items()
        ]  # fmt: skip
        return {
            "window": {"since": self.since.isoformat(), "until": self.until.isoformat()},
            "heard": {
                "incidents": sum(h.incidents for h in self.heard.values()),
                "detections": sum(h.detections for h in self.heard.values()),
                "classes": classes,
            },
            "cancelled": {"total": sum(self.cancelled.values()), "by_kind": self.cancelled},
            "reported": sum(h.states.get(IncidentState.DISPATCHED.value, 0) for h in self.heard.values()),
            "threshold_changes": [change.to_json() for change in self.changes],
            "text": {"en": self.text("en"), "ko": self.text("ko")},
        }

    def text(self, language: str) -> str:
        """The summary in a few sentences for the person (``en`` or ``ko``)."""
        ko = language == "ko"
        days = max(1, round((self.until - self.since).total_seconds() / 86400))
        total = sum(h.incidents for h in self.heard.values())
        parts = []
        if total == 0:
            parts.append(f"지난 {days}일 동안 들린 비상 소리가 없었어요." if ko
                         else f"In the last {days} days no emergency sound was heard.")  # fmt: skip
        else:
            unit = "건" if ko else ""
            kinds = ", ".join(f"{_name(key, ko)} {h.incidents}{unit}" for key, h in self.heard.items())
            parts.append(f"지난 {days}일 동안 {total}건을 들었어요 ({kinds})." if ko
                         else f"In the last {days} days Hear-o heard {total} emergency sound{'s' * (total > 1)} ({kinds}).")  # fmt: skip
        cancelled, false_alarms = sum(self.cancelled.values()), self.cancelled[CancelKind.FALSE_ALARM.value]
        if cancelled:
            parts.append(f"취소 {cancelled}건 (오경보 {false_alarms}건)." if ko
                         else f"You cancelled {cancelled} ({false_alarms} as false alarms).")  # fmt: skip
        for change in self.changes:
            name, moved = _name(change.class_key, ko), f"{change.threshold_from:.2f} → {change.threshold_to:.2f}"
            if change.created_at >= self.since:
                similar = len(change.evidence.get("incidents", []))
                parts.append(f"비슷한 오경보 {similar}건으로 {name} 기준이 올라갔어요 ({moved})." if ko
                             else f"After {similar} similar false alarms the {name} threshold rose ({moved}).")  # fmt: skip
            if change.undone_at is not None and self.since <= change.undone_at < self.until:
                parts.append(f"{name} 기준 변경({moved})을 되돌렸어요." if ko
                             else f"The {name} threshold change ({moved}) was undone.")  # fmt: skip
        return " ".join(parts)


def _name(class_key: str, ko: bool) -> str:
    cls = by_key(class_key)
    return cls.label_ko if ko else cls.label_en.lower()


async def device_summary(
    db: Database, device_id: uuid.UUID, *, since: datetime | None = None, until: datetime | None = None
) -> DeviceSummary:
    """The summary of ``[since, until)``: ``until`` defaults to the database's now, ``since`` to
    :data:`DEFAULT_DAYS` days before ``until``. Raises ValueError when ``since`` is not before
    ``until`` or they are more than :data:`MAX_DAYS` apart."""
    async with db.session() as session:
        end = until if until is not None else await session.scalar(select(db_now()))
        assert end is not None
        start = since if since is not None else end - timedelta(days=DEFAULT_DAYS)
        if not timedelta(0) < end - start <= timedelta(days=MAX_DAYS):
            raise ValueError(f"since must be before until, and at most {MAX_DAYS} days before it")
        duress = Incident.duress_at.is_not(None)
        rows = (
            await session.execute(
                select(Incident.class_key, Incident.state, Incident.cancel_kind, duress,
                       func.count(), func.coalesce(func.sum(Incident.detections), 0))
                .where(Incident.device_id == device_id, Incident.detected_at >= start, Incident.detected_at < end)
                .group_by(Incident.class_key, Incident.state, Incident.cancel_kind, duress)
            )
        ).all()  # fmt: skip
        adjustments = (
            await session.scalars(
                select(ThresholdAdjustment)
                .where(
                    ThresholdAdjustment.device_id == device_id,
                    or_(
                        (ThresholdAdjustment.created_at >= start) & (ThresholdAdjustment.created_at < end),
                        (ThresholdAdjustment.undone_at >= start) & (ThresholdAdjustment.undone_at < end),
                    ),
                )
                .order_by(ThresholdAdjustment.id)
            )
        ).all()
    heard: dict[str, ClassHeard] = {}
    cancelled = {kind.value: 0 for kind in CancelKind} | {UNSPECIFIED: 0}
    for class_key, state, kind, under_duress, count, detections in rows:
        shown = IncidentState.CANCELLED if under_duress else state  # as the device saw it
        class_heard = heard.setdefault(class_key, ClassHeard())
        class_heard.incidents += count
        class_heard.detections += int(detections)
        class_heard.states[shown.value] = class_heard.states.get(shown.value, 0) + count
        if shown is IncidentState.CANCELLED:
            cancelled[kind.value if kind is not None else UNSPECIFIED] += count
    ordered = {c.key: heard[c.key] for c in CLASSES if c.key in heard}
    return DeviceSummary(start, end, ordered, cancelled, [Adjustment.of(row) for row in adjustments])
