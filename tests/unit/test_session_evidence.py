"""services.gateway.session_evidence on SQLite: what a session hears during a countdown is
written in batches (not per window), never holds up the windows, and moves the mark and the
deadline as the policy says."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from typing import Any, cast

import numpy as np
import pytest

import services.gateway.session_evidence as session_evidence
from services.gateway.session_evidence import CountdownEvidence
from services.gateway.session_incidents import IncidentBackend
from shared.alarm_patterns import AlarmPatternMatch
from shared.clips import ClipStore
from shared.db import Database
from shared.detector import DetectionEvent, DetectorConfig
from shared.incident_events import LocalIncidentEvents
from shared.incident_state import EvidenceMark, IncidentAction, IncidentState
from shared.incident_watcher import IncidentWatcher
from shared.incidents import EvidencePolicy, act_on_incident, get_incident, open_incident
from shared.taxonomy import NUM_CLASSES, by_key
from tests.alerting_support import make_device

CONFIG = DetectorConfig.build(0.5, hop_s=0.5)  # release level 0.3
COUNTDOWN_S = 16.0
FIRE, GAS = by_key("fire"), by_key("gas")


def scores(fire: float, gas: float = 0.0) -> np.ndarray:
    row = np.zeros(NUM_CLASSES)
    row[FIRE.id], row[GAS.id] = fire, gas
    return row


@pytest.fixture
async def backend(sqlite_db: Database) -> AsyncIterator[IncidentBackend]:
    events = LocalIncidentEvents()
    backend = IncidentBackend(
        sqlite_db, events, IncidentWatcher(sqlite_db, events), cast(ClipStore, None), countdown_s=COUNTDOWN_S,
        evidence=EvidencePolicy(flush_s=2.0),
    )  # fmt: skip
    yield backend
    await backend.drain(5.0)


@pytest.fixture
def writes(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """How many points each write carried."""
    carried: list[int] = []
    real = session_evidence.record_evidence

    async def counted(*args: Any, **kwargs: Any) -> Any:
        carried.append(len(kwargs["points"]))
        return await real(*args, **kwargs)

    monkeypatch.setattr(session_evidence, "record_evidence", counted)
    return carried


async def detected(backend: IncidentBackend, evidence: CountdownEvidence, at_s: float = 3.0) -> uuid.UUID:
    event = DetectionEvent(FIRE, 0.8, at_s)
    evidence.detected(event)
    opened = await open_incident(
        backend.db, device_id=await make_device(backend.db), class_key="fire", confidence=0.8,
        countdown_s=COUNTDOWN_S,
    )  # fmt: skip
    evidence.attach(event, opened)
    return opened.incident.id


async def settle(backend: IncidentBackend) -> None:
    await asyncio.sleep(0)
    await backend.drain(5.0)


async def test_windows_are_written_in_batches_and_the_alarm_going_on_is_steady(
    backend: IncidentBackend, writes: list[int]
) -> None:
    evidence = CountdownEvidence(backend, CONFIG, "s")
    incident_id = await detected(backend, evidence)
    for i in range(1, 21):  # 10 s of the alarm going on, the score never falling to release
        evidence.heard(3.0 + 0.5 * i, scores(0.9, gas=0.1))
        await settle(backend)
    evidence.finish()
    await settle(backend)
    assert len(writes) == 5 and sum(writes) == 20  # one write per 2 s of audio, every point once
    view = await get_incident(backend.db, incident_id)
    assert view is not None and view.evidence is EvidenceMark.STEADY
    assert [p["t"] for p in view.score_timeline] == [0.5 * i for i in range(1, 21)]
    assert {p["class"] for p in view.score_timeline} == {"fire"}  # gas at 0.1 is below half its threshold
    assert view.seconds_left > COUNTDOWN_S - 3  # steady: the deadline is untouched


async def test_a_slow_write_never_holds_up_a_window_and_the_next_batch_grows_meanwhile(
    backend: IncidentBackend, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    carried: list[int] = []

    async def slow(*args: Any, **kwargs: Any) -> None:
        carried.append(len(kwargs["points"]))
        await release.wait()

    monkeypatch.setattr(session_evidence, "record_evidence", slow)
    evidence = CountdownEvidence(backend, CONFIG, "s")
    await detected(backend, evidence)
    for i in range(1, 41):  # 20 s of audio while the first write hangs: heard() never waits
        evidence.heard(3.0 + 0.5 * i, scores(0.9))
        await asyncio.sleep(0)
    assert carried == [4]  # one write in flight; the rest wait here
    release.set()
    evidence.heard(23.5, scores(0.9))
    evidence.finish()
    await settle(backend)
    assert carried[0] == 4 and sum(carried) == 41 and len(carried) <= 3


async def test_alarm_pattern_and_another_emergency_make_it_growing_and_fire_is_reported_sooner(
    backend: IncidentBackend, writes: list[int]
) -> None:
    evidence = CountdownEvidence(backend, CONFIG, "s")
    incident_id = await detected(backend, evidence)
    before = await get_incident(backend.db, incident_id)
    evidence.heard(3.5, scores(0.9, gas=0.3))  # gas at half its threshold joins the timeline
    evidence.matched(AlarmPatternMatch("temporal3", "fire", 0.9, 3.6, 3100.0))
    evidence.detected(DetectionEvent(FIRE, 0.9, 3.6, pattern="temporal3"))  # the match's own event: counted once
    for i in range(2, 5):
        evidence.heard(3.0 + 0.5 * i, scores(0.9))
    await settle(backend)
    view = await get_incident(backend.db, incident_id)
    assert before is not None and view is not None
    assert view.evidence is EvidenceMark.GROWING and view.evidence_summary is not None
    assert view.evidence_summary["renewals"] == {"fire": 1} and view.evidence_summary["alarm_patterns"] == ["fire"]
    assert view.deadline_at == before.detected_at + (before.deadline_at - before.detected_at) / 2
    assert ("gas" in {p["class"] for p in view.score_timeline}) and view.state is IncidentState.PENDING


async def test_the_score_back_at_the_threshold_is_a_second_detection(backend: IncidentBackend, writes: list[int]) -> None:
    evidence = CountdownEvidence(backend, CONFIG, "s")
    incident_id = await detected(backend, evidence)
    for i, fire in enumerate([0.9, 0.2, 0.2, 0.6], start=1):  # falls below release, then back
        evidence.heard(3.0 + 0.5 * i, scores(fire))
    evidence.detected(DetectionEvent(FIRE, 0.6, 5.0))  # the detector's own onset of that window
    evidence.finish()
    await settle(backend)
    view = await get_incident(backend.db, incident_id)
    assert view is not None and view.evidence_summary is not None
    assert view.evidence_summary["renewals"] == {"fire": 1} and view.evidence is EvidenceMark.GROWING


async def test_back_to_normal_sound_is_faded_and_never_cancels(backend: IncidentBackend, writes: list[int]) -> None:
    evidence = CountdownEvidence(backend, CONFIG, "s")
    incident_id = await detected(backend, evidence)
    for i in range(1, 17):  # 1 s more alarm, then 7 s of room sound
        evidence.heard(3.0 + 0.5 * i, scores(0.9 if i <= 2 else 0.05))
        await settle(backend)
    evidence.finish()
    await settle(backend)
    view = await get_incident(backend.db, incident_id)
    assert view is not None and view.evidence is EvidenceMark.FADED and view.state is IncidentState.PENDING
    assert view.evidence_summary is not None and view.evidence_summary["quiet_share"] == 0.875


async def test_listening_ends_when_the_incident_is_cancelled(backend: IncidentBackend, writes: list[int]) -> None:
    evidence = CountdownEvidence(backend, CONFIG, "s")
    incident_id = await detected(backend, evidence)
    await act_on_incident(backend.db, incident_id, IncidentAction.CANCEL)
    for i in range(1, 6):
        evidence.heard(3.0 + 0.5 * i, scores(0.9))
    await settle(backend)
    assert evidence.tracking is None  # the write found it cancelled
    view = await get_incident(backend.db, incident_id)
    assert view is not None and view.state is IncidentState.CANCELLED and view.score_timeline == []
