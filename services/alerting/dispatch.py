"""Sending one outbox row exactly once, whatever crashes: claim, send, record.

A row (an agency report in ``dispatch_outbox`` or a guardian notice in
``contact_notifications``) moves::

    standby ──previous channel failed──▶ pending ──claim──▶ sending ──2xx──▶ sent
                                           ▲                   │ (later channels: skipped)
                                           └─retryable, attempts left (backoff + jitter)
                                                               │
                                             permanent or exhausted ──▶ failed
                                             (next channel: pending; none: ops alert)

* Claim: one conditional UPDATE takes a ``pending`` row that is due, or a ``sending`` row
  whose lease ran out or whose worker stopped heartbeating, and stamps this worker's lease.
  Two senders never both hold a live lease.
* Send: with the row id as the idempotency key (``webhook-id``) and the payload fixed at
  the first attempt, so a repeat after a crash is the same message and the receiver
  de-duplicates it. Between the send and the record a crash can repeat the send; it can
  never produce a second, different report.
* Record: success is written whatever the lease (it is true); a failure only while this
  worker still holds the lease (otherwise another sender has taken over).

When the last row of an incident is settled the incident becomes ``dispatched`` (every
agency reached) or ``failed`` (some agency unreachable on every channel), with one
conditional UPDATE, and the guardians are queued a notice.
"""

from __future__ import annotations

import json
import logging
import random
import uuid
from dataclasses import dataclass
from typing import Any, cast

import httpx
from sqlalchemy import and_, or_, select, update

from services.alerting.delivery import AttemptOutcome, DeliveryResult
from services.alerting.faults import FaultInjector
from services.alerting.report import ReportBuilder
from services.alerting.routing import Router
from services.alerting.sms import SmsSender, agency_message, contact_message
from services.alerting.webhooks import WebhookSender
from shared.db import Database, EmergencyContact
from shared.db.clock import db_now
from shared.db.models import AlertingWorker, ContactNotification, DispatchOutbox, Incident
from shared.incident_events import IncidentEvents
from shared.incident_state import OPEN_DELIVERY_STATES, ContactEvent, DeliveryState, IncidentState
from shared.incidents import add_audit, add_contact_notifications, get_incident, move_deliveries, move_incident
from shared.log_format import bind_log_ids

log = logging.getLogger(__name__)

Row = DispatchOutbox | ContactNotification
TABLES: dict[str, type[DispatchOutbox] | type[ContactNotification]] = {
    "agency": DispatchOutbox,
    "contact": ContactNotification,
}


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int
    backoff_base_s: float
    backoff_max_s: float
    lease_s: float
    worker_stale_s: float

    def backoff_s(self, attempts: int, rng: random.Random) -> float:
        """Exponential backoff capped at ``backoff_max_s``, jittered to 50-100 %."""
        return min(self.backoff_max_s, self.backoff_base_s * 2 ** max(0, attempts - 1)) * rng.uniform(0.5, 1.0)


def claimable(model: type[DispatchOutbox] | type[ContactNotification], worker_stale_s: float) -> Any:
    """Rows a sender may take now: due and pending, or sending under a dead lease."""
    live_workers = select(AlertingWorker.id).where(AlertingWorker.heartbeat_at > db_now(-worker_stale_s))
    return or_(
        and_(model.state == DeliveryState.PENDING, model.next_attempt_at <= db_now()),
        and_(
            model.state == DeliveryState.SENDING,
            or_(model.lease_until < db_now(), model.lease_owner.not_in(live_workers)),
        ),
    )


class OpsAlerter:
    """Tells operations that something could not be delivered: log, audit entry, optional POST."""

    def __init__(self, client: httpx.AsyncClient, url: str, timeout_s: float) -> None:
        self.client = client
        self.url = url
        self.timeout_s = timeout_s

    async def alert(self, event: str, detail: dict[str, Any]) -> None:
        log.critical("OPS ALERT %s: %s", event, detail)
        if not self.url:
            return
        try:
            await self.client.post(self.url, json={"event": event, **detail}, timeout=self.timeout_s)
        except httpx.HTTPError as error:
            log.error("ops alert could not be posted to %s: %s", self.url, error)


