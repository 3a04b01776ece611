"""A home's learned thresholds in the database (``threshold_adjustments``): learn from a false
alarm, read what applies, undo, and show the log.

The rule is :mod:`shared.incidents.threshold_learning`'s. A device's threshold for a class is
its newest adjustment not undone, bounded under the base it is read with
(:meth:`~shared.incidents.threshold_learning.LearningBounds.bounded`); with none, the base.
Every adjustment is a row that stays: an undo stamps ``undone_at`` (on that adjustment and the
newer ones of its class: the threshold goes back to what it was before it), and each step and
undo is also written to the audit trail of the incident whose cancel made the step.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Incident, ThresholdAdjustment
from shared.incident_state import CancelKind, IncidentState
from shared.incidents.audit import add_audit
from shared.incidents.threshold_learning import FalseAlarm, LearningBounds, LearningPolicy, lesson
from shared.taxonomy import CLASSES

# ``threshold_adjustments.reason`` of a step the home's false-alarm cancels made.
LEARNED_FROM_FALSE_ALARMS = "false_alarms"


@dataclass(frozen=True)
class Adjustment:
    """One change of one class's threshold on one device, as the settings show it."""

    id: int
    device_id: uuid.UUID
    class_key: str
    threshold_from: float
    threshold_to: float
    reason: str
    evidence: dict[str, Any]
    created_at: datetime
    undone_at: datetime | None

    @classmethod
    def of(cls, row: ThresholdAdjustment) -> Adjustment:
        return cls(
            row.id, row.device_id, row.class_key, row.threshold_from, row.threshold_to, row.reason,
            dict(row.evidence), row.created_at, row.undone_at,
        )  # fmt: skip

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "class": self.class_key,
            "threshold_from": self.threshold_from,
            "threshold_to": self.threshold_to,
            "reason": self.reason,
            "evidence": self.evidence,
            "created_at": self.created_at.isoformat(),
            "undone_at": None if self.undone_at is None else self.undone_at.isoformat(),
        }


async def learn_from_false_alarm(
    db: Database, incident_id: uuid.UUID, *, base: Mapping[str, float], policy: LearningPolicy
) -> Adjustment | None:
    """Run the rule for the incident just cancelled as a false alarm: the new adjustment, or
    None (learning off, not a false-alarm cancel, too few similar ones, or at the ceiling,
    which is audited). ``base``: the gateway's thresholds without learning, per class."""
    if not policy.enabled:
        return None
    async with db.session() as session:
        incident = await session.get(Incident, incident_id)
        if incident is None or incident.state is not IncidentState.CANCELLED:
            return None
        if incident.cancel_kind is not CancelKind.FALSE_ALARM or incident.class_key not in base:
            return None
        device_id, class_key = incident.device_id, incident.class_key
        now = await session.scalar(select(db_now()))
        assert now is not None
        history = await _rows(session, device_id, class_key)
        since = max([now - timedelta(days=policy.window_days), *(_changed_at(row) for row in history)])
        earlier = (
            await session.execute(
                select(Incident.id, Incident.detected_at, Incident.sound_signature).where(
                    Incident.device_id == device_id,
                    Incident.class_key == class_key,
                    Incident.state == IncidentState.CANCELLED,
                    Incident.cancel_kind == CancelKind.FALSE_ALARM,
                    Incident.detected_at >= since,
                )
            )
        ).all()
        bounds, class_base = policy.bounds(class_key), base[class_key]
        taught = lesson(
            FalseAlarm(incident.id, incident.detected_at, incident.sound_signature),
            [FalseAlarm(*row) for row in earlier],
            current=_current(history, class_base, bounds),
            base=class_base,
            bounds=bounds,
            min_similarity=policy.similarity,
        )
        if taught is None:
            return None
        evidence = taught.evidence(class_key, class_base, bounds, policy)
        if not taught.raises:
            at_ceiling = {**evidence, "threshold": taught.threshold_to}
            add_audit(session, incident_id, "learning", "threshold_at_ceiling", at_ceiling)
            return None
        row = ThresholdAdjustment(
            device_id=device_id, class_key=class_key, threshold_from=taught.threshold_from,
            threshold_to=taught.threshold_to, reason=LEARNED_FROM_FALSE_ALARMS,
            evidence={**evidence, "incident_id": str(incident_id)}, created_at=db_now(),
        )  # fmt: skip
        session.add(row)
        await session.flush()
        await session.refresh(row)
        add_audit(session, incident_id, "learning", "threshold_raised", {
            "adjustment_id": row.id, "class": class_key, "from": row.threshold_from, "to": row.threshold_to,
        })  # fmt: skip
        return Adjustment.of(row)


