"""The published stats (shared/incident_stats.py): exact figures from hand-made incidents and
outcomes, the suppression of small classes, and the same figures read from the database."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import update

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import DispatchOutbox, Incident, IncidentOutcomeRecord
from shared.incident_state import DeliveryState, IncidentOutcome, IncidentState
from shared.incident_stats import IncidentRecord, incident_stats, summarise
from shared.incidents import open_incident
from tests.alerting_support import make_device

T0 = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
CONFIRMED, NO_EMERGENCY, UNREACHED = (
    IncidentOutcome.CONFIRMED_EMERGENCY, IncidentOutcome.NO_EMERGENCY_FOUND, IncidentOutcome.UNABLE_TO_REACH,
)


def reported(delay_s: float, *outcomes: IncidentOutcome, key: str = "fire") -> IncidentRecord:
    return IncidentRecord(key, IncidentState.DISPATCHED, None, T0, T0 + timedelta(seconds=delay_s), outcomes)


def cancelled(reason: str | None, key: str = "fire") -> IncidentRecord:
    return IncidentRecord(key, IncidentState.CANCELLED, reason, T0, None)


def fire_records() -> list[IncidentRecord]:
    return [
        reported(60, CONFIRMED),
        reported(61, CONFIRMED, NO_EMERGENCY),  # two agencies disagree: any confirmation wins
        reported(62, NO_EMERGENCY),
        reported(63, UNREACHED),
        reported(20, CONFIRMED),  # "report now"
        reported(64),  # no answer yet
        cancelled("false alarm"),
        cancelled("False Alarm "),
        cancelled("handled it"),
        cancelled(None),
        IncidentRecord("fire", IncidentState.PENDING, None, T0, None),
    ]


def test_exact_figures_of_one_class() -> None:
    stats = summarise(fire_records(), since=T0 - timedelta(days=90), until=T0 + timedelta(days=1))
    fire = stats.to_json()["classes"][4]
    assert fire["class"] == "fire" and fire["suppressed"] is False
    assert fire["incidents"] == 11
    assert (fire["cancelled"], fire["cancel_rate"]) == (4, round(4 / 11, 4))
    assert (fire["false_alarms"], fire["false_alarm_rate"]) == (2, round(2 / 11, 4))
    assert fire["reported"] == 6
    assert fire["outcomes"] == {
        "answered": 5, "confirmed_emergency": 3, "no_emergency_found": 1, "unable_to_reach": 1,
        "precision": 0.75, "unable_to_reach_share": 0.2,
    }
    assert fire["median_detection_to_report_s"] == 61.5  # of 20, 60, 61, 62, 63, 64


def test_an_answer_changes_the_precision() -> None:
    since, until = T0 - timedelta(days=1), T0 + timedelta(days=1)
    records = fire_records()
    before = summarise(records, since=since, until=until).to_json()["classes"][4]["outcomes"]["precision"]
    records[5] = reported(64, NO_EMERGENCY)
    after = summarise(records, since=since, until=until).to_json()["classes"][4]["outcomes"]["precision"]
    assert (before, after) == (0.75, 0.6)


def test_small_groups_are_suppressed_and_overall_sums_only_the_published() -> None:
    records = fire_records() + [reported(30, CONFIRMED, key="gas") for _ in range(4)]
    stats = summarise(records, since=T0, until=T0 + timedelta(days=1)).to_json()
    by_class = {c["class"]: c for c in stats["classes"]}
    assert list(by_class) == ["crime", "trapped", "electric", "gas", "fire", "medical", "accident", "help"]
    assert by_class["gas"]["suppressed"] is True and by_class["gas"]["incidents"] is None
    assert by_class["crime"]["suppressed"] is True  # none at all looks the same as a few
    assert stats["overall"]["incidents"] == 11  # the four gas incidents are not in it
    # Published class, but too few answers for a precision or reports for a median.
    few = [reported(60, CONFIRMED, key="medical")] * 4 + [cancelled("false alarm", key="medical")] * 3
    medical = {c["class"]: c for c in summarise(few, since=T0, until=T0).to_json()["classes"]}["medical"]
    assert medical["incidents"] == 7 and medical["outcomes"] is None and medical["median_detection_to_report_s"] is None
    assert "device_id" not in str(stats) and "incident_id" not in str(stats)


def test_min_count_is_at_least_one() -> None:
    with pytest.raises(ValueError):
        summarise([], since=T0, until=T0, min_count=0)


async def test_read_from_the_database(db: Database) -> None:
    device = await make_device(db)
    ids = []
    for _ in range(5):
        # Each its own event (no report continues another): a new incident each time.
        opened = (await open_incident(db, device_id=device, class_key="crime", confidence=0.8, same_event_s=0)).incident
        ids.append(opened.id)
        # Settle it at once (one open incident per device), reported 60 s after the detection.
        async with db.session() as session:
            await session.execute(update(Incident).where(Incident.id == opened.id).values(state=IncidentState.DISPATCHED))
            session.add(DispatchOutbox(
                incident_id=opened.id, agency_id="112", position=0, kind="webhook", state=DeliveryState.SENT,
                attempts=1, next_attempt_at=db_now(), created_at=db_now(),
                sent_at=opened.detected_at + timedelta(seconds=60),
            ))  # fmt: skip
    verdicts = [CONFIRMED, CONFIRMED, CONFIRMED, NO_EMERGENCY, UNREACHED]
    async with db.session() as session:
        for incident_id, outcome in zip(ids, verdicts):
            session.add(IncidentOutcomeRecord(
                incident_id=incident_id, agency_id="112", outcome=outcome, message_id=uuid.uuid4().hex,
                signed_at=T0, received_at=db_now(),
            ))  # fmt: skip
    crime = (await incident_stats(db)).to_json()["classes"][0]
    assert crime["class"] == "crime" and crime["incidents"] == 5 and crime["reported"] == 5
    assert crime["outcomes"]["precision"] == 0.75 and crime["outcomes"]["unable_to_reach_share"] == 0.2
    assert crime["median_detection_to_report_s"] == pytest.approx(60.0, abs=0.01)
    # A window that ends before them holds none.
    assert (await incident_stats(db, until=T0 - timedelta(days=400))).to_json()["classes"][0]["suppressed"] is True
