"""When no sound of activity for a span is a concern (alone mode).

The span has run out at ``last_activity + span``; it is flagged at the first check from
then on that falls in the day's hours (local time), once per spell: a sound of activity
starts a new one. A device that has heard nothing at all since (offline, unplugged) is
flagged the same way: silence from a dead device is as worrying as a silent home, and the
incident says which it was (``device_heard``).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from shared.anomaly.policy import AnomalyPolicy


def inactivity_due(
    now: datetime, last_activity: datetime, span_s: float, flagged_at: datetime | None, policy: AnomalyPolicy
) -> bool:
    """The spell since ``last_activity`` is to be flagged ``now`` (aware datetimes)."""
    if flagged_at is not None and flagged_at >= last_activity:
        return False  # this spell was flagged already
    if now - last_activity < timedelta(seconds=span_s):
        return False
    local = now.astimezone(ZoneInfo(policy.timezone))
    return policy.day_starts_hour <= local.hour + local.minute / 60 < policy.day_ends_hour
