"""Training data: labelled clips from a dataset folder, split by source file, cut into model windows.

Two layouts (``docs/training.md``):

- class folders: ``DATA/<class key>/**/*.wav|flac|ogg``, one top-level folder per key of
  ``shared.taxonomy.CLASS_KEYS`` (missing ones are fine); every file, of any length, rate
  and channel count, is one labelled clip and its own source;
- AI Hub "위급상황 음성/음향": WAV files plus JSON label files anywhere under ``DATA``
  (``services.inference.training.aihub``); a file's labelled segments are clips of the
  same source.

A clip becomes model windows exactly as the gateway makes them from live audio: mono
(channels averaged), resampled to 16 kHz with soxr (high quality, as the gateway's stream
resampler), then ``clip_windows`` (the streaming feature code run offline) at a hop of
``hop_frames``. A clip shorter than one window is zero-padded to one window; a labelled
segment shorter than a window is first widened, around its centre, to one window of its
file's real audio (31,920 samples at 16 kHz, the 198 frames of a 2 s window).
"""

from __future__ import annotations

import random
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr
import torch

from services.inference.training.aihub import scan_aihub
from services.inference.training.labelled_clips import AUDIO_SUFFIXES, DatasetScan, LabelledClip
from shared.features.spec import BEATS_FBANK, FeatureSpec
from shared.features.stream import clip_windows, samples_for_frames
from shared.taxonomy import CLASS_KEYS, by_key

LAYOUTS = ("auto", "folders", "aihub")


def scan_dataset(root: str | Path, layout: str = "auto") -> DatasetScan:
    """The labelled clips under ``root`` in ``layout`` ("folders", "aihub" or "auto").

    "auto" reads class folders when a top-level folder is named after a class key, else
    AI Hub when there are JSON files. Raises ValueError when ``root`` holds no clips.
    """
    root = Path(root)
    if layout not in LAYOUTS:
        raise ValueError(f"unknown dataset layout {layout!r}; known: {', '.join(LAYOUTS)}")
    if not root.is_dir():
        raise ValueError(f"dataset folder {root} does not exist")
    if layout == "auto":
        if any(p.is_dir() and p.name in CLASS_KEYS for p in root.iterdir()):
            layout = "folders"
        elif any(root.rglob("*.json")):
            layout = "aihub"
        else:
            raise ValueError(
                f"{root}: neither class folders ({', '.join(CLASS_KEYS)}) nor AI Hub JSON label files"
            )
    if layout == "folders":
        scan = scan_class_folders(root)
    else:
        scan = scan_aihub(root)
    if not scan.clips:
        raise ValueError(f"{root}: no labelled audio found ({layout} layout)")
    return scan


def scan_class_folders(root: Path) -> DatasetScan:
    """Every audio file under ``root/<class key>/`` (recursively), labelled with the key.

    A top-level folder that is not a class key, or an audio file directly in ``root``,
    raises ValueError (a typo would otherwise drop a class silently). Names starting with
    "." are ignored.
    """
    clips: list[LabelledClip] = []
    for entry in sorted(root.iterdir()):
        if entry.name.startswith("."):
            continue
        if entry.is_dir():
            if entry.name not in CLASS_KEYS:
                raise ValueError(
                    f"{entry}: not a class folder; top-level folders must be class keys: {', '.join(CLASS_KEYS)}"
                )
            clips.extend(LabelledClip(path, entry.name) for path in _audio_files(entry))
        elif entry.suffix.lower() in AUDIO_SUFFIXES:
            raise ValueError(f"{entry}: audio outside a class folder has no label")
    return DatasetScan(clips, "folders")


def _audio_files(folder: Path) -> Iterable[Path]:
    return sorted(
        p for p in folder.rglob("*")
        if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES and not p.name.startswith(".")
    )


def split_by_source(
    clips: Sequence[LabelledClip], val_fraction: float, seed: int
) -> tuple[list[LabelledClip], list[LabelledClip]]:
    """(train, validation) clips, split by SOURCE FILE: all clips of one file land on one side.

    Stratified: each class's sources (a source counts for its most frequent class) are
    shuffled with a generator seeded by ``seed`` and the class key, and
    ``round(val_fraction * n)`` of them, at least one and at most ``n - 1``, go to
    validation. A class with a single source file keeps it for training. Deterministic for a
    given set of files and seed, whatever the order of ``clips``.
    """
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    by_source: dict[str, list[LabelledClip]] = defaultdict(list)
    for clip in clips:
        by_source[clip.source].append(clip)
    sources_by_class: dict[str, list[str]] = defaultdict(list)
    for source, source_clips in by_source.items():
        counts = Counter(clip.class_key for clip in source_clips)
        # Most frequent class; ties go to the lower class id.
        main = min(counts, key=lambda key: (-counts[key], by_key(key).id))
        sources_by_class[main].append(source)
    validation: set[str] = set()
    for class_key, sources in sources_by_class.items():
        sources.sort()
        random.Random(f"{seed}:{class_key}").shuffle(sources)
        n = len(sources)
        n_val = 0 if val_fraction == 0.0 or n < 2 else min(max(round(val_fraction * n), 1), n - 1)
        validation.update(sources[:n_val])
    train = [clip for clip in clips if clip.source not in validation]
    val = [clip for clip in clips if clip.source in validation]
    return train, val


def read_clip(clip: LabelledClip, spec: FeatureSpec = BEATS_FBANK) -> np.ndarray:
    """The clip's audio as float32 mono at ``spec.sample_rate`` (segments widened to one window).

    Raises ValueError naming the file when it cannot be read or the segment lies outside it.
    """
    try:
        info = sf.info(str(clip.path))
        rate, total = info.samplerate, info.frames
        start = int(round(clip.start_s * rate))
        stop = total if clip.end_s is None else min(int(round(clip.end_s * rate)), total)
        if clip.end_s is not None:
            if start >= total:
                raise ValueError(
                    f"segment [{clip.start_s}, {clip.end_s}) s starts after the audio's end ({total / rate:.2f} s)"
                )
            one_window = samples_for_frames(spec, spec.window_frames) * rate / spec.sample_rate
            start, stop = _widened(start, stop, total, int(np.ceil(one_window)))
        audio, _ = sf.read(str(clip.path), start=start, stop=stop, dtype="float32", always_2d=True)
    except (sf.LibsndfileError, RuntimeError, ValueError) as exc:
        raise ValueError(f"{clip.path}: cannot read audio: {exc}") from exc
    mono = audio.mean(axis=1, dtype=np.float32)
    if rate != spec.sample_rate:
        mono = soxr.resample(mono, rate, spec.sample_rate).astype(np.float32, copy=False)
    return mono


def _widened(start: int, stop: int, total: int, length: int) -> tuple[int, int]:
    """``[start, stop)`` grown to ``length`` samples around its centre, kept inside ``[0, total)``."""
    if stop - start >= length:
        return start, stop
    if total <= length:
        return 0, total
    centre = (start + stop) // 2
    start = min(max(centre - length // 2, 0), total - length)
    return start, start + length


def clip_to_windows(clip: LabelledClip, hop_frames: int, spec: FeatureSpec = BEATS_FBANK) -> torch.Tensor:
    """The model windows ``[W, window_frames, n_mels]`` of one clip, as the gateway would send them."""
    return clip_windows(spec, read_clip(clip, spec), hop_frames)
