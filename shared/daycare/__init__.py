"""The daycare profile (``devices.profile = daycare``): a child crying, an adult shouting and
blows heard together raise a ``child_safety`` incident, the staff told first (docs/daycare.md)."""

from __future__ import annotations

from shared.daycare.acoustic import AcousticCues
from shared.daycare.rule import ChildSafetyRule, Cue, DaycarePolicy, cue_levels, window_levels

__all__ = ["AcousticCues", "ChildSafetyRule", "Cue", "DaycarePolicy", "cue_levels", "window_levels"]
