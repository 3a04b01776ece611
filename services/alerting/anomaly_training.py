"""The alerting worker's part of away and alone modes: training models and flagging inactivity.

:class:`AnomalyKeeper` runs beside the sweeper, every ``check_every_s`` (60 s):

1. each device that has learned for ``learning_days`` and has no model (or one older than
   ``retrain_every_days``) gets a new model version from its samples
   (:func:`shared.anomaly.store.train_device`; the fit runs in a thread, never on a gateway);
   the gateways pick it up within their next check (``services.gateway.settings_watch``);
2. each device in alone mode whose last sound of activity is older than its span (the
   device's ``inactivity_span_s``, else the policy's) is flagged in the day's hours
   (:mod:`shared.anomaly.inactivity`): an anomaly incident with reason ``inactivity``.
   The gateway records activity at most every ``activity_write_s``, so a spell is flagged
   within that plus ``check_every_s`` (2 minutes by default) of its span running out. A
   device that is offline is flagged the same way, ``device_heard`` false in the record.

Several workers may run it at once: training twice makes two versions (the newer active),
and the one-open-incident-per-device index keeps inactivity to one incident.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from sqlalchemy import select, update

from shared.anomaly.incidents import open_anomaly_incident
from shared.anomaly.inactivity import inactivity_due
from shared.anomaly.policy import AnomalyPolicy
from shared.anomaly.store import active_models, devices_due_training, train_device
from shared.db import Database, Device
from shared.db.anomaly_tables import AnomalyActivity
from shared.db.clock import db_now
from shared.device_modes import ListeningMode
from shared.incident_events import IncidentEvents
from shared.incidents import COUNTDOWN_S

log = logging.getLogger(__name__)


class AnomalyKeeper:
    """Trains due models and flags inactivity, every ``policy.check_every_s`` until ``stop``."""

    def __init__(self, db: Database, policy: AnomalyPolicy, *, actor: str, events: IncidentEvents | None = None,
                 countdown_s: float = COUNTDOWN_S) -> None:  # fmt: skip
        self.db = db
        self.policy = policy
        self.actor = actor
        self.events = events
        self.countdown_s = countdown_s

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            if self.policy.enabled:
                try:
                    await self.run_once()
                except Exception:
                    log.exception("anomaly training or inactivity check failed; retrying")
            try:
                await asyncio.wait_for(stop.wait(), self.policy.check_every_s)
            except TimeoutError:
                pass

    async def run_once(self) -> tuple[list[int], int]:
        """Train what is due and flag inactivity; returns the versions trained and the flags."""
        trained = []
        for device_id in await devices_due_training(self.db, self.policy):
            version = await train_device(self.db, device_id, self.policy, self.policy.hop_s)
            if version is not None:
                log.info("device %s: anomaly model version %d trained", device_id, version)
                trained.append(version)
        return trained, await self.flag_inactivity()

    async def flag_inactivity(self) -> int:
        async with self.db.session() as session:
            rows = (await session.execute(
                select(Device.id, Device.inactivity_span_s, AnomalyActivity, db_now())
                .join(AnomalyActivity, AnomalyActivity.device_id == Device.id)
                .where(Device.listening_mode == ListeningMode.ALONE)
            )).all()  # fmt: skip
        flagged = 0
        models = await active_models(self.db, [row[0] for row in rows])
        for device_id, span_s, activity, now in rows:
            span = span_s or self.policy.inactivity_span_s
            last = activity.last_activity_at or activity.learning_since
            if not inactivity_due(now, last, span, activity.inactivity_flagged_at, self.policy):
                continue
            heard = activity.last_heard_at
            model = models.get(device_id)
            record = {
                "reason": "inactivity", "score": round((now - last).total_seconds(), 1), "threshold": float(span),
                "model_version": None if model is None else model.version,
                "last_activity_at": last.isoformat(),
                # Heard sound within two write periods: the device is on, the home is silent.
                "device_heard": heard is not None and now - heard < timedelta(seconds=2 * self.policy.activity_write_s),
            }
            opened = await open_anomaly_incident(
                self.db, device_id=device_id, anomaly=record, countdown_s=self.countdown_s, events=self.events,
                actor=self.actor,
            )  # fmt: skip
            if opened is None:
                continue  # an open incident holds the slot: the next check tries again
            async with self.db.session() as session:
                await session.execute(
                    update(AnomalyActivity).where(AnomalyActivity.device_id == device_id)
                    .values(inactivity_flagged_at=db_now())
                )
            log.info("device %s: inactivity for %.0f s flagged (incident %s)", device_id, record["score"],
                     opened.incident.id)  # fmt: skip
            flagged += 1
        return flagged
