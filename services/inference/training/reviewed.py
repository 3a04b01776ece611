"""Reviewed segments as extra training clips (``hearo train --extra``).

The rows of a review export (``hearo review export``; :func:`shared.review.read_review_manifest`
refuses a row without a recorded donation) become training clips with the reviewer's label
and the event span the export placed in the clip. An incident the data build already holds
(``hearo data build --extra``: source group ``review:<incident>``) is not added twice. The
model file's recipe lists every reviewed clip trained on with the consent it rests on
(:func:`consent_record`), so a model can be traced back to the donations it learned from.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from pathlib import Path
from typing import Any

from services.inference.training.manifest import ManifestClip, read_mono
from shared.review import ReviewedClip, read_review_manifest

__all__ = ["consent_record", "reviewed_training_clips"]


def reviewed_training_clips(
    manifests: Sequence[Path], rate: int, known_groups: Collection[str]
) -> tuple[list[ManifestClip], list[ReviewedClip]]:
    """The clips of ``manifests`` not in ``known_groups`` (the newest row of an incident wins),
    at ``rate``, with the rows they came from. ValueError when an export is refused."""
    latest = {clip.incident: clip for path in manifests for clip in read_review_manifest(path)}
    rows = [clip for clip in latest.values() if clip.group not in known_groups]
    clips = []
    for row in rows:
        audio = read_mono(row.path, rate)
        end = min(row.end_s, audio.size / rate)
        clips.append(ManifestClip(audio, row.class_id, row.start_s, max(end, row.start_s + 0.01), row.group, str(row.path)))
    return clips, rows


def consent_record(rows: Sequence[ReviewedClip]) -> list[dict[str, Any]]:
    """What a model's recipe keeps of each reviewed clip: the label and the consent."""
    return [
        {"incident": row.incident, "class": row.class_key, "model_label": row.model_label, "reviewer": row.reviewer,
         "consent": row.consent, "device": row.device, "donated_at": row.donated_at}
        for row in rows
    ]  # fmt: skip
