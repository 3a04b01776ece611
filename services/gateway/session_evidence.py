"""A session keeps listening during the countdown: what it hears after a detection becomes
evidence of the incident that detection opened or joined.

After each classified window the incident's class's smoothed score (and any other emergency
class at half its threshold or more) joins the incident's score timeline, and the facts of
``shared.incidents.evidence`` are counted: the class detected again (its score back at the
threshold after falling below its release level, a full alarm-pattern match, a detector event
the scores alone did not make), another emergency class detected, a distress phrase, and how
much of the time the class was quiet. Once per ``EvidencePolicy.flush_s`` of audio the batch
is written (``record_evidence``: timeline, mark, perhaps an earlier deadline) as work of its
own, one write at a time in order; while one is in flight the next batch grows instead, so
classification never waits for the database. The incident becomes known only when its
opening write returns (``attach``); until then the points wait here.

Tracking ends when a write finds the incident no longer pending (cancelled, being reported);
the next detection starts it again, on the incident it opens or joins.

With spoken words (``session_spoken``) each batch also names the distress phrases heard from
the fusion's window before the detection on ("heard: '살려주세요' ×2"): the dispatcher reads them.
"""

from __future__ import annotations

import asyncio
import logging
import math
import uuid
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.gateway.session_incidents import IncidentBackend
from services.gateway.session_spoken import SessionSpoken
from shared.alarm_patterns import AlarmPatternMatch
from shared.db import retry_when_busy
from shared.detector import DetectionEvent, DetectorConfig
from shared.incidents import MAX_TIMELINE_POINTS, EvidenceFacts, OpenedIncident, ScorePoint, record_evidence
from shared.spoken import summarise
from shared.taxonomy import CLASSES

log = logging.getLogger(__name__)

# Another emergency class joins the timeline once its smoothed score reaches this share of
# its threshold: low enough to show a second sound building up, high enough to leave noise out.
OTHER_CLASS_SHARE = 0.5


@dataclass
class _Tracked:
    """One incident's countdown as this session hears it; ``t`` is stream time from ``anchor_s``
    (the detection), plus ``offset_s`` when the detection joined an incident opened earlier."""

    class_key: str
    anchor_s: float
    incident_id: uuid.UUID | None = None
    offset_s: float = 0.0
    renewals: Counter[str] = field(default_factory=Counter)
    patterns: set[str] = field(default_factory=set)
    spoken: bool = False
    heard_s: float = 0.0
    quiet_s: float = 0.0
    armed: dict[str, bool] = field(default_factory=dict)  # below release since its last onset
    onsets: dict[str, float] = field(default_factory=dict)  # the stream time of each class's last onset
    points: list[ScorePoint] = field(default_factory=list)  # heard, not yet written
    flushed_s: float = 0.0

    def facts(self, phrases: str | None = None) -> EvidenceFacts:
        return EvidenceFacts(
            self.class_key, dict(self.renewals), frozenset(self.patterns), self.spoken, self.heard_s, self.quiet_s,
            phrases,
        )


