"""A cancel under duress: the device is told "cancelled", the police get a silent report.

:func:`~shared.incidents.lifecycle.act_on_incident` hands a cancel here when its code is the
device's duress code (:mod:`shared.incidents.duress`) and the incident's class is one duress
applies to. Then, in one transaction with a conditional ``UPDATE ... WHERE state = 'pending'
AND duress_at IS NULL``:

* the incident is **not** cancelled: it stays ``pending`` with ``duress_at`` (database now),
  ``trigger = 'duress'`` and the cancel's reason, so the alerting worker claims it at its
  next sweep (``services/alerting/sweeper.py``: pending and past its deadline, or under
  duress) and reports it exactly once, to where a crime goes (``DURESS_ROUTE_CLASS``), through
  the same outbox as every report;
* the guardians are handled as for an ordinary cancel: those not yet told of the detection
  never are, those told hear "cancelled" (and nothing of the report later: a guardian's phone
  may be within the reach of whoever forced the cancel);
* the audit trail gets the ``cancelled`` entry an ordinary cancel writes, and a ``duress``
  entry for the operators.

What the device sees of the incident from then on is an ordinary cancel, everywhere: that
mapping is :mod:`shared.incidents.views`' (:func:`~shared.incidents.views.view_of` and the
device-facing trails beside it), the one place every device-facing read goes through.
"""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

from sqlalchemy import select, update

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import Device, Incident
from shared.incident_events import IncidentEvents
from shared.incident_state import ActionOutcome, IncidentAction, IncidentState
from shared.incidents.audit import add_audit
from shared.incidents.contacts import withdraw_detection_notices
from shared.incidents.duress import DURESS_CLASSES, DURESS_ROUTE_CLASS, DURESS_TRIGGER, duress_applies, verify_code
from shared.incidents.views import ActionResult, IncidentView, owned, read_incident


async def is_duress_code(db: Database, incident_id: uuid.UUID, device_id: uuid.UUID | None, code: str) -> bool:
    """Whether ``code`` is the duress code of the incident's device and duress applies to its
    class. For a pending incident it always runs one scrypt (off the event loop), whatever is
    stored or typed, so the time tells nothing; for any other (no cancel can win) none, so a
    stream of cancels with codes costs no CPU once the countdown is over."""
    async with db.session() as session:
        row = (
            await session.execute(
                select(Device.duress_code_hash, Incident.class_key)
                .join(Device, Device.id == Incident.device_id)
                .where(*owned(incident_id, device_id), Incident.state == IncidentState.PENDING,
                       Incident.duress_at.is_(None))
            )
        ).first()  # fmt: skip
    if row is None:
        return False
    matches = await asyncio.to_thread(verify_code, code, row.duress_code_hash)
    return matches and duress_applies(row.class_key)


async def cancel_under_duress(
    db: Database,
    incident_id: uuid.UUID,
    *,
    device_id: uuid.UUID | None,
    cancelled_with: dict[str, Any],
    audited: dict[str, Any],
    events: IncidentEvents | None,
    actor: str,
) -> ActionResult:
    """Answer a cancel as an ordinary cancel would, having left the incident to be reported
    under duress (module docstring). ``cancelled_with``: the columns an ordinary cancel sets
    beside the state (its reason); ``audited``: the detail of its ``cancelled`` audit entry.
    Lost to the deadline or to an earlier action, the answer is what an ordinary cancel would
    get."""
    async with db.session() as session:
        won = (
            await session.execute(
                update(Incident)
                .where(
                    *owned(incident_id, device_id),
                    Incident.state == IncidentState.PENDING,
                    Incident.duress_at.is_(None),
                    Incident.class_key.in_(DURESS_CLASSES),
                )
                .values(duress_at=db_now(), trigger=DURESS_TRIGGER, **cancelled_with)
                .returning(Incident.device_id, Incident.class_key)
                .execution_options(synchronize_session=False)
            )
        ).first()
        view = await read_incident(session, incident_id, device_id)
        if view is None:
            return ActionResult(IncidentAction.CANCEL, ActionOutcome.NOT_FOUND, None)
        if won is not None:
            await withdraw_detection_notices(session, incident_id, won.device_id)
            add_audit(session, incident_id, actor, ActionOutcome.CANCELLED.value, audited)
            add_audit(session, incident_id, actor, DURESS_TRIGGER, {"class": won.class_key, "reported_as": DURESS_ROUTE_CLASS})
    if won is not None and events is not None:
        await events.publish(view.as_update())
    return ActionResult(IncidentAction.CANCEL, IncidentAction.CANCEL.outcome(won=won is not None, found=view.state), view)


async def open_under_duress(db: Database, device_id: uuid.UUID) -> IncidentView | None:
    """The device's incident cancelled under duress whose report has not settled yet, as the
    device sees it (cancelled), or None. It holds the device's one open slot until the report
    settles (seconds), so a detection meanwhile joins nothing and opens nothing."""
    async with db.session() as session:
        incident_id = await session.scalar(
            select(Incident.id).where(
                Incident.device_id == device_id, Incident.duress_at.is_not(None),
                Incident.state.in_((IncidentState.PENDING, IncidentState.DISPATCHING)),
            )
        )  # fmt: skip
        return None if incident_id is None else await read_incident(session, incident_id)
