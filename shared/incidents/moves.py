"""The only two ways a state changes in the database: :func:`move_incident` and :func:`move_deliveries`.

Each builds one conditional ``UPDATE ... WHERE state = <expected>`` after asking the
transition table (:mod:`shared.incident_state`), so an illegal move raises before any SQL
runs, and when two changes race exactly one of them finds the row in its expected state.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlalchemy import Update, update

from shared.db.clock import db_now
from shared.db.models import ContactNotification, DispatchOutbox, Incident
from shared.incident_state import DeliveryState, IncidentState


def move_incident(source: IncidentState, target: IncidentState, *where: Any) -> Update:
    """``UPDATE incidents SET state = target WHERE state = source AND <where>``, stamping
    ``state_changed_at``: the one way an incident's state changes. Chain ``.values()`` and
    ``.returning()`` onto it; no row comes back when another change came first.

    Raises :class:`~shared.incident_state.IllegalTransition` when the table forbids the move.
    """
    return (
        update(Incident)
        .where(Incident.state == source, *where)
        .values(state=source.check_move(target), state_changed_at=db_now())
        .execution_options(synchronize_session=False)
    )


def move_deliveries(
    table: type[DispatchOutbox] | type[ContactNotification],
    sources: Iterable[DeliveryState],
    target: DeliveryState,
    *where: Any,
) -> Update:
    """``UPDATE <table> SET state = target WHERE state IN sources AND <where>``: the one way a
    delivery's state changes (chain ``.values()`` for the rest of the row).

    Raises :class:`~shared.incident_state.IllegalTransition` when a source may not become ``target``.
    """
    sources = tuple(sources)
    for source in sources:
        source.check_move(target)
    return (
        update(table)
        .where(table.state.in_(sources), *where)
        .values(state=target)
        .execution_options(synchronize_session=False)
    )
