"""What a device sees of an incident's trail: its audit entries, where its report went, who
fetched its clip.

For an incident cancelled under duress (:mod:`shared.incidents.duress_cancel`) the device
sees exactly what an ordinary cancel leaves: the state is :func:`~shared.incidents.views.view_of`'s
to map, and the trail is this module's. The report's own entries (the ``duress`` mark, the
claim, each delivery, the settled state, the agency's answer) and the report's deliveries are
left out (a guardian's notice stays: the guardians are told of the cancel as for any), and
so are fetches of the clip through a link the owner was not given (the one in the report). Operators read the whole trail from the database.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import parse_qs, urlsplit

from shared.db.models import AuditEntry
from shared.incidents.audit import CLIP_DOWNLOADED, CLIP_LINK_ISSUED

# Audit events a report writes (services/alerting), and the duress mark itself.
REPORT_EVENTS = frozenset({
    "duress", "dispatching", "dispatched", "failed", "outcome",
    "report_clip_kept", "report_clip_deleted",  # shared/incident_privacy.py
})  # fmt: skip
# Events of one delivery: the report's (``detail.agency``) are hidden, a guardian's notice's shown.
DELIVERY_EVENTS = frozenset({"delivered", "channel_failed", "ops_alert"})

Row = TypeVar("Row")


def device_audit(duress_at: datetime | None, entries: Sequence[AuditEntry]) -> list[AuditEntry]:
    """The entries of one incident's trail (oldest first) that its device may see."""
    if duress_at is None:
        return list(entries)
    owners_links = {
        entry.detail.get("link_expires_at") for entry in entries if entry.event == CLIP_LINK_ISSUED
    } - {None}
    return [
        entry for entry in entries
        if entry.event not in REPORT_EVENTS
        and not (entry.event in DELIVERY_EVENTS and "agency" in entry.detail)
        and not (entry.event == CLIP_DOWNLOADED and entry.detail.get("link_expires_at") not in owners_links)
    ]  # fmt: skip


def device_deliveries(duress_at: datetime | None, rows: Sequence[Row]) -> list[Row]:
    """An incident's agency deliveries (or the agencies' outcomes) as its device sees them:
    none after a duress cancel."""
    return [] if duress_at is not None else list(rows)


def issued_link(url: str, ttl_s: int, **detail: Any) -> dict[str, Any]:
    """The detail of a ``clip_link_issued`` entry for ``url``: its expiry, when the link is the
    gateway's own (the ``exp`` its fetches are audited with), so the owner's fetches are told
    apart from the report's."""
    expiry = parse_qs(urlsplit(url).query).get("exp")
    return {"link_ttl_s": ttl_s, **({"link_expires_at": int(expiry[0])} if expiry else {}), **detail}
