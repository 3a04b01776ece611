"""What a dataset reader produces: labelled clips and the scan that holds them.

Its own module so that ``dataset`` (the layouts, the split, window cutting) and ``aihub``
(the AI Hub reader, which ``dataset.scan_dataset`` calls) both build on these types without
importing each other.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from shared.taxonomy import by_key

AUDIO_SUFFIXES = (".wav", ".flac", ".ogg")


@dataclass(frozen=True)
class LabelledClip:
    """A labelled stretch of one audio file: all of it, or ``[start_s, end_s)`` in seconds."""

    path: Path
    class_key: str
    start_s: float = 0.0
    end_s: float | None = None

    def __post_init__(self) -> None:
        by_key(self.class_key)  # KeyError naming the known keys
        if self.start_s < 0 or (self.end_s is not None and self.end_s <= self.start_s):
            raise ValueError(f"{self.path}: bad segment [{self.start_s}, {self.end_s})")

    @property
    def source(self) -> str:
        """The source file: the unit of the train/validation split."""
        return str(self.path)


@dataclass(frozen=True)
class DatasetScan:
    """The clips of a dataset folder, the layout they were read in, and what was left out and why."""

    clips: list[LabelledClip]
    layout: str
    skipped: dict[str, int] = field(default_factory=dict)

    def class_counts(self) -> dict[str, int]:
        """Clips per class key (classes without clips absent)."""
        return dict(Counter(clip.class_key for clip in self.clips))
