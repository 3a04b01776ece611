"""The timer: claims incidents at their deadline and keeps every due delivery moving.

Each sweep, in one process per worker (a loop beside the Celery consumer, not a Celery
task, so it runs while the broker is down):

1. Claim due incidents: ``SELECT ... WHERE state = 'pending' AND (deadline_at <= now OR
   duress_at IS NOT NULL) FOR UPDATE SKIP LOCKED`` (PostgreSQL; SQLite has one writer at a
   time), then a conditional ``UPDATE ... SET state = 'dispatching' WHERE state = 'pending'``
   and one outbox row per (agency, channel) from the routing (a cancel under duress: the
   police's, as a crime), all in one transaction. The first channel of each agency is
   ``pending``, the others ``standby``.
2. Route the classes first heard while a report was being sent (``routing_due``): their
   agencies' outbox rows are added (``route_late_classes``).
3. Publish a send task for every delivery that is claimable (due, or held under a dead
   lease) and was not published in the last ``redrive_after_s``. Messages are only nudges:
   a lost one (Redis restarted empty) is published again, a duplicate finds nothing to claim.
   When the broker refuses them (down), the worker delivers those rows itself
   (``deliver_locally``, at most ``local_concurrency`` at once): a report never waits for
   the broker to come back.
4. Settle ``dispatching`` incidents whose rows are all final (a sender may die between
   recording its row and settling the incident).

Between sweeps it sleeps ``sweep_interval_s`` or until the next deadline, whichever is
sooner. A heartbeat row per worker tells the others which leases are still alive.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, exists, func, insert, or_, select, update

from services.alerting.dispatch import TABLES, claimable, settle_incident
from services.alerting.faults import FaultInjector
from services.alerting.routing import PlannedDelivery, Router, reported_classes
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AlertingWorker, DispatchOutbox, Incident
from shared.incident_events import IncidentEvents, IncidentUpdate
from shared.anomaly.incidents import publish_settled, settle_contacts_only
from shared.incident_state import OPEN_DELIVERY_STATES, DeliveryState, IncidentKind, IncidentState
from shared.incidents import add_audit, move_incident

log = logging.getLogger(__name__)

# publish(table, row_id) sends one Celery message; it raises when the broker is unreachable.
Publish = Callable[[str, str], None]
# deliver(table, row_id) runs one delivery in this process, as the Celery task would.
DeliverLocally = Callable[[str, uuid.UUID], Awaitable[object]]
# Worker rows silent for this long are removed (their leases were re-driven long before).
FORGET_WORKER_AFTER_S = 3600.0
HOUSEKEEPING_EVERY_S = 60.0
# Due: past its deadline, or cancelled under duress (shared/incidents/duress_cancel.py), which
# keeps the deadline its device was shown and is reported at once.
DUE = or_(Incident.deadline_at <= db_now(), Incident.duress_at.is_not(None))
# Sweeps are at least this far apart: with deadlines every few milliseconds under load,
# one sweep per deadline would spend the database on sweeping; this batches them instead.
MIN_SWEEP_GAP_S = 0.05


@dataclass(frozen=True)
class SweepPolicy:
    interval_s: float
    redrive_after_s: float
    claim_batch: int
    worker_stale_s: float
    heartbeat_s: float


@dataclass
class SweepStats:
    claimed: int = 0
    routed: int = 0
    delivered_here: int = 0  # deliveries started in this process: the broker refused them
    published: int = 0
    settled: int = 0


async def _insert_deliveries(session: Any, planned: list[tuple[uuid.UUID, PlannedDelivery]]) -> None:
    """One outbox row per (incident, planned delivery): each agency's first channel ``pending``,
    its fallbacks ``standby``."""
    if planned:
        await session.execute(
            insert(DispatchOutbox).values(attempts=0, next_attempt_at=db_now(), created_at=db_now()),
            [{"id": uuid.uuid4(), "incident_id": incident_id, "agency_id": p.agency_id, "position": p.position,
              "kind": p.kind, "state": DeliveryState.PENDING if p.position == 0 else DeliveryState.STANDBY}
             for incident_id, p in planned],
        )  # fmt: skip


def new_worker_id() -> str:
    """This worker's lease owner name: host, pid and a nonce (a restarted worker is a new owner)."""
    return f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class Sweeper:
    """Runs the sweep loop and the heartbeat for one worker process."""

    def __init__(
        self,
        db: Database,
        *,
        owner: str,
        router: Router,
        publish: Publish,
        policy: SweepPolicy,
        faults: FaultInjector,
        events: IncidentEvents | None = None,
        duplicate_messages: bool = False,
        deliver_locally: DeliverLocally | None = None,
        local_concurrency: int = 8,
    ) -> None:
        self.db = db
        self.owner = owner
        self.router = router
        self.publish = publish
        self.policy = policy
        self.faults = faults
        self.events = events
        self.duplicate_messages = duplicate_messages
        self._last_housekeeping = 0.0
        self._deliver_locally = deliver_locally
        self._local_slots = asyncio.Semaphore(local_concurrency)
        self._local: dict[uuid.UUID, asyncio.Task[None]] = {}  # deliveries running here, by row

    async def run(self, stop: asyncio.Event) -> None:
        """Register, then sweep and heartbeat until ``stop`` is set; errors are logged and retried."""
        await self.register()
        heartbeat = asyncio.create_task(self._heartbeat(stop))
        try:
            while not stop.is_set():
                wait = self.policy.interval_s
                try:
                    await self.sweep_once()
                    wait = await self._until_next_deadline()
                except Exception:
                    log.exception("sweep failed; retrying")
                try:
                    await asyncio.wait_for(stop.wait(), wait)
                except TimeoutError:
                    pass
        finally:
            await self.local_deliveries_done()
            heartbeat.cancel()
            try:
                await heartbeat
            except asyncio.CancelledError:
                pass

    async def register(self) -> None:
        async with self.db.session() as session:
            session.add(
                AlertingWorker(
                    id=self.owner, hostname=socket.gethostname()[:255], pid=os.getpid(),
                    started_at=db_now(), heartbeat_at=db_now(),
                )
            )

    async def unregister(self) -> None:
        """Forget this worker (a clean shutdown): its leases, if any, are re-driven at once."""
        async with self.db.session() as session:
            await session.execute(delete(AlertingWorker).where(AlertingWorker.id == self.owner))

    async def _heartbeat(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                async with self.db.session() as session:
                    result = await session.execute(
                        update(AlertingWorker).where(AlertingWorker.id == self.owner).values(heartbeat_at=db_now())
                    )
                # Forgotten after a long stall (housekeeping removed the row): come back.
                if result.rowcount == 0:  # type: ignore[attr-defined]
                    await self.register()
            except Exception:
                log.exception("heartbeat failed")
            await asyncio.sleep(self.policy.heartbeat_s)

    async def sweep_once(self) -> SweepStats:
        stats = SweepStats()
        while (claimed := await self.claim_due_incidents()) > 0:
            stats.claimed += claimed
        stats.routed = await self.route_late_classes()
        stats.published, stats.delivered_here = await self.publish_due_deliveries()
        stats.settled = await self.settle_stuck_incidents()
        if time.monotonic() - self._last_housekeeping > HOUSEKEEPING_EVERY_S:
            await self._housekeeping()
        return stats

    async def claim_due_incidents(self) -> int:
        """Move up to ``claim_batch`` due incidents to ``dispatching`` with their outbox rows."""
        async with self.db.session() as session:
            due = (
                await session.scalars(
                    select(Incident.id)
                    .where(Incident.state == IncidentState.PENDING, DUE)
                    .order_by(Incident.deadline_at)
                    .limit(self.policy.claim_batch)
                    .with_for_update(skip_locked=True)
                )
            ).all()
            if not due:
                return 0
            # Re-checked in the UPDATE: on SQLite the SELECT above ran before the write lock,
            # and a cancel may have won in between.
            claimed = (
                await session.execute(
                    move_incident(IncidentState.PENDING, IncidentState.DISPATCHING, Incident.id.in_(due))
                    .values(trigger=func.coalesce(Incident.trigger, "deadline"))
                    .returning(Incident.id, Incident.device_id, Incident.class_key, Incident.also_detected,
                               Incident.deadline_at, Incident.state_changed_at, Incident.duress_at, Incident.kind)
                )
            ).all()
            await _insert_deliveries(session, [
                (c.id, p) for c in claimed if c.kind is not IncidentKind.ANOMALY  # never an agency on its own
                for p in self.router.plan(*reported_classes(c))
            ])  # fmt: skip
            for c in claimed:
                if c.kind is IncidentKind.ANOMALY:
                    await settle_contacts_only(session, c.id, c.device_id, self.owner)
                    continue
                add_audit(session, c.id, self.owner, IncidentState.DISPATCHING.value,
                          {"agencies": list(self.router.agencies_for(*reported_classes(c)))})
        self.faults.step("after_incident_claim")
        if self.events is not None:
            # A report under duress is never news for its device: it was told "cancelled".
            for c in (c for c in claimed if c.duress_at is None):
                if c.kind is IncidentKind.ANOMALY:
                    await publish_settled(self.db, self.events, c.id)
                    continue
                await self.events.publish(self._dispatching(c))
        return len(claimed)

    async def route_late_classes(self) -> int:
        """Add the agencies of the classes first heard while a report was being sent.

        The gateway appended them to ``also_detected`` and marked the incident ``routing_due``
        (shared/incidents/lifecycle.py). One transaction clears the mark and writes an outbox
        row for each (agency, channel) of the report's classes that has none yet; the incident
        is not settled while the mark is set (``settle_incident``), so no agency is left out by
        a report that finished meanwhile. Returns how many incidents were routed.
        """
        async with self.db.session() as session:
            due = (
                await session.execute(
                    update(Incident)
                    .where(Incident.state == IncidentState.DISPATCHING, Incident.routing_due.is_(True))
                    .values(routing_due=False)
                    .returning(Incident.id, Incident.device_id, Incident.class_key, Incident.also_detected,
                               Incident.deadline_at, Incident.state_changed_at, Incident.duress_at)
                    .execution_options(synchronize_session=False)
                )
            ).all()  # fmt: skip
            if not due:
                return 0
            planned = {
                (row.incident_id, row.agency_id)
                for row in await session.execute(
                    select(DispatchOutbox.incident_id, DispatchOutbox.agency_id)
                    .where(DispatchOutbox.incident_id.in_([c.id for c in due]))
                )
            }
            added = {c.id: [p for p in self.router.plan(*reported_classes(c)) if (c.id, p.agency_id) not in planned]
                     for c in due}  # fmt: skip
            await _insert_deliveries(session, [(incident_id, p) for incident_id, plan in added.items() for p in plan])
            for c in due:
                add_audit(session, c.id, self.owner, "routed", {
                    "classes": list(reported_classes(c)),
                    "added_agencies": list(dict.fromkeys(p.agency_id for p in added[c.id])),
                })  # fmt: skip
        if self.events is not None:
            for c in (c for c in due if c.duress_at is None):  # as a claim: never news under duress
                await self.events.publish(self._dispatching(c))
        return len(due)

    def _dispatching(self, incident: Any) -> IncidentUpdate:
        """The ``dispatching`` update of ``incident`` (a row), naming every agency it goes to
        and the other classes it is reported for (the web app names their numbers)."""
        detail: dict[str, Any] = {"agencies": list(self.router.agencies_for(*reported_classes(incident)))}
        if incident.also_detected:
            detail["also_detected"] = list(incident.also_detected)
        return IncidentUpdate(
            str(incident.id), str(incident.device_id), IncidentState.DISPATCHING, incident.deadline_at.isoformat(),
            incident.state_changed_at.isoformat(), detail,
        )

    async def publish_due_deliveries(self) -> tuple[int, int]:
        """Publish a send task for each claimable delivery not published recently; returns how
        many were published and how many this process started delivering itself.

        Rows are stamped ``enqueued_at`` before publishing, under ``FOR UPDATE SKIP LOCKED``,
        so concurrent sweepers split the rows instead of publishing (and locking) the same
        ones. Rows the broker refused (it is down) are delivered here when the sweeper has
        ``deliver_locally``, still stamped, so no sweeper publishes them meanwhile (a message
        published later finds them claimed or sent: the row's lease); without it they are
        unstamped, to be tried again next sweep.
        """
        published_total = local_total = 0
        for table, model in TABLES.items():
            async with self.db.session() as session:
                ids = (
                    await session.scalars(
                        select(model.id)
                        .where(
                            claimable(model, self.policy.worker_stale_s),
                            or_(model.enqueued_at.is_(None), model.enqueued_at < db_now(-self.policy.redrive_after_s)),
                        )
                        .order_by(model.next_attempt_at)
                        .limit(max(self.policy.claim_batch, 1000))
                        .with_for_update(skip_locked=True, of=model)
                    )
                ).all()
                if ids:
                    await session.execute(
                        update(model).where(model.id.in_(ids)).values(enqueued_at=db_now())
                        .execution_options(synchronize_session=False)
                    )
            if not ids:
                continue
            published = set(await asyncio.to_thread(self._publish_all, table, list(ids)))
            published_total += len(published)
            refused = [row_id for row_id in ids if row_id not in published]  # oldest due first
            if not refused:
                continue
            if self._deliver_locally is not None:  # a report must not wait for the broker
                local_total += sum(self._start_local(table, row_id) for row_id in refused)
                continue
            async with self.db.session() as session:
                await session.execute(
                    update(model).where(model.id.in_(refused)).values(enqueued_at=None)
                    .execution_options(synchronize_session=False)
                )
        return published_total, local_total

    def _start_local(self, table: str, row_id: uuid.UUID) -> bool:
        """Deliver the row in this process, unless that is already under way."""
        if row_id in self._local:
            return False
        task = asyncio.create_task(self._run_local(table, row_id), name=f"deliver-{table}-{row_id}")
        self._local[row_id] = task
        task.add_done_callback(lambda _: self._local.pop(row_id, None))
        return True

    async def _run_local(self, table: str, row_id: uuid.UUID) -> None:
        assert self._deliver_locally is not None
        async with self._local_slots:
            try:
                outcome = await self._deliver_locally(table, row_id)
                log.info("delivered %s %s in the sweeper's process (broker unreachable): %s", table, row_id, outcome)
            except Exception:  # the row stays claimable: a later sweep tries again
                log.exception("local delivery of %s %s failed", table, row_id)

    async def local_deliveries_done(self) -> None:
        """Wait for the deliveries this process runs itself (the broker was unreachable)."""
        while self._local:
            await asyncio.wait(list(self._local.values()))

    def _publish_all(self, table: str, ids: list[uuid.UUID]) -> list[uuid.UUID]:
        published: list[uuid.UUID] = []
        for row_id in ids:
            try:
                self.publish(table, str(row_id))
                if self.duplicate_messages:
                    self.publish(table, str(row_id))
            except Exception as error:  # broker down: the rows stay due and are published later
                log.warning("could not publish %s delivery %s: %s", table, row_id, error)
                break
            published.append(row_id)
        return published

    async def settle_stuck_incidents(self) -> int:
        """Settle ``dispatching`` incidents whose rows are all final but which nobody settled."""
        open_rows = exists().where(
            DispatchOutbox.incident_id == Incident.id, DispatchOutbox.state.in_(OPEN_DELIVERY_STATES)
        )
        async with self.db.session() as session:
            stuck = (
                await session.scalars(
                    select(Incident.id).where(Incident.state == IncidentState.DISPATCHING, ~open_rows).limit(100)
                )
            ).all()
        settled = 0
        for incident_id in stuck:
            if await settle_incident(self.db, incident_id, self.events, actor=self.owner):
                settled += 1
        return settled

    async def _until_next_deadline(self) -> float:
        async with self.db.session() as session:
            row = (
                await session.execute(
                    select(func.min(Incident.deadline_at), db_now()).where(Incident.state == IncidentState.PENDING)
                )
            ).one()
        next_deadline, now = row
        if next_deadline is None:
            return self.policy.interval_s
        return max(MIN_SWEEP_GAP_S, min(self.policy.interval_s, (next_deadline - now).total_seconds() + 0.005))

    async def _housekeeping(self) -> None:
        self._last_housekeeping = time.monotonic()
        async with self.db.session() as session:
            await session.execute(
                delete(AlertingWorker).where(AlertingWorker.heartbeat_at < db_now(-FORGET_WORKER_AFTER_S))
            )
