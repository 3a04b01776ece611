"""What the outcome ledger says about a deployment: ``GET /v1/stats`` and ``hearo stats``.

Per emergency class, over the incidents detected in a window (default the last 90 days):

* ``incidents``: detections that opened an incident;
* ``cancelled`` and ``cancel_rate`` (of ``incidents``); ``false_alarms`` and
  ``false_alarm_rate``: cancels of kind ``false_alarm`` (``incidents.cancel_kind``), or, from
  before cancels had a kind, whose reason is the web app's "false alarm" button
  (:data:`FALSE_ALARM_REASONS`; another reason or kind, or none, is a cancel but not counted a
  false alarm);
* ``reported``: incidents whose report reached an agency (a delivery ``sent``);
  ``median_detection_to_report_s``: detection to the first agency receiving it (the 60 s
  countdown included, shorter when the person pressed "report now");
* ``outcomes``: of the reported incidents an agency answered, how many it found a
  ``confirmed_emergency``, ``no_emergency_found`` or was ``unable_to_reach``; ``precision`` =
  confirmed / (confirmed + no emergency found); ``unable_to_reach_share`` = unable / answered.
  An incident reported to several agencies counts once: confirmed when any agency confirmed
  it, else no emergency when any found none, else unable to reach.

An incident cancelled under duress counts as the cancel its device showed (not as a report,
its agency's answer not counted): the figures are public, and in a deployment of one home a
report more would tell whoever forced the cancel.

No personal data: only counts and rates per class, never an incident or device id, a time
of a single incident, a name, place or note. Every figure covers at least ``min_count``
incidents (:data:`MIN_COUNT`): a class with fewer in the window is ``suppressed`` (all
figures null); within a published class, ``outcomes`` needs that many answered incidents
and the median that many reported ones. ``overall`` sums the published classes only, so no
difference of two published figures gives a suppressed class's numbers.

:func:`summarise` is the pure part (tests feed it hand-made records); :func:`incident_stats`
reads the records from the database.
"""

from __future__ import annotations

import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import func, select

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import DispatchOutbox, Incident, IncidentOutcomeRecord
from shared.incident_state import CancelKind, DeliveryState, IncidentOutcome, IncidentState
from shared.taxonomy import CLASSES, by_key

MIN_COUNT = 5
DEFAULT_DAYS = 90
# The cancel reasons that say "false alarm": the web app's button sends the first.
FALSE_ALARM_REASONS = frozenset({"false alarm", "false_alarm"})
# An incident's verdict when agencies disagree: the first of these any of them gave.
_VERDICT_ORDER = (IncidentOutcome.CONFIRMED_EMERGENCY, IncidentOutcome.NO_EMERGENCY_FOUND, IncidentOutcome.UNABLE_TO_REACH)


@dataclass(frozen=True)
class IncidentRecord:
    """What the stats read of one incident (nothing that identifies it or its person)."""

    class_key: str
    state: IncidentState
    cancel_reason: str | None
    detected_at: datetime
    reported_at: datetime | None  # when the first agency received the report
    outcomes: tuple[IncidentOutcome, ...] = ()
    cancel_kind: CancelKind | None = None

    @property
    def verdict(self) -> IncidentOutcome | None:
        return next((outcome for outcome in _VERDICT_ORDER if outcome in self.outcomes), None)

    @property
    def false_alarm(self) -> bool:
        reason = (self.cancel_reason or "").strip().lower()
        named = self.cancel_kind is CancelKind.FALSE_ALARM or (self.cancel_kind is None and reason in FALSE_ALARM_REASONS)
        return self.state is IncidentState.CANCELLED and named


@dataclass(frozen=True)
class OutcomeFigures:
    confirmed_emergency: int
    no_emergency_found: int
    unable_to_reach: int

    @property
    def answered(self) -> int:
        return self.confirmed_emergency + self.no_emergency_found + self.unable_to_reach

    @property
    def precision(self) -> float | None:
        judged = self.confirmed_emergency + self.no_emergency_found
        return None if judged == 0 else self.confirmed_emergency / judged

    @property
    def unable_to_reach_share(self) -> float | None:
        return None if self.answered == 0 else self.unable_to_reach / self.answered

    def to_json(self) -> dict[str, Any]:
        return {
            "answered": self.answered,
            "confirmed_emergency": self.confirmed_emergency,
            "no_emergency_found": self.no_emergency_found,
            "unable_to_reach": self.unable_to_reach,
            "precision": _rate(self.precision),
            "unable_to_reach_share": _rate(self.unable_to_reach_share),
        }


@dataclass(frozen=True)
class GroupFigures:
    """The figures of one class (or of the published classes together); None: suppressed."""

    incidents: int
    cancelled: int
    false_alarms: int
    reported: int
    outcomes: OutcomeFigures | None
    median_detection_to_report_s: float | None

    @property
    def cancel_rate(self) -> float:
        return self.cancelled / self.incidents

    @property
    def false_alarm_rate(self) -> float:
        return self.false_alarms / self.incidents

    def to_json(self) -> dict[str, Any]:
        return {
            "suppressed": False,
            "incidents": self.incidents,
            "cancelled": self.cancelled,
            "cancel_rate": _rate(self.cancel_rate),
            "false_alarms": self.false_alarms,
            "false_alarm_rate": _rate(self.false_alarm_rate),
            "reported": self.reported,
            "outcomes": None if self.outcomes is None else self.outcomes.to_json(),
            "median_detection_to_report_s": (
                None if self.median_detection_to_report_s is None else round(self.median_detection_to_report_s, 3)
            ),
        }


