"""An open anomaly that the nine-class detector agrees with becomes an emergency.

Apart from :mod:`shared.anomaly.incidents` because the incident lifecycle calls it when a
detection joins an open incident (``shared.incidents.lifecycle``), and that package is
imported by the anomaly incidents themselves.
"""

from __future__ import annotations

from shared.db.models import Incident
from shared.incident_state import IncidentKind


def promote_to_emergency(incident: Incident, class_key: str, confidence: float) -> bool:
    """The nine-class detector agrees with an open anomaly: it becomes an emergency of
    ``class_key`` (its anomaly record kept, marked), reported as one at its deadline."""
    if incident.kind is not IncidentKind.ANOMALY:
        return False
    incident.kind = IncidentKind.EMERGENCY
    incident.class_key = class_key
    incident.confidence = confidence
    incident.anomaly = {**(incident.anomaly or {}), "became": class_key}
    return True
