"""The review loop (issue 17): incidents whose audio may be heard become segments a reviewer
labels; labels give per-class precision, and donated false alarms, relabelled, become
training data (``docs/review.md``).

* :mod:`~shared.review.labels`: the labels and the keys that give them;
* :mod:`~shared.review.segments`: which incidents are segments (consent), reading one,
  labelling one (``segment_reviews``: the newest row counts, the history stays);
* :mod:`~shared.review.precision`: per-class precision from the reviewed incidents;
* :mod:`~shared.review.export`: the export (WAV files and a manifest with the consent);
* :mod:`~shared.review.manifest`: the manifest's format and its one reader.
"""

from shared.review.export import ExportSummary, export_reviewed
from shared.review.labels import REVIEW_LABELS, UNCLEAR, Move, ReviewKey, check_label, read_key
from shared.review.manifest import REVIEW_MANIFEST_FIELDS, ReviewedClip, event_span, read_review_manifest
from shared.review.precision import PrecisionReport, ReviewedLabel, review_precision, summarise_reviews
from shared.review.segments import (
    Review,
    Segment,
    SegmentGone,
    device_pseudonym,
    get_segment,
    list_segments,
    read_segment_audio,
    record_review,
    review_history,
)

__all__ = [
    "REVIEW_LABELS",
    "REVIEW_MANIFEST_FIELDS",
    "UNCLEAR",
    "ExportSummary",
    "Move",
    "PrecisionReport",
    "Review",
    "ReviewKey",
    "ReviewedClip",
    "ReviewedLabel",
    "Segment",
    "SegmentGone",
    "check_label",
    "device_pseudonym",
    "event_span",
    "export_reviewed",
    "get_segment",
    "list_segments",
    "read_key",
    "read_review_manifest",
    "read_segment_audio",
    "record_review",
    "review_history",
    "review_precision",
    "summarise_reviews",
]