SUPPRESSED: dict[str, Any] = {
    "suppressed": True, "incidents": None, "cancelled": None, "cancel_rate": None, "false_alarms": None,
    "false_alarm_rate": None, "reported": None, "outcomes": None, "median_detection_to_report_s": None,
}  # fmt: skip


@dataclass(frozen=True)
class DeploymentStats:
    since: datetime
    until: datetime
    min_count: int
    classes: dict[str, GroupFigures | None]  # every emergency class, in taxonomy order
    overall: GroupFigures | None

    def to_json(self) -> dict[str, Any]:
        """The body of ``GET /v1/stats`` and of ``hearo stats --json``."""
        classes = []
        for key, figures in self.classes.items():
            cls = by_key(key)
            shown = SUPPRESSED if figures is None else figures.to_json()
            classes.append({"class": key, "label_en": cls.label_en, "label_ko": cls.label_ko, **shown})
        return {
            "window": {"since": self.since.isoformat(), "until": self.until.isoformat()},
            "min_count": self.min_count,
            "classes": classes,
            "overall": SUPPRESSED if self.overall is None else self.overall.to_json(),
        }


def summarise(
    records: Iterable[IncidentRecord], *, since: datetime, until: datetime, min_count: int = MIN_COUNT
) -> DeploymentStats:
    """The stats of ``records`` (the incidents detected in ``[since, until)``)."""
    if min_count < 1:
        raise ValueError("min_count is at least 1")
    by_class: dict[str, list[IncidentRecord]] = {cls.key: [] for cls in CLASSES if cls.is_emergency}
    for record in records:
        by_class[record.class_key].append(record)
    classes = {key: _figures(group, min_count) for key, group in by_class.items()}
    published = [record for key, group in by_class.items() if classes[key] is not None for record in group]
    return DeploymentStats(since, until, min_count, classes, _figures(published, min_count))


def _figures(records: Sequence[IncidentRecord], min_count: int) -> GroupFigures | None:
    if len(records) < min_count:
        return None
    reported = [r for r in records if r.reported_at is not None]
    verdicts = [v for r in reported if (v := r.verdict) is not None]
    outcomes = None
    if len(verdicts) >= min_count:
        outcomes = OutcomeFigures(*(verdicts.count(outcome) for outcome in _VERDICT_ORDER))
    delays = [(r.reported_at - r.detected_at).total_seconds() for r in reported if r.reported_at is not None]
    return GroupFigures(
        incidents=len(records),
        cancelled=sum(r.state is IncidentState.CANCELLED for r in records),
        false_alarms=sum(r.false_alarm for r in records),
        reported=len(reported),
        outcomes=outcomes,
        median_detection_to_report_s=statistics.median(delays) if len(delays) >= min_count else None,
    )


def _rate(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


async def incident_stats(
    db: Database,
    *,
    days: int = DEFAULT_DAYS,
    until: datetime | None = None,
    min_count: int = MIN_COUNT,
) -> DeploymentStats:
    """The deployment's stats over the ``days`` before ``until`` (default: the database's now)."""
    async with db.session() as session:
        end = until if until is not None else await session.scalar(select(db_now()))
        assert end is not None
        start = end - timedelta(days=days)
        window = (Incident.detected_at >= start, Incident.detected_at < end)
        incidents = (
            await session.execute(
                select(Incident.id, Incident.class_key, Incident.state, Incident.cancel_reason, Incident.detected_at,
                       Incident.duress_at, Incident.cancel_kind)
                .where(*window)
            )
        ).all()
        first_sent = {
            incident_id: sent_at
            for incident_id, sent_at in await session.execute(
                select(DispatchOutbox.incident_id, func.min(DispatchOutbox.sent_at))
                .join(Incident, Incident.id == DispatchOutbox.incident_id)
                .where(DispatchOutbox.state == DeliveryState.SENT, *window)
                .group_by(DispatchOutbox.incident_id)
            )
        }
        answers: dict[Any, list[IncidentOutcome]] = {}
        for incident_id, outcome in (
            await session.execute(
                select(IncidentOutcomeRecord.incident_id, IncidentOutcomeRecord.outcome)
                .join(Incident, Incident.id == IncidentOutcomeRecord.incident_id)
                .where(*window)
            )
        ):
            answers.setdefault(incident_id, []).append(outcome)
    records = [
        IncidentRecord(
            class_key, state, cancel_reason, detected_at, first_sent.get(incident_id),
            tuple(answers.get(incident_id, ())), cancel_kind,
        )
        if duress_at is None
        # Counted as its device saw it, a cancel: in a one-home deployment a report more in
        # the published figures would tell whoever forced the cancel (docs/security.md).
        else IncidentRecord(class_key, IncidentState.CANCELLED, cancel_reason, detected_at, None, (), cancel_kind)
        for incident_id, class_key, state, cancel_reason, detected_at, duress_at, cancel_kind in incidents
    ]
    return summarise(records, since=start, until=end, min_count=min_count)
