"""The export's ``manifest.csv``: reviewed segments with their labels and their owners' consent.

Written by :func:`shared.review.export.export_reviewed` (``hearo review export``), read here
by every consumer (``hearo data build --extra``, ``hearo train --extra``), so a row without
consent is refused in one place. Columns:

``file`` (relative to the manifest), ``class`` and ``class_id`` (the reviewed label, a class
key), ``model_label`` (what the system raised), ``incident``, ``kind``, ``reviewer``,
``reviewed_at``, ``consent`` (``donated``: the owner's explicit donation of the clip for
training), ``device`` (:func:`~shared.review.segments.device_pseudonym`), ``donated_at``,
``detected_at``, ``event_start_s`` and ``event_end_s`` (where in the clip the labelled sound
is, see :func:`event_span`).
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from shared.clips import CLIP_AFTER_S, CLIP_BEFORE_S
from shared.taxonomy import NORMAL, by_key

__all__ = ["CONSENT_DONATED", "REVIEW_MANIFEST_FIELDS", "ReviewedClip", "event_span", "read_review_manifest"]

REVIEW_MANIFEST_FIELDS = (
    "file", "class", "class_id", "model_label", "incident", "kind", "reviewer", "reviewed_at",
    "consent", "device", "donated_at", "detected_at", "event_start_s", "event_end_s",
)
CONSENT_DONATED = "donated"
WINDOW_S = 2.0  # a model window: the timeline's scores are of the 2 s before each point
_FULL_CLIP_S = CLIP_BEFORE_S + CLIP_AFTER_S - 0.1


@dataclass(frozen=True)
class ReviewedClip:
    """One manifest row, checked: its audio file, its label and the consent it rests on."""

    path: Path
    class_key: str
    incident: str
    model_label: str
    reviewer: str
    reviewed_at: str
    consent: str
    device: str
    donated_at: str
    start_s: float
    end_s: float

    @property
    def class_id(self) -> int:
        return by_key(self.class_key).id

    @property
    def group(self) -> str:
        """The unit a data split keeps on one side: the incident."""
        return f"review:{self.incident}"


def event_span(label: str, duration_s: float, timeline: Sequence[dict[str, Any]]) -> tuple[float, float]:
    """Where the labelled sound is in a clip of ``duration_s``: all of it for ``normal`` (the
    whole clip is what a false alarm sounded like), else the timeline's windows placed in the
    clip. A full clip ends ``CLIP_AFTER_S`` after the detection; a shorter one (the stream
    started late or stopped early) cannot say where the detection was, so it is all of it."""
    if label == NORMAL.key or duration_s < _FULL_CLIP_S or not timeline:
        return 0.0, round(duration_s, 3)
    at = duration_s - CLIP_AFTER_S
    times = [float(point["t"]) for point in timeline]
    start = min(max(at + min(times) - WINDOW_S, 0.0), duration_s - WINDOW_S)
    end = max(min(at + max(times), duration_s), start + WINDOW_S)
    return round(start, 3), round(end, 3)


def read_review_manifest(manifest: Path) -> list[ReviewedClip]:
    """The rows of an export's manifest; ValueError (naming the row) for a missing file or
    column, an unknown label, or a row whose consent is not a recorded donation."""
    if not manifest.is_file():
        raise ValueError(f"{manifest}: no such file (run `hearo review export --out DIR`; the manifest is DIR/manifest.csv)")
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        missing = [name for name in REVIEW_MANIFEST_FIELDS if name not in (reader.fieldnames or ())]
        if missing:
            raise ValueError(f"{manifest}: not a review export (missing columns: {', '.join(missing)})")
        rows = list(reader)
    clips = []
    for number, row in enumerate(rows, start=2):
        where = f"{manifest}, row {number}"
        try:
            by_key(row["class"])
        except KeyError as exc:
            raise ValueError(f"{where}: {exc.args[0]}") from None
        if row["consent"] != CONSENT_DONATED or not row["device"] or not row["donated_at"]:
            raise ValueError(f"{where}: no recorded donation (consent, device, donated_at); it may not be trained on")
        path = manifest.parent / row["file"]
        if not path.is_file():
            raise ValueError(f"{where}: the audio {path} is missing")
        try:
            start, end = float(row["event_start_s"]), float(row["event_end_s"])
        except ValueError:
            raise ValueError(f"{where}: event_start_s and event_end_s must be numbers") from None
        clips.append(ReviewedClip(
            path, row["class"], row["incident"], row["model_label"], row["reviewer"], row["reviewed_at"],
            row["consent"], row["device"], row["donated_at"], start, end,
        ))  # fmt: skip
    return clips
