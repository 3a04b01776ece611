"""A session's part in away and alone modes: learning the home's sound, judging it, activity.

Every judged window of a session (``SessionAnomaly.heard``, fed by the classifier with the
window's nine class scores and tags) moves the session's :class:`~shared.anomaly.WindowDescriber`
on (its level, for the level jumps of the windows after it); its vector
(:func:`shared.anomaly.window_features`, the class scores as logits and the jump: tens of
microseconds) is computed only where it is used, in judging and in learning samples, so a
session in standard mode computes one every ``sample_every_s``, not every window. Then:

* **learning**, whatever the mode, so that a switch to away or alone is ready: every
  ``sample_every_s`` of stream the window and the one before it are kept, and written as one
  batch every ``flush_every_s`` (``anomaly_samples``; the worker trains on them). While a
  model judges, a window it finds abnormal is not kept: the home's unusual sounds must not
  become its normal;
* **judging**, in away or alone mode with an active model (:class:`~shared.anomaly.AnomalyScorer`):
  an anomaly opens an incident of kind ``anomaly`` (:func:`~shared.anomaly.incidents.open_anomaly_incident`)
  as work of its own, with its clip, told to the client (an ``incident`` message whose
  ``detail`` has ``kind`` and ``anomaly``) and followed like any other;
* **activity**: whether the device heard anything and a sound of activity is written at most
  every ``activity_write_s`` (``anomaly_activity``): the worker flags inactivity from it.

:class:`AnomalyBackend` is the gateway's: it holds the policy, the live listeners of each
device, and sets their mode and model (``refresh``, from ``services.gateway.settings_watch``).
"""

from __future__ import annotations

import functools
import logging
import time
import uuid
import weakref
from collections.abc import Collection, Sequence
from datetime import UTC, datetime
from typing import Any

import numpy as np
from sqlalchemy import select

from services.gateway.audio import Window
from services.gateway.session_incidents import SessionIncidents
from shared.anomaly import (
    ActivityFloor,
    AnomalyPolicy,
    AnomalyScorer,
    ScoredWindow,
    WindowDescriber,
    assemble,
    window_features,
)
from shared.anomaly.incidents import open_anomaly_incident
from shared.anomaly.store import ActiveModel, active_models, record_heard, record_samples
from shared.db import Device
from shared.device_modes import ListeningMode
from shared.incidents import DeviceTokenChanged

log = logging.getLogger(__name__)


class AnomalyBackend:
    """Away and alone modes in one gateway process, shared by its sessions."""

    def __init__(self, policy: AnomalyPolicy) -> None:
        self.policy = policy
        self._listeners: dict[uuid.UUID, weakref.WeakSet[SessionAnomaly]] = {}

    def listen(self, incidents: SessionIncidents) -> SessionAnomaly | None:
        """A listener for the session of ``incidents`` (None when the policy is off)."""
        if not self.policy.enabled:
            return None
        listener = SessionAnomaly(self, incidents)
        self._listeners.setdefault(incidents.device.id, weakref.WeakSet()).add(listener)
        incidents.backend.spawn(self.refresh({incidents.device.id}), name=f"anomaly-model-{incidents.device.id}")
        return listener

    def devices(self) -> set[uuid.UUID]:
        return {device_id for device_id, listeners in self._listeners.items() if listeners}

    async def refresh(self, device_ids: Collection[uuid.UUID]) -> None:
        """Read the devices' mode and active model, and set them on their live listeners."""
        live = {device_id: list(self._listeners.get(device_id, ())) for device_id in device_ids}
        live = {device_id: listeners for device_id, listeners in live.items() if listeners}
        if not live:
            return
        db = next(iter(live.values()))[0].incidents.backend.db
        async with db.session() as session:
            rows = (await session.execute(select(Device.id, Device.listening_mode).where(Device.id.in_(live)))).all()
        modes = {device_id: mode for device_id, mode in rows}
        models = await active_models(db, list(live))
        for device_id, listeners in live.items():
            for listener in listeners:
                listener.use(modes.get(device_id, ListeningMode.STANDARD), models.get(device_id))


