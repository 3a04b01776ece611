"""What a session listens for under its device's profile (``devices.profile``).

The ``daycare`` profile adds the child-safety rule (:mod:`shared.daycare.rule`) beside the
detector: the classifier gives it every window's tags, and what it raises is reported as any
detection is, as a ``child_safety`` incident with the profile's short countdown
(docs/daycare.md). The ``home`` profile adds nothing. A device's profile changed while it
streams reaches its sessions (``use``, from :mod:`services.gateway.settings_watch`) from their
next window on.
"""

from __future__ import annotations

from collections.abc import Iterable

from shared.daycare import ChildSafetyRule, DaycarePolicy
from shared.detector import DetectionEvent
from shared.device_modes import DeviceProfile


class SessionProfile:
    """One session's profile and, under ``daycare``, its rule (windows ``hop_s`` apart)."""

    def __init__(self, profile: DeviceProfile, policy: DaycarePolicy, hop_s: float) -> None:
        self._policy = policy
        self._hop_s = hop_s
        self._rule: ChildSafetyRule | None = None
        self.profile = DeviceProfile.HOME
        self.use(profile)

    def use(self, profile: DeviceProfile) -> None:
        """Listen under ``profile`` from the next window on; the same profile again changes
        nothing (the rule keeps what it heard)."""
        if profile is self.profile and (self._rule is not None) == (profile is DeviceProfile.DAYCARE):
            return
        self.profile = profile
        self._rule = ChildSafetyRule(self._policy, self._hop_s) if profile is DeviceProfile.DAYCARE else None

    def heard(self, stream_time_s: float, tags: Iterable[tuple[str, float]]) -> list[DetectionEvent]:
        """The raises of the window ending at ``stream_time_s`` with these (label, score) tags."""
        if self._rule is None:
            return []
        return self._rule.update(stream_time_s, dict(tags))
