"""The gateway's detector: the pure logic lives in ``shared.detector`` so that ``hearo eval``
scores clips through exactly the code the gateway runs."""

from __future__ import annotations

from shared.detector import DetectionEvent, Detector, DetectorConfig

__all__ = ["DetectionEvent", "Detector", "DetectorConfig"]
