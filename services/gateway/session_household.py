"""A household device's session: it posts what it hears to its home's activity board, and
asks the board, a few seconds after each incident it opens, whether the other devices of the
home heard it too (docs/evidence.md, "Several devices in one home").

* ``heard``: after the detector took a window, a :class:`~shared.household.WindowSummary`
  (when it arrived, its loudness, the emergency classes' smoothed scores at or above the
  policy's floor, the alarm rhythms matched since the last window) goes to the board. Posting
  returns at once and never raises (:class:`~shared.household.ActivityBoard`).
* ``corroborate``: once the incident a detection opened is written, work of its own waits
  until ``settle_s`` after the detection (so the other devices' windows of that moment are
  on the board), reads the household's devices and their windows, judges
  (:func:`~shared.household.judge_corroboration`), writes the judgement
  (:func:`~shared.household.record_corroboration`, which may bring the deadline forward) and
  tells the client (an ``incident`` message with ``corroboration``). It never holds up
  classification or the incident, and a failure only leaves the incident unjudged.

A session of a device without a household does none of this.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np

from services.gateway.audio import Window
from services.gateway.incident_messages import incident_message
from services.gateway.session_incidents import IncidentBackend
from shared.alarm_patterns import AlarmPatternMatch
from shared.db import Device
from shared.detector import DetectorConfig
from shared.household import (
    ActivityBoard,
    CorroborationPolicy,
    WindowSummary,
    household_peers,
    judge_corroboration,
    record_corroboration,
)
from shared.protocol import Message
from shared.taxonomy import CLASSES

log = logging.getLogger(__name__)

_EMERGENCY = [(c.id, c.key) for c in CLASSES if c.is_emergency]


@dataclass(frozen=True)
class HouseholdFusion:
    """The gateway's household machinery, shared by its sessions: the board and the policy."""

    board: ActivityBoard
    policy: CorroborationPolicy


class HouseholdListening:
    """One session of a device of household ``device.household_id`` (module docstring)."""

    def __init__(
        self,
        fusion: HouseholdFusion,
        backend: IncidentBackend,
        device: Device,
        config: DetectorConfig,
        session_id: str,
        send: Callable[[Message], Awaitable[None]],
    ) -> None:
        if device.household_id is None:
            raise ValueError("the device has no household")
        self._fusion = fusion
        self._backend = backend
        self._household_id: uuid.UUID = device.household_id
        self._device_id = device.id
        self._config = config
        self._session_id = session_id
        self._send = send
        self._patterns: set[str] = set()  # matched since the last window
        self._latest: tuple[float, float] | None = None  # the last window's (end_s, heard_at)

    def matched(self, match: AlarmPatternMatch) -> None:
        """An alarm pattern match (partial or full), before the window it precedes."""
        self._patterns.add(match.class_key)

    def heard(self, window: Window, smoothed: np.ndarray) -> None:
        """A classified window and the detector's smoothed scores after it: post the summary."""
        floor = self._fusion.policy.score_floor
        scores = {key: float(smoothed[column]) for column, key in _EMERGENCY if smoothed[column] >= floor}
        summary = WindowSummary(str(self._device_id), window.heard_at, window.level_dbfs, scores,
                                tuple(sorted(self._patterns)))  # fmt: skip
        self._fusion.board.post(self._household_id, summary)
        self._patterns.clear()
        self._latest = (window.end_s, window.heard_at)

    def wall_time(self, stream_time_s: float) -> float:
        """When the audio at ``stream_time_s`` arrived, by the latest window (epoch seconds)."""
        if self._latest is None:
            return time.time()
        end_s, heard_at = self._latest
        return heard_at - (end_s - stream_time_s)

    def corroborate(self, class_key: str, detected_at: float, incident_id: uuid.UUID) -> None:
        """Judge, as work of its own, the incident of ``class_key`` a detection heard at
        ``detected_at`` (epoch seconds) opened; outlives the session."""
        self._backend.spawn(
            self._judge(class_key, detected_at, incident_id), name=f"session-{self._session_id}-corroborate"
        )

    async def _judge(self, class_key: str, detected_at: float, incident_id: uuid.UUID) -> None:
        policy, backend = self._fusion.policy, self._backend
        await asyncio.sleep(max(0.0, detected_at + policy.settle_s - time.time()))
        try:
            household_id, peers = await household_peers(backend.db, self._device_id)
            if household_id is None or not peers:
                return  # it left its household, or is alone in it: nothing to compare
            since = detected_at - policy.span_s - policy.baseline_s
            heard = await self._fusion.board.read(household_id, since, detected_at + policy.span_s)
            judged = judge_corroboration(
                class_key, self._config.thresholds[class_key], detected_at, peers, heard, policy, datetime.now(UTC)
            )
            recorded = await record_corroboration(
                backend.db, incident_id, household_id, judged, span_s=policy.span_s, policy=backend.evidence,
                countdown_s=backend.countdown_s, events=backend.events,
            )  # fmt: skip
        except Exception as error:  # an unjudged incident is reported as any other
            log.warning("session %s: incident %s not corroborated: %s", self._session_id, incident_id, error)
            return
        if recorded is None:
            return
        corroboration = recorded.corroboration
        log.info("session %s: incident %s corroborated: %d of %d devices listening supported it%s", self._session_id,
                 incident_id, len(corroboration.supporting), corroboration.peers_listening,
                 f"; deadline moved to {recorded.shortening.deadline_at.isoformat()}" if recorded.shortening else "")  # fmt: skip
        if not recorded.incident.state.is_final:
            await self._send(incident_message(recorded.incident, {"event": "corroboration"}))
