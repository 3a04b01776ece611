"""Hard negatives mined from household training audio: the moments a model mistakes for an emergency.

Household minutes cut into 4 s clips are mostly easy (quiet rooms, steady speech); the rare
door slam, shout or beep that fires a class is what the household false-alarm budget is lost
on, and a uniform cut shows each of them to the trainer once at a random offset. So a model
(the previous default) streams each household file as the gateway does, and around every
local peak of its highest emergency score at or above ``min_score`` (peaks at least
``min_gap_s`` apart) a 4 s clip is cut at a few offsets, so the event sits at different
places in the training crops. The clips are written as normal audio beside nothing else:
``hearo train --household-train`` reads every audio file under its folder.

Only ``--part training`` household audio may be mined: calibration and evaluation audio
must stay unseen by training.
"""

from __future__ import annotations

import csv
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.console import Console
from torch import nn

from services.inference.training.calibration import HOP_S, household_files, score_windows, stream_windows
from shared.features.spec import EFFICIENTAT_MEL
from shared.taxonomy import CLASSES

__all__ = ["HardNegativeConfig", "mine_hard_negatives", "peaks"]

WINDOW_S = EFFICIENTAT_MEL.window_seconds
INDEX = "hard_negatives.csv"


@dataclass(frozen=True)
class HardNegativeConfig:
    min_score: float = 0.3  # the highest emergency score a window must reach to be mined
    min_gap_s: float = 4.0  # between two mined peaks of one file
    clip_s: float = 4.0
    offsets_s: tuple[float, ...] = (-1.0, 0.0, 1.0)  # of the clip's centre from the peak window's centre


def peaks(score: np.ndarray, min_score: float, min_gap: int) -> list[int]:
    """Indices of ``score``'s peaks at or above ``min_score``, highest first, each at least
    ``min_gap`` positions from every higher one kept."""
    kept: list[int] = []
    for index in np.argsort(-score, kind="stable"):
        if score[index] < min_score:
            break
        if all(abs(int(index) - k) >= min_gap for k in kept):
            kept.append(int(index))
    return kept


def _cut(audio: np.ndarray, rate: int, centre_s: float, clip_s: float) -> np.ndarray:
    length = int(round(clip_s * rate))
    start = int(round((centre_s - clip_s / 2) * rate))
    start = min(max(start, 0), max(audio.size - length, 0))
    clip = audio[start: start + length]
    return np.pad(clip, (0, length - clip.size))


def _rows(index: Path) -> list[dict[str, str]]:
    with index.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def _training_only(folder: Path) -> None:
    """ValueError if an ``index.csv`` under ``folder`` lists a file of another household part."""
    for index in folder.rglob("index.csv"):
        parts = {row["part"] for row in _rows(index) if row.get("part")}
        if parts - {"training"}:
            raise ValueError(f"{index}: household audio of part {sorted(parts)}; only --part training may be mined")


def mine_hard_negatives(model: nn.Module, folders: Sequence[Path], out: Path, config: HardNegativeConfig = HardNegativeConfig(),
                        console: Console | None = None) -> int:
    """Write the hard-negative clips of every household file under ``folders`` into ``out``;
    returns how many clips ``out`` holds. Resumable: a file already listed in ``out``'s index
    is not scored again. ValueError if a folder holds calibration or evaluation audio."""
    for folder in folders:
        _training_only(folder)
    out.mkdir(parents=True, exist_ok=True)
    index = out / INDEX
    done = {row["source"] for row in _rows(index)} if index.is_file() else set()
    model.eval()
    gap = max(int(round(config.min_gap_s / HOP_S)), 1)
    for path in (p for folder in folders for p in household_files(folder)):
        if path.resolve().is_relative_to(out.resolve()) or str(path) in done:
            continue
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        emergency = score_windows(model, stream_windows(mono, rate, 1))[:, 1:]
        rows = []
        for window in peaks(emergency.max(axis=1), config.min_score, gap):
            centre = window * HOP_S + WINDOW_S / 2
            label = CLASSES[1 + int(emergency[window].argmax())].key
            for k, offset in enumerate(config.offsets_s):
                name = f"{path.stem}-{centre:07.1f}s-{k}.wav"
                sf.write(str(out / name), _cut(mono, rate, centre + offset, config.clip_s), rate, subtype="PCM_16")
                rows.append({"source": str(path), "clip": name, "peak_s": f"{centre:.1f}",
                             "class": label, "score": f"{emergency[window].max():.3f}"})
        if not rows:  # the file is still recorded as mined
            rows.append({"source": str(path), "clip": "", "peak_s": "", "class": "", "score": ""})
        fresh = not index.is_file()
        with index.open("a", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
            if fresh:
                writer.writeheader()
            writer.writerows(rows)
        if console is not None:
            console.print(f"{path.name}: {sum(1 for r in rows if r['clip'])} clips")
    return sum(1 for row in _rows(index) if row["clip"]) if index.is_file() else 0
