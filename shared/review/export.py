"""``hearo review export``: the reviewed, donated segments as WAV files and a manifest.

Written to ``out``: ``<label>/<incident>.wav`` (the clip decoded from FLAC to 16-bit PCM, at
its own rate) and ``manifest.csv`` (:mod:`shared.review.manifest`). Only segments whose owner
donated the clip and whose newest label is a class (not ``unclear``) are exported; a reported
incident is reviewed for precision but never leaves as training data. The folder is also a
class-folder dataset (``docs/training.md``). Exporting again rewrites the manifest with the
newest labels and removes the files of segments it no longer holds (a relabelled one moves
folder; one deleted by retention or erasure goes), so a copy follows the source.

Every clip read is audited on its incident (``clip_downloaded``, ``via: export``).
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from pathlib import Path

import soundfile as sf

from shared.clips import ClipStore
from shared.db import Database
from shared.review.labels import UNCLEAR
from shared.review.manifest import CONSENT_DONATED, REVIEW_MANIFEST_FIELDS, event_span
from shared.review.segments import SegmentGone, device_pseudonym, list_segments, read_segment_audio
from shared.taxonomy import by_key

__all__ = ["ExportSummary", "export_reviewed"]


@dataclass
class ExportSummary:
    manifest: Path
    exported: int = 0
    unreviewed: int = 0  # donated, waiting for a label
    unclear: int = 0  # the newest label is "unclear"
    gone: int = 0  # deleted between the listing and the read
    removed: int = 0  # files of an earlier export no longer exported


async def export_reviewed(db: Database, store: ClipStore, out: Path, *, reviewer: str) -> ExportSummary:
    """Export every reviewed donated segment into ``out`` (see the module docstring)."""
    out.mkdir(parents=True, exist_ok=True)
    manifest = out / "manifest.csv"
    summary = ExportSummary(manifest)
    rows: list[dict[str, object]] = []
    for segment in await list_segments(db, pending=False, exportable=True, limit=1_000_000):
        if segment.review is None:
            summary.unreviewed += 1
            continue
        label = segment.review.label
        if label == UNCLEAR:
            summary.unclear += 1
            continue
        try:
            flac = await read_segment_audio(db, store, segment.incident_id, reviewer=reviewer, via="export")
        except SegmentGone:
            summary.gone += 1
            continue
        audio, rate = sf.read(io.BytesIO(flac), dtype="int16")
        name = f"{label}/{segment.incident_id}.wav"
        (out / label).mkdir(exist_ok=True)
        sf.write(str(out / name), audio, rate, subtype="PCM_16")
        start, end = event_span(label, audio.shape[0] / rate, segment.timeline)
        assert segment.donated_at is not None  # exportable
        rows.append({
            "file": name, "class": label, "class_id": by_key(label).id, "model_label": segment.class_key,
            "incident": str(segment.incident_id), "kind": segment.kind, "reviewer": segment.review.reviewer,
            "reviewed_at": segment.review.reviewed_at.isoformat(), "consent": CONSENT_DONATED,
            "device": device_pseudonym(segment.device_id), "donated_at": segment.donated_at.isoformat(),
            "detected_at": segment.detected_at.isoformat(), "event_start_s": f"{start:.3f}", "event_end_s": f"{end:.3f}",
        })  # fmt: skip
        summary.exported += 1
    summary.removed = _remove_stale(out, manifest, {str(row["file"]) for row in rows})
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    tmp.replace(manifest)
    return summary


def _remove_stale(out: Path, manifest: Path, kept: set[str]) -> int:
    """Delete the files an earlier manifest listed that this export does not hold."""
    if not manifest.is_file():
        return 0
    with open(manifest, newline="", encoding="utf-8") as f:
        earlier = {row["file"] for row in csv.DictReader(f) if row.get("file")}
    removed = 0
    for name in earlier - kept:
        path = (out / name).resolve()
        if path.is_relative_to(out.resolve()) and path.is_file():
            path.unlink()
            removed += 1
    return removed
