"""Reviewed segments as an extra source of a data build (``hearo data build --extra``).

The rows of a review export (``hearo review export``, read and checked for consent by
:func:`shared.review.read_review_manifest`) join the build's ``manifest.csv`` as they are:
the audio a device really heard, with the reviewer's label. They are not composed into scenes
(the clip already has its room and its background) and all go to the ``train`` split, so the
held-out figures of two builds stay comparable. Each file is copied to
``audio/reviewed/<class>/<incident>.wav``; its row records the consent it rests on
(columns ``consent``, ``device``, ``donated_at``: the device's pseudonym and when its owner
donated the clip; ``reviewer``, ``reviewed_at``, ``model_label``: who reviewed it and what the
system had said), and ``source_package`` is ``review`` with the
incident as ``source_path``, so a trainer keeps an incident on one side of any split.

Adding again replaces the reviewed rows (a newer export's labels win, a segment no longer
exported leaves) and keeps every other row.
"""

from __future__ import annotations

import csv
import shutil
from collections.abc import Sequence
from pathlib import Path

from shared.review import read_review_manifest

__all__ = ["REVIEW_PACKAGE", "add_reviewed"]

REVIEW_PACKAGE = "review"
_FOLDER = Path("audio") / "reviewed"


def add_reviewed(out: Path, manifests: Sequence[Path]) -> int:
    """Put the reviewed clips of ``manifests`` into the data build at ``out``; returns how many
    rows it now holds. ValueError when ``out`` has no build manifest or an export is refused."""
    manifest = out / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(f"{out}: no manifest.csv; build the data set first (hearo data build --out {out})")
    clips = [clip for path in manifests for clip in read_review_manifest(path)]
    with open(manifest, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        fields = list(reader.fieldnames or ())
        kept = [row for row in reader if row.get("source_package") != REVIEW_PACKAGE]
    latest = {clip.incident: clip for clip in clips}  # a later export's row of an incident wins
    shutil.rmtree(out / _FOLDER, ignore_errors=True)
    rows = []
    for clip in latest.values():
        name = (_FOLDER / clip.class_key / f"{clip.incident}.wav").as_posix()
        (out / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(clip.path, out / name)
        rows.append({
            "file": name, "class": clip.class_key, "class_id": clip.class_id, "source_package": REVIEW_PACKAGE,
            "source_path": clip.incident, "licence": "donated by the device's owner for training",
            "made": f"reviewed segment: the system said {clip.model_label}, the reviewer {clip.class_key}",
            "split": "train", "event_start_s": f"{clip.start_s:.3f}", "event_end_s": f"{clip.end_s:.3f}",
            "model_label": clip.model_label, "reviewer": clip.reviewer, "reviewed_at": clip.reviewed_at,
            "consent": clip.consent, "device": clip.device, "donated_at": clip.donated_at,
        })  # fmt: skip
    fields += [name for name in dict.fromkeys(name for row in rows for name in row) if name not in fields]
    tmp = manifest.with_suffix(".csv.tmp")
    with open(tmp, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, restval="")
        writer.writeheader()
        writer.writerows(kept)
        writer.writerows(rows)
    tmp.replace(manifest)
    return len(rows)
