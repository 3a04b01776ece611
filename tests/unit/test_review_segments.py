"""Review segments on SQLite and PostgreSQL: which incidents may be heard (consent), the newest
label wins with the history kept, every hearing is audited, precision on a hand-made case, and
the export holds only donated, labelled clips with their consent."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import soundfile as sf
from sqlalchemy import select

from shared.db import Database
from shared.db.models import AuditEntry
from shared.review import (
    REVIEW_MANIFEST_FIELDS,
    ReviewedLabel,
    SegmentGone,
    device_pseudonym,
    event_span,
    export_reviewed,
    get_segment,
    list_segments,
    read_key,
    read_review_manifest,
    read_segment_audio,
    record_review,
    review_history,
    review_precision,
    summarise_reviews,
)
from shared.review.labels import Move
from tests.review_support import clip_store, make_incidents


async def test_only_reports_and_donated_false_alarms_are_segments(db: Database, tmp_path: Path) -> None:
    made = await make_incidents(db, clip_store(tmp_path))
    listed = [s.incident_id for s in await list_segments(db)]
    assert listed == [made.donated, made.reported, made.donated_gas]  # oldest detection first
    for hidden in (made.undonated, made.expired, made.pending):
        with pytest.raises(SegmentGone):
            await get_segment(db, hidden)
        with pytest.raises(SegmentGone):
            await record_review(db, hidden, "normal", reviewer="kim")
    exportable = {s.incident_id for s in await list_segments(db, exportable=True)}
    assert exportable == {made.donated, made.donated_gas}


async def test_a_segment_shows_the_decision_and_the_average_score_per_class(db: Database, tmp_path: Path) -> None:
    made = await make_incidents(db, clip_store(tmp_path))
    segment = await get_segment(db, made.donated)
    assert (segment.kind, segment.class_key, segment.state, segment.cancel_kind) == (
        "emergency", "fire", "cancelled", "false_alarm")
    assert segment.averages == {"crime": 0.74, "fire": round((0.62 + 0.81) / 2, 4)}
    assert segment.exportable and segment.review is None
    body = segment.to_json()
    assert body["clip"]["duration_s"] == 30.0 and len(body["timeline"]) == 3
    assert not (await get_segment(db, made.reported)).exportable


async def test_the_newest_label_counts_and_the_history_stays(db: Database, tmp_path: Path) -> None:
    made = await make_incidents(db, clip_store(tmp_path))
    await record_review(db, made.donated, "fire", reviewer="kim")
    await record_review(db, made.donated, "normal", reviewer="lee", note="a toaster")
    segment = await get_segment(db, made.donated)
    assert segment.review is not None and (segment.review.label, segment.review.reviewer) == ("normal", "lee")
    assert segment.reviews == 2
    assert [r.label for r in await review_history(db, made.donated)] == ["normal", "fire"]
    assert all(r.model_label == "fire" for r in await review_history(db, made.donated))
    # A reviewed segment leaves the queue of pending ones.
    assert made.donated not in [s.incident_id for s in await list_segments(db)]
    with pytest.raises(ValueError, match="unknown label"):
        await record_review(db, made.donated, "toaster", reviewer="kim")
    with pytest.raises(ValueError, match="reviewer"):
        await record_review(db, made.donated, "normal", reviewer="  ")


async def test_hearing_a_segment_is_audited_on_its_incident(db: Database, tmp_path: Path) -> None:
    store = clip_store(tmp_path)
    made = await make_incidents(db, store)
    flac = await read_segment_audio(db, store, made.reported, reviewer="kim", via="review")
    assert flac[:4] == b"fLaC"
    async with db.session() as session:
        entry = await session.scalar(
            select(AuditEntry).where(AuditEntry.incident_id == made.reported, AuditEntry.event == "clip_downloaded"))
    assert entry is not None and entry.actor == "reviewer" and entry.detail == {"via": "review", "reviewer": "kim"}
    with pytest.raises(SegmentGone):
        await read_segment_audio(db, store, made.undonated, reviewer="kim", via="review")


def test_precision_on_a_hand_made_case() -> None:
    labels = [ReviewedLabel("fire", "fire")] * 3 + [
        ReviewedLabel("fire", "normal"), ReviewedLabel("fire", "gas"), ReviewedLabel("fire", "unclear"),
        ReviewedLabel("crime", "crime"), ReviewedLabel("help", "unclear"),
    ]  # fmt: skip
    report = summarise_reviews(labels).to_json()
    fire = next(row for row in report["classes"] if row["class"] == "fire")
    assert fire == {"class": "fire", "reviewed": 6, "judged": 5, "confirmed": 3, "unclear": 1,
                    "corrected": {"gas": 1, "normal": 1}, "precision": 0.6}  # fmt: skip
    help_row = next(row for row in report["classes"] if row["class"] == "help")
    assert help_row["precision"] is None and help_row["judged"] == 0
    assert report["overall"]["confirmed"] == 4 and report["overall"]["judged"] == 6


async def test_precision_reads_each_incidents_newest_label(db: Database, tmp_path: Path) -> None:
    made = await make_incidents(db, clip_store(tmp_path))
    await record_review(db, made.donated, "normal", reviewer="kim")
    await record_review(db, made.donated, "fire", reviewer="lee")  # corrected: it was a fire
    await record_review(db, made.reported, "help", reviewer="kim")
    await record_review(db, made.donated_gas, "unclear", reviewer="kim")
    report = (await review_precision(db)).to_json()
    assert [(r["class"], r["confirmed"], r["judged"]) for r in report["classes"]] == [
        ("crime", 0, 1), ("fire", 1, 1), ("gas", 0, 0)]
    assert (await review_precision(db, kind="anomaly")).overall.reviewed == 0


async def test_the_export_holds_donated_labelled_clips_with_their_consent(db: Database, tmp_path: Path) -> None:
    store = clip_store(tmp_path)
    made = await make_incidents(db, store)
    await record_review(db, made.donated, "normal", reviewer="kim")
    await record_review(db, made.reported, "crime", reviewer="kim")  # a report: never exported
    await record_review(db, made.donated_gas, "unclear", reviewer="kim")
    out = tmp_path / "reviewed"
    summary = await export_reviewed(db, store, out, reviewer="kim")
    assert (summary.exported, summary.unclear, summary.unreviewed) == (1, 1, 0)
    clips = read_review_manifest(out / "manifest.csv")
    assert [(c.incident, c.class_key, c.model_label, c.consent) for c in clips] == [
        (str(made.donated), "normal", "fire", "donated")]
    assert clips[0].device == device_pseudonym(made.devices[0]) and clips[0].donated_at
    audio, rate = sf.read(str(clips[0].path))
    assert rate == 16_000 and audio.shape[0] == 30 * 16_000
    # Relabelled and exported again: the file moves folder, the old one goes.
    await record_review(db, made.donated, "fire", reviewer="lee")
    again = await export_reviewed(db, store, out, reviewer="kim")
    assert again.removed == 1 and not (out / "normal" / f"{made.donated}.wav").exists()
    clips = read_review_manifest(out / "manifest.csv")
    assert clips[0].class_key == "fire" and clips[0].path.is_file()
    assert 0 < clips[0].start_s < clips[0].end_s <= 30


def test_a_manifest_row_without_consent_is_refused(tmp_path: Path) -> None:
    (tmp_path / "normal").mkdir()
    sf.write(str(tmp_path / "normal" / "a.wav"), [0.0] * 16000, 16000)
    row = dict.fromkeys(REVIEW_MANIFEST_FIELDS, "")
    row.update({"file": "normal/a.wav", "class": "normal", "class_id": "0", "event_start_s": "0", "event_end_s": "1"})
    with open(tmp_path / "manifest.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=REVIEW_MANIFEST_FIELDS)
        writer.writeheader()
        writer.writerow(row)
    with pytest.raises(ValueError, match="row 2: no recorded donation"):
        read_review_manifest(tmp_path / "manifest.csv")


def test_the_event_span_places_the_timeline_in_the_clip() -> None:
    timeline = [{"t": -0.5, "class": "fire", "score": 0.6}, {"t": 1.0, "class": "fire", "score": 0.9}]
    assert event_span("fire", 30.0, timeline) == (7.5, 11.0)  # the detection 20 s before the end
    assert event_span("normal", 30.0, timeline) == (0.0, 30.0)
    assert event_span("fire", 14.0, timeline) == (0.0, 14.0)  # a short clip: where was the detection?


def test_the_keys() -> None:
    assert read_key("c", "fire").label == "fire" and read_key("C", "fire").label == "fire"  # type: ignore[union-attr]
    assert read_key("5", "crime").label == "fire" and read_key("n", "fire").label == "normal"  # type: ignore[union-attr]
    assert read_key("u", "fire").label == "unclear"  # type: ignore[union-attr]
    assert [read_key(k, "fire").move for k in "sbq"] == [Move.SKIP, Move.BACK, Move.QUIT]  # type: ignore[union-attr]
    assert read_key("x", "fire") is None and read_key("9", "fire") is None
