"""Incidents for the review loop's tests, made through the real lifecycle: opened on a detection
with a score timeline, a 30 s clip archived, then cancelled (and donated, or not), reported,
or left to the retention, as the review rules tell apart."""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sqlalchemy import update

from shared.clips import CLIP_AFTER_S, CLIP_BEFORE_S, LocalClipStore
from shared.db import Database
from shared.db.models import Incident
from shared.incident_privacy import DonationOutcome, donate_clip, expire_personal_data
from shared.incident_state import CancelKind, IncidentAction, IncidentState
from shared.incidents import ScorePoint, act_on_incident, archive_clip, open_incident
from tests.alerting_support import make_device

RATE = 16_000


def clip_store(folder: Path) -> LocalClipStore:
    return LocalClipStore(folder / "clips", "review-test-secret", "http://gw")


def clip_audio(seed: int, freq: float) -> np.ndarray:
    """A full clip (10 s before the detection, 20 s after): noise with a beeping tone."""
    t = np.arange(int((CLIP_BEFORE_S + CLIP_AFTER_S) * RATE)) / RATE
    noise = 0.05 * np.random.default_rng(seed).standard_normal(t.size)
    return (noise + 0.3 * np.sin(2 * np.pi * freq * t) * (np.sin(2 * np.pi * 2 * t) > 0)).astype(np.float32)


async def incident_with_clip(
    db: Database, store: LocalClipStore, device: uuid.UUID, class_key: str, *, seed: int = 0, freq: float = 3000.0
) -> uuid.UUID:
    scores = [ScorePoint(-0.5, 0.62), ScorePoint(0.0, 0.81), ScorePoint(0.5, 0.74, "crime")]
    opened = await open_incident(db, device_id=device, class_key=class_key, confidence=0.81, scores=scores)
    await archive_clip(db, store, opened.incident.id, clip_audio(seed, freq), RATE)
    return opened.incident.id


async def cancelled(db: Database, incident_id: uuid.UUID, *, donate: bool) -> None:
    result = await act_on_incident(db, incident_id, IncidentAction.CANCEL, reason="toaster", kind=CancelKind.FALSE_ALARM)
    assert result.incident is not None and result.incident.state == IncidentState.CANCELLED
    if donate:
        async with db.session() as session:
            device_id = (await session.get(Incident, incident_id)).device_id  # type: ignore[union-attr]
        assert (await donate_clip(db, incident_id, device_id)).outcome is DonationOutcome.DONATED


async def reported(db: Database, incident_id: uuid.UUID) -> None:
    # The sweeper and sender's outcome, set directly: what they do is not under test here.
    async with db.session() as session:
        await session.execute(
            update(Incident).where(Incident.id == incident_id).values(state=IncidentState.DISPATCHED, trigger="deadline")
        )


@dataclass
class Incidents:
    donated: uuid.UUID  # a fire false alarm the owner donated
    donated_gas: uuid.UUID  # another device's, also donated
    reported: uuid.UUID  # a crime report
    undonated: uuid.UUID  # cancelled, clip still in its grace period, not donated
    expired: uuid.UUID  # donated, then past the retention: no audio left
    pending: uuid.UUID  # its countdown still running
    devices: tuple[uuid.UUID, uuid.UUID, uuid.UUID]


async def make_incidents(db: Database, store: LocalClipStore) -> Incidents:
    """One incident of each kind the review rules tell apart (a device has one open at a time)."""
    devices = (await make_device(db), await make_device(db), await make_device(db))
    one, two, three = devices
    donated = await incident_with_clip(db, store, one, "fire", seed=1)
    await cancelled(db, donated, donate=True)
    reported_id = await incident_with_clip(db, store, one, "crime", seed=2, freq=800.0)
    await reported(db, reported_id)
    undonated = await incident_with_clip(db, store, two, "fire", seed=3)
    await cancelled(db, undonated, donate=False)
    expired = await incident_with_clip(db, store, two, "gas", seed=4)
    await cancelled(db, expired, donate=True)
    assert await expire_personal_data(db, store, expired, actor="retention")
    donated_gas = await incident_with_clip(db, store, three, "gas", seed=5, freq=1200.0)
    await cancelled(db, donated_gas, donate=True)
    pending = await incident_with_clip(db, store, two, "help", seed=6)
    return Incidents(donated, donated_gas, reported_id, undonated, expired, pending, devices)
