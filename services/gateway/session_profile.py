"""What a session listens for under its device's profile (``devices.profile``).

The ``daycare`` profile adds the child-safety rule (:mod:`shared.daycare.rule`) beside the
detector: the classifier gives it every window's tags, it reads the window's sound from the
session's ring buffer (the rule hears its cues in both: :mod:`shared.daycare.acoustic`), and
what it raises is reported as any detection is, as a ``child_safety`` incident with the
profile's short countdown (docs/daycare.md). The ``home`` profile adds nothing. A device's profile changed while it
streams reaches its sessions (``use``, from :mod:`services.gateway.settings_watch`) from their
next window on.
"""

from __future__ import annotations

from collections.abc import Iterable

from services.gateway.ring_buffer import RingBuffer
from shared.daycare import AcousticCues, ChildSafetyRule, DaycarePolicy
from shared.daycare.acoustic import WINDOW_S
from shared.detector import DetectionEvent
from shared.device_modes import DeviceProfile


class SessionProfile:
    """One session's profile and, under ``daycare``, its rule (windows ``hop_s`` apart), which
    reads the session's audio from ``ring`` (None: the tags alone)."""

    def __init__(self, profile: DeviceProfile, policy: DaycarePolicy, hop_s: float, ring: RingBuffer | None) -> None:
        self._policy = policy
        self._ring = ring
        self._hop_s = hop_s
        self._rule: ChildSafetyRule | None = None
        self._cues: AcousticCues | None = None
        self.profile = DeviceProfile.HOME
        self.use(profile)

    def use(self, profile: DeviceProfile) -> None:
        """Listen under ``profile`` from the next window on; the same profile again changes
        nothing (the rule keeps what it heard)."""
        if profile is self.profile and (self._rule is not None) == (profile is DeviceProfile.DAYCARE):
            return
        self.profile = profile
        daycare = profile is DeviceProfile.DAYCARE
        self._rule = ChildSafetyRule(self._policy, self._hop_s) if daycare else None
        self._cues = AcousticCues() if daycare else None

    def heard(self, stream_time_s: float, tags: Iterable[tuple[str, float]]) -> list[DetectionEvent]:
        """The raises of the window ending at ``stream_time_s`` with these (label, score) tags
        (none while inference is down: then the sound alone)."""
        if self._rule is None or self._cues is None:
            return []
        acoustic = None
        if self._ring is not None:
            # The window, and what the cues have not analysed since the last one (after a gap
            # in the windows, up to the ring's whole span).
            clip = self._ring.snapshot(WINDOW_S + self._hop_s, stream_time_s)
            acoustic = self._cues.levels(stream_time_s, clip.samples, clip.start_s)
        return self._rule.update(stream_time_s, dict(tags), acoustic)
