"""A data build's ``manifest.csv`` read into three source-disjoint parts.

``hearo data build`` splits its sources into ``train`` and ``val`` (no source file, TTS phrase
or generator instance in both). The trainer splits ``val`` once more, by source group, into a
calibration half (where the operating point is chosen) and a held-out half (where the model is
scored), so no figure comes from clips whose sources chose the thresholds.

A clip's source group is what the build split on: ``package:member`` for a recording,
``synth:recipe:i`` for a generated signal, the phrase for TTS (every voice of a phrase falls
on one side).
"""

from __future__ import annotations

import csv
import hashlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = ["ManifestClip", "ManifestSplits", "read_manifest_splits", "read_mono", "source_group"]

TTS_ENGINES = ("espeak-ng", "flite")


@dataclass
class ManifestClip:
    audio: np.ndarray = field(repr=False)  # int16 mono at the reader's rate
    class_id: int
    start_s: float
    end_s: float
    group: str
    file: str


@dataclass
class ManifestSplits:
    train: list[ManifestClip]
    calibration: list[ManifestClip]
    test: list[ManifestClip]


def source_group(row: dict[str, str]) -> str:
    """The unit the data build split on, from a manifest row."""
    package, path = row.get("source_package", ""), row.get("source_path", row["file"])
    if package in TTS_ENGINES:
        return "tts:" + path.split(": ", 1)[-1]
    if package == "synthetic":  # the build's group is synth:recipe:i, its path recipe/i
        return "synth:" + path.replace("/", ":", 1)
    return f"{package}:{path}"


def is_calibration_group(group: str) -> bool:
    """Half of the validation groups, by a stable hash of the group."""
    return hashlib.sha1(group.encode()).digest()[0] % 2 == 0


def read_mono(path: Path, rate: int) -> np.ndarray:
    """An audio file as int16 mono at ``rate`` (channels averaged, resampled with soxr)."""
    audio, file_rate = sf.read(str(path), dtype="int16", always_2d=True)
    mono = audio.mean(axis=1).astype(np.int16) if audio.shape[1] > 1 else audio[:, 0]
    if file_rate != rate:
        mono = (soxr.resample(mono.astype(np.float32) / 32768, file_rate, rate) * 32767).astype(np.int16)
    return mono


def read_manifest_splits(data: Path, rate: int, max_clips: int | None = None) -> ManifestSplits:
    """The manifest's clips at ``rate`` (int16 mono), in three parts. Raises ValueError when the
    manifest is missing, empty, has no ``split`` column, or leaves a part empty."""
    manifest = data / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(f"{data}: no manifest.csv (run `hearo data build --out {data}` first)")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows or "split" not in rows[0]:
        raise ValueError(f"{manifest}: needs rows with a split column (a `hearo data build` manifest)")
    parts: dict[str, list[ManifestClip]] = {"train": [], "calibration": [], "test": []}
    for row in rows:
        group = source_group(row)
        part = "train" if row["split"] == "train" else "calibration" if is_calibration_group(group) else "test"
        if max_clips is not None and len(parts[part]) >= max_clips:
            continue
        mono = read_mono(data / row["file"], rate)
        seconds = mono.size / rate
        start = float(row.get("event_start_s") or 0.0)
        end = float(row.get("event_end_s") or seconds)
        parts[part].append(ManifestClip(mono, int(row["class_id"]), start, max(end, start + 0.01), group, row["file"]))
    empty = [name for name, clips in parts.items() if not clips]
    if empty:
        raise ValueError(f"{manifest}: no clips for {', '.join(empty)}")
    return ManifestSplits(parts["train"], parts["calibration"], parts["test"])
