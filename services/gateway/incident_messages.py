"""The ``incident`` messages a session sends its client (docs/protocol.md): from a fresh read
of the incident, or from an update pushed or polled while following it."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from shared.incident_events import IncidentUpdate
from shared.incident_state import IncidentState
from shared.incidents import IncidentView
from shared.protocol import IncidentMessage


def incident_message(view: IncidentView, detail: dict[str, Any]) -> IncidentMessage:
    """An ``incident`` message from a fresh read: pending ones carry the database's seconds
    left; a judged one, what the household's other devices heard; an anomaly, its record
    (``detail.anomaly``: reason, score, threshold, model version; docs/anomaly.md)."""
    pending = view.state is IncidentState.PENDING
    return IncidentMessage(
        incident_id=str(view.id),
        state=view.state,
        deadline_at=view.deadline_at,
        seconds_left=round(view.seconds_left, 3) if pending else None,
        evidence=view.evidence,
        detail=detail if view.anomaly is None else {**detail, "anomaly": view.anomaly},
        corroboration=view.corroboration,
        kind=view.kind,
    )


def update_message(update: IncidentUpdate) -> IncidentMessage:
    """An ``incident`` message from a pushed or polled update (no seconds left: count to the deadline)."""
    return IncidentMessage(
        incident_id=update.incident_id,
        state=update.state,
        deadline_at=datetime.fromisoformat(update.deadline_at),
        evidence=update.evidence,
        detail={"event": "update", **update.detail},
    )
