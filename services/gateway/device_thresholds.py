"""A device's detector thresholds as its home's cancels taught them, in the gateway.

:class:`DeviceThresholds` is the gateway's one handle on learning
(:mod:`shared.incidents.threshold_learning`, :mod:`shared.incidents.threshold_adjustments`):

* a cancel of kind ``false_alarm`` that won runs the rule (``false_alarm``, called by
  :func:`~shared.incidents.lifecycle.act_on_incident` after the cancel committed, never on
  the audio path); a cancel under duress never reaches it;
* the owner reads the thresholds and the log, and undoes a change (``settings``, ``undo``);
* a session starting reads the device's learned thresholds (``learned``).

Each step and each undo publishes a :class:`ThresholdsChanged` on the Redis channel
:data:`CHANNEL` (in-process without Redis, as the revocations), so every gateway retunes that
device's live sessions (``services.gateway.threshold_watch``). The base of every threshold is
the gateway's detector configuration now (its setting, else the served model's): ``base``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass
from typing import Any

from shared.db import Database
from shared.incidents.threshold_adjustments import (
    Adjustment,
    learn_from_false_alarm,
    learned_thresholds,
    threshold_log,
    threshold_settings,
    undo_adjustment,
)
from shared.incidents.threshold_learning import LearningPolicy
from shared.pubsub import LocalChannel, RedisChannel

log = logging.getLogger(__name__)

CHANNEL = "hearo:device-thresholds"


@dataclass(frozen=True)
class ThresholdsChanged:
    """``device_id``'s learned thresholds changed (a step or an undo): read them again."""

    device_id: str

    def to_json(self) -> str:
        return json.dumps({"device_id": self.device_id})

    @classmethod
    def from_json(cls, raw: str | bytes) -> ThresholdsChanged:
        device_id = json.loads(raw)["device_id"]
        uuid.UUID(device_id)  # a ValueError for anything else
        return cls(device_id)


ThresholdChannel = LocalChannel[ThresholdsChanged] | RedisChannel[ThresholdsChanged]


def create_threshold_channel(redis_url: str) -> ThresholdChannel:
    """Redis pub/sub when ``redis_url`` is set, else in-process."""
    if redis_url:
        return RedisChannel(redis_url, CHANNEL, ThresholdsChanged.to_json, ThresholdsChanged.from_json)
    return LocalChannel()


class DeviceThresholds:
    """Learning in one gateway: ``base`` gives the detector's thresholds without learning now.

    >>> base = lambda: registry.detector_config.thresholds
    >>> thresholds = DeviceThresholds(db, settings.threshold_learning, base, channel)
    >>> await act_on_incident(db, incident_id, IncidentAction.CANCEL, kind=CancelKind.FALSE_ALARM, learning=thresholds)
    """

    def __init__(
        self, db: Database, policy: LearningPolicy, base: Callable[[], Mapping[str, float]], channel: ThresholdChannel
    ) -> None:
        self.db = db
        self.policy = policy
        self.channel = channel
        self._base = base
        self._learning: set[asyncio.Task[None]] = set()  # held until done (a task is weakly referenced)

    @property
    def base(self) -> Mapping[str, float]:
        return self._base()

    async def false_alarm(self, incident_id: uuid.UUID) -> None:
        """Learn from the incident just cancelled as a false alarm; never raises (a failure is
        logged: the cancel stands, and the next false alarm runs the rule again). The learning
        runs to its end even if the caller is cancelled (the client left mid-cancel)."""
        learning = asyncio.create_task(self._learn(incident_id), name=f"learn-from-{incident_id}")
        self._learning.add(learning)
        learning.add_done_callback(self._learning.discard)
        await asyncio.shield(learning)

    async def _learn(self, incident_id: uuid.UUID) -> None:
        try:
            adjustment = await learn_from_false_alarm(self.db, incident_id, base=self.base, policy=self.policy)
        except Exception:
            log.exception("incident %s: threshold learning failed", incident_id)
            return
        if adjustment is None:
            return
        log.info("threshold of %s raised %.4f -> %.4f (adjustment %d, after incident %s)", adjustment.class_key,
                 adjustment.threshold_from, adjustment.threshold_to, adjustment.id, incident_id)  # fmt: skip
        await self.channel.publish(ThresholdsChanged(str(adjustment.device_id)))

    async def learned(self, device_ids: Collection[uuid.UUID]) -> dict[uuid.UUID, dict[str, float]]:
        """Each device's thresholds that learning raised (devices with none are left out).

        Read to its end even if the caller is cancelled: a session starting reads it, and a
        newer session of its device may replace it meanwhile (``Database.outlasting``)."""
        return await self.db.outlasting(learned_thresholds(self.db, device_ids, base=self.base, policy=self.policy))

    async def settings(self, device_id: uuid.UUID) -> dict[str, Any]:
        """``GET /v1/devices/me/thresholds``: per class its base, the threshold in force, the
        ceiling learning may reach, how it learns, and its adjustments."""
        adjustments = await threshold_log(self.db, device_id)
        return {
            "learning": {"enabled": self.policy.enabled, "window_days": self.policy.window_days,
                         "similarity": self.policy.similarity},
            "classes": threshold_settings(self.base, self.policy, adjustments),
        }  # fmt: skip

    async def undo(self, device_id: uuid.UUID, adjustment_id: int) -> list[Adjustment] | None:
        """Undo an adjustment (and the newer ones of its class); None: the device has no such one."""
        undone = await undo_adjustment(self.db, device_id, adjustment_id)
        if undone:
            await self.channel.publish(ThresholdsChanged(str(device_id)))
        return undone