async def learned_thresholds(
    db: Database, device_ids: Collection[uuid.UUID], *, base: Mapping[str, float], policy: LearningPolicy
) -> dict[uuid.UUID, dict[str, float]]:
    """Per device, its thresholds that learning raised above ``base`` (only those classes;
    devices with none are left out). One query for all of them."""
    if not device_ids:
        return {}
    async with db.session() as session:
        rows = (
            await session.scalars(
                select(ThresholdAdjustment)
                .where(ThresholdAdjustment.device_id.in_(list(device_ids)), ThresholdAdjustment.undone_at.is_(None))
                .order_by(ThresholdAdjustment.id)
            )
        ).all()
    learned: dict[uuid.UUID, dict[str, float]] = {}
    for row in rows:  # oldest first: the newest of each class is written last
        if row.class_key in base:
            class_base = base[row.class_key]
            current = policy.bounds(row.class_key).bounded(row.threshold_to, class_base)
            learned.setdefault(row.device_id, {})[row.class_key] = current
    return {
        device_id: raised
        for device_id, thresholds in learned.items()
        if (raised := {key: value for key, value in thresholds.items() if value > base[key]})
    }


async def undo_adjustment(db: Database, device_id: uuid.UUID, adjustment_id: int) -> list[Adjustment] | None:
    """Undo the device's adjustment ``adjustment_id`` and the newer ones of its class still in
    force: the threshold is back to what it was before it. Returns the adjustments undone now
    (empty when it was undone already), or None when the device has no such adjustment."""
    async with db.session() as session:
        target = await session.get(ThresholdAdjustment, adjustment_id)
        if target is None or target.device_id != device_id:
            return None
        undone = (
            await session.scalars(
                update(ThresholdAdjustment)
                .where(
                    ThresholdAdjustment.device_id == device_id,
                    ThresholdAdjustment.class_key == target.class_key,
                    ThresholdAdjustment.id >= adjustment_id,
                    ThresholdAdjustment.undone_at.is_(None),
                )
                .values(undone_at=db_now())
                .returning(ThresholdAdjustment)
                .execution_options(synchronize_session=False)
            )
        ).all()
        incident_id = target.evidence.get("incident_id")
        # On the trail of the incident whose cancel made the step (the row's undone_at says it
        # in any case): never a trail entry of its own, which would outlive the device's erasure.
        if undone and incident_id and await session.get(Incident, uuid.UUID(incident_id)) is not None:
            add_audit(session, uuid.UUID(incident_id), "owner", "threshold_undone", {
                "class": target.class_key, "adjustments": sorted(row.id for row in undone),
                "threshold": target.threshold_from,
            })  # fmt: skip
        return [Adjustment.of(row) for row in sorted(undone, key=lambda row: row.id)]


async def threshold_log(
    db: Database, device_id: uuid.UUID, *, since: datetime | None = None, until: datetime | None = None
) -> list[Adjustment]:
    """The device's adjustments made in ``[since, until)`` (all by default), oldest first,
    undone ones included."""
    query = select(ThresholdAdjustment).where(ThresholdAdjustment.device_id == device_id)
    if since is not None:
        query = query.where(ThresholdAdjustment.created_at >= since)
    if until is not None:
        query = query.where(ThresholdAdjustment.created_at < until)
    async with db.session() as session:
        rows = (await session.scalars(query.order_by(ThresholdAdjustment.id))).all()
    return [Adjustment.of(row) for row in rows]


def threshold_settings(
    base: Mapping[str, float], policy: LearningPolicy, log: Sequence[Adjustment]
) -> list[dict[str, Any]]:
    """Per emergency class, in taxonomy order: its base, the threshold in force, the ceiling
    learning may reach, how it learns, and its adjustments (oldest first)."""
    classes = []
    for cls in CLASSES:
        if not cls.is_emergency or cls.key not in base:
            continue
        bounds, class_base = policy.bounds(cls.key), base[cls.key]
        mine = [adjustment for adjustment in log if adjustment.class_key == cls.key]
        classes.append({
            "class": cls.key, "label_en": cls.label_en, "label_ko": cls.label_ko,
            "base": class_base, "current": _current(mine, class_base, bounds), "ceiling": bounds.ceiling(class_base),
            "learning": {"min_cancels": bounds.min_cancels, "step_share": bounds.step_share,
                         "max_share": bounds.max_share},
            "adjustments": [adjustment.to_json() for adjustment in mine],
        })  # fmt: skip
    return classes


async def _rows(session: AsyncSession, device_id: uuid.UUID, class_key: str | None = None) -> list[Adjustment]:
    query = select(ThresholdAdjustment).where(ThresholdAdjustment.device_id == device_id)
    if class_key is not None:
        query = query.where(ThresholdAdjustment.class_key == class_key)
    return [Adjustment.of(row) for row in (await session.scalars(query.order_by(ThresholdAdjustment.id))).all()]


def _current(adjustments: Sequence[Adjustment], base: float, bounds: LearningBounds) -> float:
    """The threshold in force from one class's ``adjustments`` (oldest first): the newest not
    undone, bounded under ``base``; with none, the base."""
    active = [adjustment for adjustment in adjustments if adjustment.undone_at is None]
    return bounds.bounded(active[-1].threshold_to, base) if active else base


def _changed_at(adjustment: Adjustment) -> datetime:
    return adjustment.undone_at if adjustment.undone_at is not None else adjustment.created_at
