"""The audit trail of an incident (``audit_log``): who did what to it, on the database clock."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from shared.db.clock import db_now
from shared.db.models import AuditEntry

# Audit events of a clip: a link handed out, and the clip fetched through one.
CLIP_LINK_ISSUED = "clip_link_issued"
CLIP_DOWNLOADED = "clip_downloaded"


def add_audit(session: AsyncSession, incident_id: uuid.UUID | None, actor: str, event: str, detail: dict[str, Any]) -> None:
    """Add an audit entry, stamped by the database clock, to the caller's transaction."""
    session.add(AuditEntry(incident_id=incident_id, at=db_now(), actor=actor, event=event, detail=detail))
