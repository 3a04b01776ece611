"""The clip as the report carries it: an expiring link, without holding the report back.

The gateway archives the clip (:func:`shared.incidents.archive_clip`) once the 20 s after
the detection have been heard, so at a 60 s deadline it is normally there. When the report
goes earlier (the person pressed "report now") the sender waits at most ``wait_s`` for it;
after that the report goes with the link marked ``pending``: the key is fixed in advance,
so the same link starts working as soon as the gateway stores the clip.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

from shared.clips import CONTENT_TYPE, ClipStore, clip_key
from shared.db import Database
from shared.incidents import ClipInfo, incident_clip

POLL_S = 0.25


async def clip_for_report(
    db: Database,
    store: ClipStore,
    incident_id: uuid.UUID,
    *,
    stored: ClipInfo | None,
    wait_s: float,
    ttl_s: int,
) -> dict[str, Any]:
    """The report's ``clip`` object: link, expiry, and (when stored) checksum and duration.

    ``stored`` is the clip as the caller already read it; when None, the database is
    polled for up to ``wait_s`` seconds.
    """
    deadline = time.monotonic() + wait_s
    clip = stored
    while clip is None and time.monotonic() < deadline:
        await asyncio.sleep(min(POLL_S, max(0.0, deadline - time.monotonic())))
        clip = await incident_clip(db, incident_id)
    key = clip.key if clip is not None else clip_key(incident_id)
    expires_at = datetime.now(timezone.utc) + timedelta(seconds=ttl_s)
    return {
        "url": store.link(key, ttl_s),
        "expires_at": expires_at.isoformat(timespec="seconds"),
        "status": "ready" if clip is not None else "pending",
        "content_type": CONTENT_TYPE,
        "sha256": clip.sha256 if clip is not None else None,
        "duration_s": round(clip.duration_s, 3) if clip is not None else None,
    }
