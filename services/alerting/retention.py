"""The privacy jobs of the alerting worker: a false alarm's clip goes after its grace, and
every incident's audio and personal data after the deployment's retention.

Each worker runs :meth:`Retention.run` beside its sweeper (a loop of its own, so deleting
objects never delays a deadline); several workers split the work through ``SKIP LOCKED``
(:mod:`shared.incident_privacy`). What is deleted and what is kept: docs/incidents.md#privacy.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import and_, or_, select

from shared.clips import ClipStore
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Incident, IncidentClip
from shared.incident_privacy import REASON_FALSE_ALARM, delete_clip, expire_personal_data, kept_for_report
from shared.incident_state import IncidentState

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RetentionPolicy:
    """``cancelled_clip_grace_s``: how long a cancelled incident's clip is kept (undonated);
    ``retention_s``: how long any incident keeps its audio and personal data."""

    cancelled_clip_grace_s: float
    retention_s: float
    interval_s: float = 60.0
    batch: int = 200


@dataclass
class RetentionStats:
    clips_deleted: int = 0
    incidents_expired: int = 0


class Retention:
    """Deletes what has outlived its purpose; ``run_once`` does one batch of each kind."""

    def __init__(self, db: Database, store: ClipStore, policy: RetentionPolicy, *, actor: str) -> None:
        self.db = db
        self.store = store
        self.policy = policy
        self.actor = actor

    async def run(self, stop: asyncio.Event) -> None:
        """``run_once`` every ``interval_s`` until ``stop``; a failed run is logged and retried."""
        while not stop.is_set():
            try:
                await self.run_once()
            except Exception as error:  # the database is away: the next run catches up
                log.warning("retention run failed: %s", error)
            try:
                await asyncio.wait_for(stop.wait(), self.policy.interval_s)
            except TimeoutError:
                pass

    async def run_once(self) -> RetentionStats:
        stats = RetentionStats()
        async with self.db.session() as session:
            false_alarms = (
                await session.scalars(
                    select(Incident.id)
                    .join(IncidentClip, IncidentClip.incident_id == Incident.id)
                    .where(
                        or_(
                            and_(Incident.state == IncidentState.CANCELLED,
                                 Incident.state_changed_at <= db_now(-self.policy.cancelled_clip_grace_s)),
                            # Cancelled under duress, as its device sees it: the clip "goes" for
                            # the device alone (delete_clip keeps it as the report's evidence).
                            and_(Incident.duress_at <= db_now(-self.policy.cancelled_clip_grace_s),
                                 ~kept_for_report()),
                        ),
                        Incident.clip_donated_at.is_(None),
                    )
                    .order_by(Incident.state_changed_at)
                    .limit(self.policy.batch)
                )
            ).all()
            expired = (
                await session.scalars(
                    select(Incident.id)
                    .where(
                        Incident.personal_data_deleted_at.is_(None),
                        Incident.state.in_([state for state in IncidentState if state.is_final]),
                        Incident.detected_at <= db_now(-self.policy.retention_s),
                    )
                    .order_by(Incident.detected_at)
                    .limit(self.policy.batch)
                )
            ).all()

        async def false_alarm(incident_id: uuid.UUID) -> bool:
            return await delete_clip(
                self.db, self.store, incident_id, reason=REASON_FALSE_ALARM, actor=self.actor, keep_donated=True
            )

        async def retention(incident_id: uuid.UUID) -> bool:
            return await expire_personal_data(self.db, self.store, incident_id, actor=self.actor)

        stats.clips_deleted = await self._each(false_alarms, false_alarm, "delete the clip of")
        stats.incidents_expired = await self._each(expired, retention, "apply the retention to")
        if stats.clips_deleted or stats.incidents_expired:
            log.info("retention: %d false-alarm clips deleted, %d incidents past retention cleared",
                     stats.clips_deleted, stats.incidents_expired)  # fmt: skip
        return stats

    async def _each(
        self, incident_ids: Sequence[uuid.UUID], work: Callable[[uuid.UUID], Awaitable[bool]], what: str
    ) -> int:
        done = 0
        for incident_id in incident_ids:
            try:
                done += await work(incident_id)
            except Exception as error:  # the store is away: the row stays, the next run retries
                log.warning("retention: could not %s incident %s: %s", what, incident_id, error)
        return done