class SessionAnomaly:
    """One session's learning, judging and activity (module docstring)."""

    def __init__(self, backend: AnomalyBackend, incidents: SessionIncidents) -> None:
        self.backend = backend
        self.incidents = incidents
        self.policy = backend.policy
        self.model_version: int | None = None
        self.scorer = AnomalyScorer(ListeningMode.STANDARD, None, self.policy.refractory_s)
        self._floor = ActivityFloor()
        self._describer = WindowDescriber()
        self._previous: _Described | None = None
        self._next_sample_s = 0.0
        self._pairs: list[list[list[float]]] = []
        self._batch_from: datetime | None = None
        self._flush_at = time.monotonic() + self.policy.flush_every_s
        self._write_at = 0.0  # the first window writes activity at once
        self._active_since_write = False

    def use(self, mode: ListeningMode, model: ActiveModel | None) -> None:
        """Judge from the next window on under ``mode`` with ``model`` (None: learning only)."""
        self.scorer.mode = mode
        self.scorer.model = None if model is None else model.model
        self.model_version = None if model is None else model.version

    def heard(self, window: Window, class_scores: np.ndarray, tags: Sequence[tuple[str, float]]) -> None:
        """One judged window, with the model's nine class scores and its AudioSet tags (empty
        when it has none)."""
        # The level as the vector holds it (float32), so the jumps are those ``describe`` gives.
        described = _Described(window, class_scores, self._describer.moment(float(np.float32(window.level_dbfs))))
        self._active_since_write |= self._floor.heard(window.level_dbfs)
        scored = None
        if self.scorer.judging:
            scored = self.scorer.judge(described.vector, window.end_s, tags)
        else:
            self.scorer.pass_over()
        if scored is not None:
            self._open(scored)
        elif self._previous is not None and window.end_s >= self._next_sample_s:
            self._keep(self._previous.vector, described.vector, window.end_s)
        self._previous = described
        now = time.monotonic()
        if now >= self._write_at:
            self._write_at = now + self.policy.activity_write_s
            active, self._active_since_write = self._active_since_write, False
            self._spawn(record_heard(self.incidents.backend.db, self.incidents.device.id, active=active), "activity")
        if now >= self._flush_at:
            self.finish()

    def finish(self) -> None:
        """Write the samples kept so far (at each ``flush_every_s`` and at the stream's end)."""
        self._flush_at = time.monotonic() + self.policy.flush_every_s
        if not self._pairs or self._batch_from is None:
            return
        pairs, self._pairs = self._pairs, []
        work = record_samples(self.incidents.backend.db, self.incidents.device.id, pairs, self._batch_from,
                              datetime.now(UTC), self.policy.max_samples)  # fmt: skip
        self._batch_from = None
        self._spawn(work, "samples")

    def _keep(self, previous: np.ndarray, features: np.ndarray, end_s: float) -> None:
        model = self.scorer.model
        if self.scorer.judging and model is not None and model.abnormal(features):
            return  # unusual for this home: not learned as its normal
        self._next_sample_s = end_s + self.policy.sample_every_s
        self._batch_from = self._batch_from or datetime.now(UTC)
        self._pairs.append([previous.tolist(), features.tolist()])

    def _open(self, scored: ScoredWindow) -> None:
        record: dict[str, Any] = {
            "reason": "sound", "cue": scored.cue, "score": round(scored.score, 3),
            "threshold": round(scored.threshold, 3),
            "model_version": self.model_version, "mode": self.scorer.mode.value,
        }
        self._spawn(self._open_incident(record, scored.stream_time_s), "open-incident")

    async def _open_incident(self, record: dict[str, Any], stream_time_s: float) -> None:
        incidents, backend = self.incidents, self.incidents.backend
        try:
            opened = await open_anomaly_incident(
                backend.db, device_id=incidents.device.id, anomaly=record, countdown_s=backend.countdown_s,
                session_id=incidents.session_id, events=backend.events, token_hash=incidents.token_hash,
            )  # fmt: skip
        except DeviceTokenChanged:
            return  # revoked: the revocation watch ends this session; nothing is opened on its token
        if opened is None:
            return  # the device's open incident stands for it
        log.info("session %s: anomaly incident %s (%s %.2f over %.2f, model v%s)", incidents.session_id,
                 opened.incident.id, record["cue"], record["score"], record["threshold"], self.model_version)  # fmt: skip
        incidents.clip_due(opened.incident.id, stream_time_s)
        await incidents.announce(opened)  # kind "anomaly", and the record in ``detail.anomaly``

    def _spawn(self, work: Any, what: str) -> None:
        task = self.incidents.backend.spawn(work, name=f"session-{self.incidents.session_id}-anomaly-{what}")
        task.add_done_callback(_logged)


class _Described:
    """A window's anomaly vector, computed only when asked for: in standard mode a session
    needs one for a learning sample every ``sample_every_s`` (and the window before it), not
    for each of its windows."""

    def __init__(self, window: Window, class_scores: np.ndarray, jump: float) -> None:
        self._window = window
        self._class_scores = class_scores
        self._jump = jump

    @functools.cached_property
    def vector(self) -> np.ndarray:
        spectral = window_features(self._window.features.numpy(), self._window.level_dbfs)
        return assemble(spectral, self._class_scores, self._jump)


def _logged(task: Any) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("anomaly work %s failed: %s", task.get_name(), task.exception())
