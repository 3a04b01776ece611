"""Incidents as the gateway and the alerting worker keep them in the database.

One module per noun; import from here, the public surface:

* :mod:`~shared.incidents.lifecycle`: open, cancel or confirm (:func:`act_on_incident`, one
  :class:`~shared.incident_state.IncidentAction` for both), read, list, where the report went.
* :mod:`~shared.incidents.views`: :class:`IncidentView` and the values it is made of.
* :mod:`~shared.incidents.evidence`: the countdown's evidence (growing, steady, faded) and
  when growing evidence shortens the countdown; :mod:`~shared.incidents.evidence_record` writes it.
* :mod:`~shared.incidents.moves`: the only two ways a state changes in the database.
* :mod:`~shared.incidents.contacts`: the notices queued for the emergency contacts.
* :mod:`~shared.incidents.clips`: the recorded audio and every access to it.
* :mod:`~shared.incidents.audit`: the audit trail.

The states and their transition table are :mod:`shared.incident_state`'s; the updates
pushed to the gateways, :mod:`shared.incident_events`'s.
"""

from shared.incidents.audit import add_audit
from shared.incidents.clips import (
    CLIP_DOWNLOADED,
    CLIP_LINK_ISSUED,
    ClipInfo,
    archive_clip,
    audit_clip_access,
    clip_accesses,
    incident_clip,
)
from shared.incidents.contacts import add_contact_notifications
from shared.incidents.evidence import (
    EvidenceFacts,
    EvidencePolicy,
    FadedRule,
    Shortening,
    ShorteningRule,
    corroborated_deadline,
    judge_evidence,
    shortened_deadline,
)
from shared.incidents.evidence_record import EvidenceRecorded, record_evidence, shorten_deadline
from shared.incidents.lifecycle import (
    COUNTDOWN_S,
    MAX_TIMELINE_POINTS,
    SAME_EVENT_S,
    WRITE_RETRY_S,
    act_on_incident,
    get_incident,
    incident_deliveries,
    list_incidents,
    open_incident,
)
from shared.incidents.moves import move_deliveries, move_incident
from shared.incidents.views import (
    ActionResult,
    DeviceTokenChanged,
    IncidentLocation,
    IncidentView,
    OpenedIncident,
    ScorePoint,
)

__all__ = [
    "CLIP_DOWNLOADED",
    "CLIP_LINK_ISSUED",
    "COUNTDOWN_S",
    "MAX_TIMELINE_POINTS",
    "SAME_EVENT_S",
    "WRITE_RETRY_S",
    "ActionResult",
    "ClipInfo",
    "DeviceTokenChanged",
    "EvidenceFacts",
    "EvidencePolicy",
    "EvidenceRecorded",
    "FadedRule",
    "IncidentLocation",
    "IncidentView",
    "OpenedIncident",
    "ScorePoint",
    "Shortening",
    "ShorteningRule",
    "act_on_incident",
    "add_audit",
    "add_contact_notifications",
    "archive_clip",
    "audit_clip_access",
    "clip_accesses",
    "corroborated_deadline",
    "get_incident",
    "incident_clip",
    "incident_deliveries",
    "judge_evidence",
    "list_incidents",
    "move_deliveries",
    "move_incident",
    "open_incident",
    "record_evidence",
    "shorten_deadline",
    "shortened_deadline",
]
