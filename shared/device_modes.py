"""What a device listens for, beyond the nine classes (``devices.listening_mode``,
``devices.profile``). The values are the strings in the database, the REST API and the CLI.
"""

from __future__ import annotations

import enum


class ListeningMode(enum.StrEnum):
    """Which sounds are abnormal in this home, besides the nine classes."""

    STANDARD = "standard"  # only the nine classes
    AWAY = "away"  # nobody home: any loud, sudden or unusual sound is abnormal
    ALONE = "alone"  # someone living alone: impacts, shouting or a long silence are abnormal


class DeviceProfile(enum.StrEnum):
    """Which setting the device listens in: the rules that raise combined events."""

    HOME = "home"
    DAYCARE = "daycare"  # crying with adult shouting and blows -> child_safety, staff first
