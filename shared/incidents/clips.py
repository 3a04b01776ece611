"""An incident's recorded audio: archiving it, reading where it is, and auditing every access."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from shared.clips import CONTENT_TYPE, ClipStore, clip_key, encode_flac
from shared.db import Database
from shared.db.clock import db_now
from shared.db.models import AuditEntry, Incident, IncidentClip
from shared.incidents.audit import CLIP_DOWNLOADED, CLIP_LINK_ISSUED, add_audit
from shared.incidents.device_trail import device_audit


@dataclass(frozen=True)
class ClipInfo:
    key: str
    sha256: str
    duration_s: float
    size_bytes: int
    content_type: str

    @classmethod
    def from_row(cls, clip: IncidentClip) -> ClipInfo:
        return cls(clip.key, clip.sha256, clip.duration_s, clip.size_bytes, clip.content_type)


async def archive_clip(
    db: Database, store: ClipStore, incident_id: uuid.UUID, samples: np.ndarray, sample_rate: int
) -> ClipInfo:
    """Encode ``samples`` as FLAC, store it under the incident's key and record it (checksum
    included). Storing again replaces the clip: the gateway may store a longer one later.

    Raises LookupError, with the stored object deleted again, when the incident is gone
    (its device erased while the clip was being stored): no audio outlives its incident.
    """
    # Encoding 30 s takes ~15 ms of CPU: off the event loop, which carries live audio.
    encoded = await asyncio.to_thread(encode_flac, samples, sample_rate)
    key = clip_key(incident_id)
    await store.put(key, encoded.data)
    info = ClipInfo(key, encoded.sha256, encoded.duration_s, len(encoded.data), CONTENT_TYPE)
    try:
        async with db.session() as session:
            clip = await session.get(IncidentClip, incident_id)
            if clip is None:
                session.add(IncidentClip(incident_id=incident_id, created_at=db_now(), **info.__dict__))
            else:
                for name, value in info.__dict__.items():
                    setattr(clip, name, value)
            add_audit(session, incident_id, "gateway", "clip", {"sha256": info.sha256, "duration_s": info.duration_s})
    except IntegrityError:
        async with db.session() as session:
            if await session.get(Incident, incident_id) is not None:
                raise  # not the incident's foreign key: the clip stays for the retry
        await store.delete(key)  # the incident was deleted after the put
        raise LookupError(f"no incident {incident_id}; its clip was not kept") from None
    return info


async def incident_clip(db: Database, incident_id: uuid.UUID) -> ClipInfo | None:
    """The recorded clip of an incident, or None when none is stored yet."""
    async with db.session() as session:
        clip = await session.get(IncidentClip, incident_id)
    return None if clip is None else ClipInfo.from_row(clip)


async def audit_clip_access(
    db: Database, incident_id: uuid.UUID, event: str, actor: str, detail: dict[str, Any]
) -> bool:
    """Write an access to the incident's clip (``CLIP_LINK_ISSUED`` or ``CLIP_DOWNLOADED``) to
    its audit trail. False, with nothing written, when there is no such incident (any more)."""
    try:
        async with db.session() as session:
            if await session.get(Incident, incident_id) is None:
                return False
            add_audit(session, incident_id, actor, event, detail)
    except IntegrityError:  # deleted between the read and the write
        return False
    return True


async def clip_accesses(db: Database, incident_id: uuid.UUID) -> list[dict[str, Any]]:
    """Every audited access to the incident's clip as its device sees it (after a duress cancel,
    not the report's: :mod:`shared.incidents.device_trail`), oldest first: ``{at, event, actor,
    **detail}``."""
    async with db.session() as session:
        duress_at = await session.scalar(select(Incident.duress_at).where(Incident.id == incident_id))
        rows = (
            await session.scalars(
                select(AuditEntry)
                .where(AuditEntry.incident_id == incident_id, AuditEntry.event.in_((CLIP_LINK_ISSUED, CLIP_DOWNLOADED)))
                .order_by(AuditEntry.at, AuditEntry.id)
            )
        ).all()
    shown = device_audit(duress_at, rows)
    return [{"at": row.at.isoformat(), "event": row.event, "actor": row.actor, **row.detail} for row in shown]