class CountdownEvidence:
    """One session's evidence of its incidents' countdowns (module docstring)."""

    def __init__(
        self, backend: IncidentBackend, config: DetectorConfig, session_id: str, spoken: SessionSpoken | None = None
    ) -> None:
        self._backend = backend
        self._config = config
        self._session_id = session_id
        self._spoken = spoken
        self._tracked: _Tracked | None = None
        self._writing: asyncio.Task[None] | None = None

    @property
    def tracking(self) -> uuid.UUID | None:
        """The incident being listened for, once its opening write has returned."""
        return None if self._tracked is None else self._tracked.incident_id

    def detected(self, event: DetectionEvent) -> None:
        """A detection: it starts tracking, or is evidence of the incident tracked."""
        key, tracked = event.emergency_class.key, self._tracked
        if tracked is None:
            self._tracked = self._start(event)
            return
        if event.pattern is not None or tracked.onsets.get(key) == event.stream_time_s:
            return  # counted already, as the match (``matched``) or the score's onset (``heard``)
        tracked.renewals[key] += 1
        tracked.spoken = tracked.spoken or event.spoken is not None

    def matched(self, match: AlarmPatternMatch) -> None:
        """An alarm pattern match, before the detector observes it."""
        tracked = self._tracked
        if tracked is None or match.partial or match.stream_time_s <= tracked.anchor_s:
            return
        tracked.patterns.add(match.class_key)
        tracked.renewals[match.class_key] += 1

    def heard(self, end_s: float, smoothed: np.ndarray) -> None:
        """A classified window's smoothed scores (after the detector took it)."""
        tracked = self._tracked
        if tracked is None or end_s <= tracked.anchor_s:
            return
        t, cfg = end_s - tracked.anchor_s, self._config
        for cls in CLASSES:
            if not cls.is_emergency:
                continue
            score, threshold = float(smoothed[cls.id]), cfg.thresholds[cls.key]
            quiet = score < threshold * cfg.release_ratio
            if cls.key == tracked.class_key:
                tracked.heard_s += cfg.hop_s
                tracked.quiet_s += cfg.hop_s if quiet else 0.0
            if cls.key == tracked.class_key or score >= OTHER_CLASS_SHARE * threshold:
                tracked.points.append(ScorePoint(t, score, cls.key))
            if tracked.armed.get(cls.key, True) and score >= threshold:
                tracked.renewals[cls.key] += 1
                tracked.onsets[cls.key] = end_s
                tracked.armed[cls.key] = False
            elif quiet:
                tracked.armed[cls.key] = True
        del tracked.points[:-MAX_TIMELINE_POINTS]
        if t - tracked.flushed_s >= self._backend.evidence.flush_s:
            self._flush(tracked, t)

    def attach(self, event: DetectionEvent, opened: OpenedIncident | None) -> None:
        """The write of ``event``'s detection returned ``opened`` (None: it failed)."""
        tracked = self._tracked
        if opened is None:
            if tracked is not None and tracked.incident_id is None:
                self._tracked = None  # its incident was never recorded: nothing to add to
            return
        if tracked is None or (tracked.incident_id is not None and tracked.incident_id != opened.incident.id):
            tracked = self._tracked = self._start(event)  # a new incident after the last one ended
        if tracked.incident_id is None:
            tracked.incident_id = opened.incident.id
            tracked.offset_s = opened.since_detected_s
            if not opened.created:  # it joined an incident opened earlier: a detection again
                tracked.renewals[tracked.class_key] += 1
                tracked.class_key = opened.incident.class_key
                tracked.armed[tracked.class_key] = False

    def finish(self) -> None:
        """The audio ended: write what is still held (the write outlives the session)."""
        if self._tracked is not None and self._tracked.points:
            self._flush(self._tracked, self._tracked.flushed_s, force=True)

    def _start(self, event: DetectionEvent) -> _Tracked:
        key = event.emergency_class.key
        return _Tracked(key, event.stream_time_s, patterns={key} if event.pattern else set(), armed={key: False})

    def _flush(self, tracked: _Tracked, t: float, force: bool = False) -> None:
        busy = self._writing is not None and not self._writing.done()
        if tracked.incident_id is None or (busy and not force):
            return  # the batch grows until the incident is known and the last write is done
        points = [ScorePoint(p.t + tracked.offset_s, p.score, p.class_key) for p in tracked.points]
        tracked.points, tracked.flushed_s = [], t
        self._writing = self._backend.spawn(
            self._write(self._writing, tracked, tracked.incident_id, points, tracked.facts(self._phrases(tracked))),
            name=f"session-{self._session_id}-evidence",
        )

    def _phrases(self, tracked: _Tracked) -> str | None:
        """The phrases heard from the fusion's window before the detection on."""
        if self._spoken is None:
            return None
        since_s = tracked.anchor_s - self._spoken.fusion.config.window_s
        return summarise(self._spoken.heard_between(since_s, math.inf)) or None

    async def _write(
        self, earlier: asyncio.Task[Any] | None, tracked: _Tracked, incident_id: uuid.UUID,
        points: list[ScorePoint], facts: EvidenceFacts,
    ) -> None:  # fmt: skip
        if earlier is not None:
            await asyncio.wait({earlier})
        backend = self._backend
        try:
            recorded = await retry_when_busy(lambda: record_evidence(
                backend.db, incident_id, points=points, facts=facts, policy=backend.evidence,
                countdown_s=backend.countdown_s, events=backend.events,
            ))  # fmt: skip
        except Exception as error:  # a lost batch loses points, never the incident
            log.warning("session %s: evidence for incident %s not recorded: %s", self._session_id, incident_id, error)
            return
        if recorded is None and self._tracked is tracked:
            self._tracked = None  # cancelled or being reported: nothing more to add
        elif recorded is not None and recorded.shortening is not None:
            log.info("session %s: incident %s deadline moved to %s (%s)", self._session_id, incident_id,
                     recorded.shortening.deadline_at.isoformat(), recorded.shortening.reason)  # fmt: skip
