"""The incidents of one `hearo stream`, as the client last heard of them, and how to cancel one."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from shared.incident_state import IncidentState
from shared.protocol import DetectionMessage, IncidentMessage


@dataclass
class IncidentStatus:
    """An incident as the client last heard of it; ``deadline`` on the local wall clock."""

    incident_id: str
    state: IncidentState
    deadline: float  # time.time() at which the report is due (the gateway's clock, skew removed)
    class_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)
    corroboration: dict[str, Any] | None = None  # what the home's other devices heard, once judged

    @property
    def unresolved(self) -> bool:
        return not self.state.is_final

    def describe(self, now: float) -> str:
        """One line for people: the countdown while pending, else the outcome."""
        what = f"incident {self.incident_id[:8]}" + (f" ({self.class_key})" if self.class_key else "")
        if self.state is IncidentState.PENDING:
            left = max(0.0, self.deadline - now)
            return (
                f"{what}: reporting in {left:.0f} s unless cancelled (hearo incident cancel {self.incident_id})"
                + self._household()
            )
        if self.state is IncidentState.DISPATCHING:
            return f"{what}: reporting now"
        if self.state is IncidentState.DISPATCHED and self.detail.get("event") == "evidence":
            # The same event heard again after its report (docs/incidents.md): added to it.
            return f"{what}: already REPORTED; heard again ({self.detail.get('detections')} detections), not reported twice"
        if self.state is IncidentState.DISPATCHED:
            reached = self.detail.get("reached")
            return f"{what}: REPORTED" + (f" to {', '.join(reached)}" if reached else "")
        if self.state is IncidentState.CANCELLED:
            reason = self.detail.get("reason")
            return f"{what}: cancelled, nothing reported" + (f" ({reason})" if reason else "")
        return f"{what}: the report could not be delivered; call 112/119 directly"

    def _household(self) -> str:
        """What the home's other devices heard (docs/evidence.md), when judged."""
        judged = self.corroboration
        if not judged:
            return ""
        if judged.get("only_this_device"):
            return "; only this device heard it"
        supporting = [s for s in judged.get("supporting") or [] if s.get("how") == "same_class"]
        places = [str(s.get("room") or s.get("name") or "another device") for s in supporting]
        return f"; also heard in: {', '.join(places)}" if places else ""


@dataclass
class IncidentBoard:
    """The incidents of the stream, from ``detection`` and ``incident`` messages.

    Countdowns use ``seconds_left`` when a message has it (the database's clock); later
    deadlines are moved by the skew then measured between the gateway's clock and this one.
    """

    incidents: dict[str, IncidentStatus] = field(default_factory=dict)
    _skew_s: float = 0.0  # the gateway's deadline_at minus the local time it is due

    def on_detection(self, message: DetectionMessage, now: float) -> None:
        if message.incident_id is None:
            return
        known = self.incidents.get(message.incident_id)
        if known is not None:
            known.class_key = known.class_key or message.class_
        elif message.deadline_at is not None:
            self.incidents[message.incident_id] = IncidentStatus(
                message.incident_id, IncidentState.PENDING, self._local(message.deadline_at, message.seconds_left, now),
                message.class_,
            )  # fmt: skip

    def on_incident(self, message: IncidentMessage, now: float) -> IncidentStatus:
        status = self.incidents.get(message.incident_id)
        deadline = self._local(message.deadline_at, message.seconds_left, now)
        if status is None:
            status = self.incidents[message.incident_id] = IncidentStatus(message.incident_id, message.state, deadline)
        status.state, status.deadline = message.state, deadline
        status.class_key = status.class_key or message.detail.get("class")
        status.detail = message.detail
        status.corroboration = message.corroboration or status.corroboration
        return status

    def _local(self, deadline_at: datetime, seconds_left: float | None, now: float) -> float:
        if seconds_left is not None:
            self._skew_s = deadline_at.timestamp() - (now + seconds_left)
        return deadline_at.timestamp() - self._skew_s

    @property
    def unresolved(self) -> list[IncidentStatus]:
        return [status for status in self.incidents.values() if status.unresolved]


def cancel_hint(status: IncidentStatus, http_base: str) -> str:
    """How to cancel ``status`` once this client is gone."""
    due = datetime.fromtimestamp(status.deadline, UTC).astimezone().strftime("%H:%M:%S")
    when = f"the report goes out at {due}" if status.state is IncidentState.PENDING else "the report is going out"
    return (
        f"incident {status.incident_id} is still {status.state}: {when}; leaving did not cancel it.\n"
        f"  cancel it with: hearo incident cancel {status.incident_id}\n"
        f"  or: curl -X POST {http_base}/v1/incidents/{status.incident_id}/cancel "
        f"-H 'Authorization: Bearer $HEARO_TOKEN'"
    )


def http_base(ws_url: str) -> str:
    """The gateway's REST base for its stream URL: ws://host:8000/v1/stream -> http://host:8000."""
    scheme, _, rest = ws_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"