class Dispatcher:
    """Delivers outbox rows; :meth:`deliver` is the body of the Celery send task."""

    def __init__(
        self,
        db: Database,
        *,
        owner: str,
        router: Router,
        reports: ReportBuilder,
        webhooks: WebhookSender,
        sms: SmsSender,
        contact_secrets: list[str],
        policy: RetryPolicy,
        ops: OpsAlerter,
        faults: FaultInjector,
        events: IncidentEvents | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self.db = db
        self.owner = owner
        self.router = router
        self.reports = reports
        self.webhooks = webhooks
        self.sms = sms
        self.contact_secrets = contact_secrets
        self.policy = policy
        self.ops = ops
        self.faults = faults
        self.events = events
        self.rng = rng or random.Random()

    async def deliver(self, table: str, row_id: uuid.UUID) -> AttemptOutcome:
        """Try to deliver row ``row_id`` of ``table`` (``agency`` or ``contact``) once.

        Returns what happened (``not_claimable``, ``sent``, ``retry``, ``failed``); a
        message for a row that is done or held by a live sender is a harmless no-op.
        """
        model = TABLES[table]
        row = await self._claim(model, row_id)
        if row is None:
            return AttemptOutcome.NOT_CLAIMABLE
        # Each delivery runs as its own task, so the ids stay on this delivery's lines.
        bind_log_ids(incident_id=str(row.incident_id), delivery=f"{table}:{row_id}")
        self.faults.step("after_claim")
        payload = row.payload.encode() if row.payload is not None else await self._fix_payload(model, row)
        target, result = await self._send(row, payload)
        self.faults.step("after_send")
        outcome = await self._record(model, row, target, result)
        self.faults.step("after_record")
        if isinstance(row, DispatchOutbox) and outcome.settles:
            await settle_incident(self.db, row.incident_id, self.events, actor=self.owner)
        return outcome

    async def _claim(self, model: type[DispatchOutbox] | type[ContactNotification], row_id: uuid.UUID) -> Row | None:
        async with self.db.session() as session:
            claimed = (
                await session.scalars(
                    move_deliveries(
                        model, (DeliveryState.PENDING, DeliveryState.SENDING), DeliveryState.SENDING,
                        model.id == row_id, claimable(model, self.policy.worker_stale_s),
                    )
                    .values(
                        lease_owner=self.owner,
                        lease_until=db_now(self.policy.lease_s),
                        attempts=model.attempts + 1,
                    )
                    .returning(model)
                    .execution_options(populate_existing=True)
                )
            ).first()
        return cast(Row | None, claimed)

    async def _fix_payload(self, model: type[DispatchOutbox] | type[ContactNotification], row: Row) -> bytes:
        # Built once: the first sender to write it fixes the bytes every retry will send.
        body = (
            await self.reports.agency_report(row) if isinstance(row, DispatchOutbox)
            else await self.reports.contact_notice(row)
        )
        async with self.db.session() as session:
            fixed = await session.scalar(
                update(model)
                .where(model.id == row.id, model.payload.is_(None))
                .values(payload=body.decode())
                .returning(model.payload)
                .execution_options(synchronize_session=False)
            )
            if fixed is None:  # another sender (after a lease takeover) fixed it first
                fixed = await session.scalar(select(model.payload).where(model.id == row.id))
        assert fixed is not None
        return fixed.encode()

    async def _send(self, row: Row, payload: bytes) -> tuple[str | None, DeliveryResult]:
        key = str(row.id)
        if isinstance(row, DispatchOutbox):
            channel = self.router.channel(row.agency_id, row.position)
            if channel is None or channel.kind != row.kind:
                return None, DeliveryResult(False, False, None, "channel no longer configured")
            if channel.kind == "webhook":
                assert channel.url is not None
                return channel.url, await self.webhooks.send(channel.url, channel.secrets, key, payload)
            assert channel.to is not None
            report = _data(payload)
            return channel.to, await self.sms.send(agency_message(channel.to, report), key)
        async with self.db.session() as session:
            contact = await session.get(EmergencyContact, row.contact_id)
        if contact is None:
            return None, DeliveryResult(False, False, None, "contact no longer exists")
        if row.kind == "webhook" and contact.webhook_url:
            return contact.webhook_url, await self.webhooks.send(
                contact.webhook_url, self.contact_secrets, key, payload
            )
        return contact.phone, await self.sms.send(contact_message(contact.phone, _data(payload)), key)

    async def _record(
        self, model: type[DispatchOutbox] | type[ContactNotification], row: Row, target: str | None, result: DeliveryResult
    ) -> AttemptOutcome:
        incident_id = row.incident_id
        self.faults.step("before_record")
        async with self.db.session() as session:
            if result.ok:
                done = await _move(
                    session, model, (DeliveryState.PENDING, DeliveryState.SENDING), DeliveryState.SENT,
                    model.id == row.id,
                    sent_at=db_now(), lease_owner=None, lease_until=None,
                    target=target, last_status=result.status, last_error=None,
                )
                if done:
                    await _move(
                        session, model, (DeliveryState.STANDBY,), DeliveryState.SKIPPED,
                        _group(model, row), model.position > row.position,
                    )
                    add_audit(session, incident_id, self.owner, "delivered", _describe(row, result))
                return AttemptOutcome.SENT if done else AttemptOutcome.NOT_RECORDED
            mine = (model.id == row.id, model.lease_owner == self.owner)
            if result.retryable and row.attempts < self.policy.max_attempts:
                done = await _move(
                    session, model, (DeliveryState.SENDING,), DeliveryState.PENDING, *mine,
                    next_attempt_at=db_now(self.policy.backoff_s(row.attempts, self.rng)),
                    lease_owner=None, lease_until=None, enqueued_at=None,
                    target=target, last_status=result.status, last_error=result.detail,
                )
                return AttemptOutcome.RETRY if done else AttemptOutcome.NOT_RECORDED
            done = await _move(
                session, model, (DeliveryState.SENDING,), DeliveryState.FAILED, *mine,
                lease_owner=None, lease_until=None,
                target=target, last_status=result.status, last_error=result.detail,
            )
            if not done:
                return AttemptOutcome.NOT_RECORDED
            fallback = await _move(
                session, model, (DeliveryState.STANDBY,), DeliveryState.PENDING,
                _group(model, row), model.position == row.position + 1,
                next_attempt_at=db_now(),
            )
            detail = {**_describe(row, result), "fallback": bool(fallback)}
            add_audit(session, incident_id, self.owner, "channel_failed", detail)
            if not fallback:
                add_audit(session, incident_id, self.owner, "ops_alert", detail)
        if not fallback:
            await self.ops.alert("delivery_exhausted", {"incident_id": str(incident_id), **detail})
        return AttemptOutcome.FAILED


async def settle_incident(
    db: Database, incident_id: uuid.UUID, events: IncidentEvents | None, actor: str = "worker"
) -> IncidentState | None:
    """Close a ``dispatching`` incident whose rows are all settled; returns the new state or None.

    Called by the sender after each final row outcome and by the sweeper as a backstop
    (a sender may die between recording and settling). Not while ``routing_due``: a class
    heard while the report was being sent still needs its agencies' rows (the sweeper's
    ``route_late_classes``). The incident's row is locked first (PostgreSQL), so the rows read
    next include any that routing committed before the lock was had.
    """
    async with db.session() as session:
        routing_due = await session.scalar(
            select(Incident.routing_due).where(Incident.id == incident_id).with_for_update()
        )
        if routing_due is not False:  # routing to do, or no such incident
            return None
        rows = (
            await session.execute(
                select(DispatchOutbox.agency_id, DispatchOutbox.state).where(DispatchOutbox.incident_id == incident_id)
            )
        ).all()
        if not rows or any(state in OPEN_DELIVERY_STATES for _, state in rows):
            return None
        reached = {agency for agency, state in rows if state is DeliveryState.SENT}
        missed = sorted({agency for agency, _ in rows} - reached)
        new_state = IncidentState.FAILED if missed else IncidentState.DISPATCHED
        settled = (
            await session.execute(
                move_incident(IncidentState.DISPATCHING, new_state, Incident.id == incident_id)
                .returning(Incident.device_id, Incident.duress_at)
            )
        ).first()
        if settled is None:
            return None
        # Under duress the guardians were told "cancelled" and the device shows it: neither
        # hears of the report (shared/incidents/duress_cancel.py).
        duress = settled.duress_at is not None
        if not duress:
            await add_contact_notifications(session, incident_id, settled.device_id, ContactEvent.settled_as(new_state))
        add_audit(session, incident_id, actor, new_state.value, {"reached": sorted(reached), "missed": missed})
    if events is not None and not duress:
        view = await get_incident(db, incident_id)
        if view is not None:
            await events.publish(view.as_update({"reached": sorted(reached), "missed": missed}))
    return new_state


async def _move(
    session: Any,
    model: type[DispatchOutbox] | type[ContactNotification],
    sources: tuple[DeliveryState, ...],
    new_state: DeliveryState,
    *where: Any,
    **values: Any,
) -> int:
    """How many rows moved from ``sources`` to ``new_state`` (:func:`shared.incidents.move_deliveries`)."""
    result = await session.execute(move_deliveries(model, sources, new_state, *where).values(**values))
    return int(result.rowcount)


def _group(model: Any, row: Row) -> Any:
    """The rows that are alternatives for the same recipient (the fallback chain)."""
    if isinstance(row, DispatchOutbox):
        return and_(model.incident_id == row.incident_id, model.agency_id == row.agency_id)
    return and_(model.incident_id == row.incident_id, model.contact_id == row.contact_id, model.event == row.event)


def _describe(row: Row, result: DeliveryResult) -> dict[str, Any]:
    recipient = (
        {"agency": row.agency_id} if isinstance(row, DispatchOutbox)
        else {"contact": row.contact_id, "event": row.event}
    )
    return {
        **recipient, "delivery": str(row.id), "kind": row.kind, "attempts": row.attempts,
        "status": result.status, "detail": result.detail,
    }


def _data(payload: bytes) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(payload)["data"]
    return data
