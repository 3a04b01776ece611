"""The outcome ledger: what each agency found for the incidents reported to it.

An agency answers through the signed callback (:mod:`shared.outcome_callback`); the gateway
checks the signature and then calls :func:`record_outcome`, which decides, in one
transaction holding the incident's row:

==============  =====================================================================
recorded        the agency's first answer for this incident
replaced        a different answer from the same agency, signed later: it replaces the
                row; the audit trail keeps both
unchanged       the same outcome and note again (idempotent)
not_found       no such incident
not_reported    the incident was never reported (cancelled, or still counting down)
replayed        this ``webhook-id`` was already recorded for this incident and agency
superseded      signed before the answer already recorded: an older message cannot win
==============  =====================================================================

Every accepted answer (recorded, replaced, unchanged) is an ``outcome`` audit entry with
the agency, the outcome, the one it replaced and the ``webhook-id``. The note is kept
only in ``incident_outcomes``, never in the audit trail.
"""

from __future__ import annotations

import enum
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AuditEntry, Incident, IncidentOutcomeRecord
from shared.incident_state import IncidentOutcome, IncidentState
from shared.incidents import add_audit

OUTCOME_EVENT = "outcome"
# The longest note an agency may attach (``incident_outcomes.note``).
MAX_NOTE_LENGTH = 500
REPORTED_STATES = (IncidentState.DISPATCHING, IncidentState.DISPATCHED, IncidentState.FAILED)


class LedgerAnswer(enum.StrEnum):
    """What :func:`record_outcome` did (the module docstring's table)."""

    RECORDED = "recorded"
    REPLACED = "replaced"
    UNCHANGED = "unchanged"
    NOT_FOUND = "not_found"
    NOT_REPORTED = "not_reported"
    REPLAYED = "replayed"
    SUPERSEDED = "superseded"

    @property
    def accepted(self) -> bool:
        return self in (LedgerAnswer.RECORDED, LedgerAnswer.REPLACED, LedgerAnswer.UNCHANGED)


@dataclass(frozen=True)
class AgencyOutcome:
    """One agency's answer as it stands in the ledger."""

    incident_id: uuid.UUID
    agency_id: str
    outcome: IncidentOutcome
    note: str | None
    signed_at: datetime
    received_at: datetime

    @classmethod
    def from_row(cls, row: IncidentOutcomeRecord) -> AgencyOutcome:
        return cls(row.incident_id, row.agency_id, row.outcome, row.note, row.signed_at, row.received_at)

    def to_json(self) -> dict[str, Any]:
        return {
            "incident_id": str(self.incident_id),
            "agency_id": self.agency_id,
            "outcome": self.outcome.value,
            "note": self.note,
            "signed_at": self.signed_at.isoformat(),
            "received_at": self.received_at.isoformat(),
        }


@dataclass(frozen=True)
class LedgerResult:
    """The answer, and the agency's outcome as it now stands (None when it has none)."""

    answer: LedgerAnswer
    current: AgencyOutcome | None


async def record_outcome(
    db: Database,
    incident_id: uuid.UUID,
    agency_id: str,
    outcome: IncidentOutcome,
    *,
    message_id: str,
    signed_at: datetime,
    note: str | None = None,
) -> LedgerResult:
    """Record ``agency_id``'s answer for a reported incident (see the module docstring).

    The caller has verified the callback's signature; ``message_id`` and ``signed_at`` are its
    ``webhook-id`` and ``webhook-timestamp``. Raises ValueError for a note over
    :data:`MAX_NOTE_LENGTH` characters.
    """
    if note is not None and len(note) > MAX_NOTE_LENGTH:
        raise ValueError(f"a note has at most {MAX_NOTE_LENGTH} characters")
    for _ in range(3):
        try:
            return await _record(db, incident_id, agency_id, outcome, message_id, signed_at, note)
        except IntegrityError:
            continue  # another first answer from this agency was inserted in between: decide again
    raise RuntimeError(f"could not record the outcome of incident {incident_id} from {agency_id!r}")


async def _record(
    db: Database,
    incident_id: uuid.UUID,
    agency_id: str,
    outcome: IncidentOutcome,
    message_id: str,
    signed_at: datetime,
    note: str | None,
) -> LedgerResult:
    async with db.session() as session:
        # The incident's row lock (PostgreSQL; SQLite has one writer) orders two answers at once.
        state = await session.scalar(select(Incident.state).where(Incident.id == incident_id).with_for_update())
        if state is None:
            return LedgerResult(LedgerAnswer.NOT_FOUND, None)
        row = await session.scalar(
            select(IncidentOutcomeRecord).where(
                IncidentOutcomeRecord.incident_id == incident_id, IncidentOutcomeRecord.agency_id == agency_id
            )
        )
        current = None if row is None else AgencyOutcome.from_row(row)
        if state not in REPORTED_STATES:
            return LedgerResult(LedgerAnswer.NOT_REPORTED, current)
        if message_id in await _recorded_messages(session, incident_id, agency_id):
            return LedgerResult(LedgerAnswer.REPLAYED, current)
        if row is not None and signed_at < row.signed_at:
            return LedgerResult(LedgerAnswer.SUPERSEDED, current)
        previous = None if row is None else row.outcome
        if row is None:
            answer = LedgerAnswer.RECORDED
            row = IncidentOutcomeRecord(
                incident_id=incident_id, agency_id=agency_id, outcome=outcome, note=note,
                message_id=message_id, signed_at=signed_at, received_at=db_now(),
            )
            session.add(row)
        else:
            answer = LedgerAnswer.UNCHANGED if (row.outcome, row.note) == (outcome, note) else LedgerAnswer.REPLACED
            row.outcome, row.note, row.message_id, row.signed_at = outcome, note, message_id, signed_at
            if answer is LedgerAnswer.REPLACED:
                row.received_at = db_now()
        add_audit(
            session, incident_id, "agency", OUTCOME_EVENT,
            {"agency_id": agency_id, "outcome": outcome.value, "previous": previous.value if previous else None,
             "answer": answer.value, "message_id": message_id},
        )
        await session.flush()
        await session.refresh(row)
        return LedgerResult(answer, AgencyOutcome.from_row(row))


async def _recorded_messages(session: AsyncSession, incident_id: uuid.UUID, agency_id: str) -> set[str]:
    # An incident has a handful of answers at most: read them rather than query into JSON,
    # which SQLite and PostgreSQL spell differently.
    details = await session.scalars(
        select(AuditEntry.detail).where(AuditEntry.incident_id == incident_id, AuditEntry.event == OUTCOME_EVENT)
    )
    return {d.get("message_id") for d in details if d.get("agency_id") == agency_id}


async def incident_outcomes(db: Database, incident_id: uuid.UUID) -> list[AgencyOutcome]:
    """Every agency's current answer for the incident, by agency id."""
    async with db.session() as session:
        rows = await session.scalars(
            select(IncidentOutcomeRecord)
            .where(IncidentOutcomeRecord.incident_id == incident_id)
            .order_by(IncidentOutcomeRecord.agency_id)
        )
        return [AgencyOutcome.from_row(row) for row in rows]
