"""Training Hear-o's embedded default model (``hearo train --backbone default``).

Input: a ``hearo data build`` folder (``manifest.csv`` with ``file``, ``class_id``, ``split``
and optionally the event span ``event_start_s``/``event_end_s``; a manifest without ``split``
is split by source file with ``split_by_source``). Every clip is held in memory at 16 kHz.

- Teacher: EfficientAT mn04 scores every 2 s window of every training clip on a 0.5 s grid
  (audio resampled to 32 kHz with soxr), once; the scores are cached beside the data.
- Each step crops a 2 s window from a grid position that overlaps the clip's event (any
  position for ``normal``), with augmentations applied on the fly: time shift (+-0.1 s), speed
  (0.9-1.1), mixing with a normal training clip, room impulse responses, gain, SpecAugment.
- Loss: cross-entropy on the class (label smoothing 0.05) + ``distill_weight`` x binary
  cross-entropy between the AudioSet head and the teacher's sigmoid scores at that position.
- After each epoch the validation clips run through the service's streaming semantics
  (``clip_windows`` at the service hop, ``shared.detector.clip_decision``); the best macro-F1
  is kept, training stops after ``patience`` epochs without gain or at ``max_minutes``; a
  checkpoint after every epoch makes an interrupted run resume.
- Per-class thresholds are then chosen on the validation split (``thresholds.choose_thresholds``:
  each class's best F1 for "this clip fires the class" within a false-alarm bound) and stored in
  the model file with the validation metrics.
"""

from __future__ import annotations

import csv
import hashlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy import signal
from torch import Tensor

from services.inference.models.default import (
    DefaultNet,
    count_flops,
    count_parameters,
    load_default_model,
    save_default_model,
)
from services.inference.models.efficientat import load_efficientat
from services.inference.settings import SHARED_MODELS_DIR
from services.inference.training.dataset import LabelledClip, split_by_source
from services.inference.training.metrics import detection_metrics
from services.inference.training.thresholds import choose_thresholds
from shared.augment import room_impulse
from shared.detector import DetectorConfig, clip_decision
from shared.features.kaldi_fbank import beats_fbank
from shared.features.spec import BEATS_FBANK
from shared.features.stream import clip_windows, pad_centred, samples_for_frames
from shared.taxonomy import CLASS_KEYS, CLASSES, NUM_CLASSES

__all__ = ["DefaultTrainingConfig", "train_default_model"]

SR = BEATS_FBANK.sample_rate
WINDOW = samples_for_frames(BEATS_FBANK, BEATS_FBANK.window_frames)  # 31,920 samples
GRID_S = 0.5
TEACHER_RATE = 32_000


@dataclass(frozen=True)
class DefaultTrainingConfig:
    """``data``: a data build folder; ``out``: the model file to write. ``work`` (default
    ``data/.train``) holds the teacher cache and the resumable checkpoint."""

    data: Path
    out: Path
    teacher: Path = SHARED_MODELS_DIR / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"
    work: Path | None = None
    epochs: int = 15
    batch_size: int = 64
    lr: float = 3e-3
    distill_weight: float = 1.0
    patience: int = 4
    max_minutes: float = 60.0
    hop_s: float = 0.5
    smoothing_windows: int = 3
    seed: int = 0
    threads: int = 2
    max_clips: int | None = None  # per split, for quick runs and tests
    init_from: Path | None = None  # a model file to start from (continuing an earlier run)


@dataclass
class _Clip:
    audio: np.ndarray  # int16 16 kHz mono
    class_id: int
    start_s: float
    end_s: float
    source: str


def _read_manifest(config: DefaultTrainingConfig) -> tuple[list[_Clip], list[_Clip]]:
    manifest = config.data / "manifest.csv"
    if not manifest.is_file():
        raise ValueError(f"{config.data}: no manifest.csv (run `hearo data build --out {config.data}` first)")
    with open(manifest, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    if not rows:
        raise ValueError(f"{manifest}: no rows")
    if "split" not in rows[0]:
        clips = [LabelledClip(config.data / r["file"], CLASS_KEYS[int(r["class_id"])]) for r in rows]
        _, val = split_by_source(clips, 0.2, config.seed)
        val_files = {str(c.path) for c in val}
        for r in rows:
            r["split"] = "val" if str(config.data / r["file"]) in val_files else "train"
    splits: dict[str, list[_Clip]] = {"train": [], "val": []}
    for r in rows:
        split = splits[r["split"]]
        if config.max_clips is not None and len(split) >= config.max_clips:
            continue
        audio, rate = sf.read(str(config.data / r["file"]), dtype="int16", always_2d=True)
        mono = audio.mean(axis=1).astype(np.int16) if audio.shape[1] > 1 else audio[:, 0]
        if rate != SR:
            mono = (soxr.resample(mono.astype(np.float32) / 32768, rate, SR) * 32767).astype(np.int16)
        seconds = mono.size / SR
        start = float(r.get("event_start_s") or 0.0)
        end = float(r.get("event_end_s") or seconds)
        split.append(_Clip(mono, int(r["class_id"]), start, max(end, start + 0.01), r.get("source_path", r["file"])))
    if not splits["train"] or not splits["val"]:
        raise ValueError(f"{manifest}: need clips in both the train and the val split")
    return splits["train"], splits["val"]


def _grid(clip: _Clip) -> int:
    return max(1, int((clip.audio.size - WINDOW) // (GRID_S * SR)) + 1)


def _crop(audio: np.ndarray, start: int) -> np.ndarray:
    piece = audio[max(start, 0): start + WINDOW].astype(np.float32) / 32768
    return np.pad(piece, (0, WINDOW - piece.size)) if piece.size < WINDOW else piece


def _teacher_scores(clips: list[_Clip], config: DefaultTrainingConfig, work: Path, console: Console) -> list[Tensor]:
    """Per clip, the teacher's sigmoid scores [grid, 527] (float16), computed once and cached."""
    digest = hashlib.sha1()
    for clip in clips:
        digest.update(hashlib.sha1(clip.audio.tobytes()).digest())
    cache = work / f"teacher-{digest.hexdigest()[:16]}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    teacher = load_efficientat(config.teacher)
    crops = [(i, g) for i, clip in enumerate(clips) for g in range(_grid(clip))]
    out = [torch.zeros(_grid(clip), 527, dtype=torch.float16) for clip in clips]
    with _progress(console) as progress, torch.inference_mode():
        task = progress.add_task("teacher (mn04) scores", total=len(crops))
        for lo in range(0, len(crops), 64):
            batch = crops[lo: lo + 64]
            waves = np.stack([
                soxr.resample(_crop(clips[i].audio, int(g * GRID_S * SR)), SR, TEACHER_RATE) for i, g in batch
            ])
            probs = torch.sigmoid(teacher(torch.from_numpy(waves))[0]).half()
            for (i, g), row in zip(batch, probs):
                out[i][g] = row
            progress.advance(task, len(batch))
    work.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return out


class _Batches:
    """Augmented training batches: (windows [B, 198, 128], class ids [B], teacher scores [B, 527])."""

    def __init__(self, clips: list[_Clip], teacher: list[Tensor], rng: np.random.Generator) -> None:
        self.clips, self.teacher, self.rng = clips, teacher, rng
        self.normals = [i for i, c in enumerate(clips) if c.class_id == 0]
        self.positions = [self._positions(c) for c in clips]

    @staticmethod
    def _positions(clip: _Clip) -> list[int]:
        grid = range(_grid(clip))
        if clip.class_id == 0:
            return list(grid)
        need = min(0.3, clip.end_s - clip.start_s)
        good = [g for g in grid if min(g * GRID_S + 2.0, clip.end_s) - max(g * GRID_S, clip.start_s) >= need]
        return good or list(grid)

    def _example(self, index: int) -> tuple[np.ndarray, Tensor]:
        rng, clip = self.rng, self.clips[index]
        g = int(rng.choice(self.positions[index]))
        start = int(g * GRID_S * SR + rng.uniform(-0.1, 0.1) * SR)
        x = _crop(clip.audio, start).astype(np.float64)
        # The scenes already carry speed, room and mixing variation from the data build; on the
        # fly they are applied again, less often, so each epoch still sees new versions cheaply.
        if rng.random() < 0.2:  # speed
            factor = rng.uniform(0.9, 1.1)
            x = soxr.resample(x, SR, SR / factor)
            x = np.pad(x, (0, max(WINDOW - x.size, 0)))[:WINDOW]
        if rng.random() < 0.2:  # room
            x = signal.fftconvolve(x, room_impulse(rng, rng.uniform(0.15, 0.8), rng.uniform(0.3, 0.9)))[:WINDOW]
        if self.normals and rng.random() < 0.3:  # mixing with a normal clip, 0-20 dB under
            other = self.clips[int(rng.choice(self.normals))]
            bed = _crop(other.audio, int(rng.integers(0, max(other.audio.size - WINDOW, 1))))
            level = (np.sqrt(np.mean(x**2)) + 1e-5) / (np.sqrt(np.mean(bed**2)) + 1e-5)
            x = x + bed * level * 10 ** (-rng.uniform(0, 20) / 20)
        peak = np.max(np.abs(x)) + 1e-6
        x = x / peak * min(rng.uniform(0.05, 0.95), 0.99)
        return x.astype(np.float32), self.teacher[index][g].float()

    def epoch(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The epoch's batches, each made on a helper thread while the previous one trains (the
        augmentation is numpy/soxr/torch work that releases the GIL). One producer keeps the
        random stream, and so the batches, the same as making them in order."""
        order = self.rng.permutation(len(self.clips))
        starts = range(0, len(order), batch_size)
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for lo in starts:
                upcoming = pool.submit(self._batch, order[lo: lo + batch_size])
                if pending is not None:
                    yield pending.result()
                pending = upcoming
            if pending is not None:
                yield pending.result()

    def _batch(self, indices: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        examples = [self._example(int(i)) for i in indices]
        windows = beats_fbank(torch.from_numpy(np.stack([w for w, _ in examples])))
        _spec_augment(windows, self.rng)
        labels = torch.tensor([self.clips[int(i)].class_id for i in indices])
        return windows, labels, torch.stack([t for _, t in examples])


def _spec_augment(windows: Tensor, rng: np.random.Generator) -> None:
    """Two frequency masks (<= 16 bins) and two time masks (<= 20 frames) per window, in place."""
    batch, frames, bins = windows.shape
    for size, limit, along_time in ((bins, 16, False), (frames, 20, True)):
        position = torch.arange(size).view(1, 1, size)
        width = torch.from_numpy(rng.integers(0, limit + 1, (batch, 2, 1)))
        start = torch.from_numpy(rng.integers(0, size - limit, (batch, 2, 1)))
        masked = ((position >= start) & (position < start + width)).any(dim=1)  # [B, size]
        windows.masked_fill_(masked.unsqueeze(2) if along_time else masked.unsqueeze(1), 0.0)


def _val_windows(clips: list[_Clip], hop_frames: int, smoothing_windows: int) -> list[Tensor]:
    # Padded as ``hearo eval`` pads, centred: every clip gives the detector enough windows to decide.
    padded = [pad_centred(c.audio.astype(np.float32) / 32768, BEATS_FBANK, hop_frames, smoothing_windows) for c in clips]
    return [clip_windows(BEATS_FBANK, audio, hop_frames).half() for audio in padded]


@torch.inference_mode()
def _val_scores(model: DefaultNet, windows: list[Tensor]) -> list[np.ndarray]:
    model.eval()
    flat = torch.cat(windows).float()
    probs = torch.cat([torch.softmax(model(flat[lo: lo + 256])[0], dim=1) for lo in range(0, len(flat), 256)])
    out, lo = [], 0
    for w in windows:
        out.append(probs[lo: lo + len(w)].numpy())
        lo += len(w)
    return out


def _detector(config: DefaultTrainingConfig, thresholds: dict[str, float]) -> DetectorConfig:
    return DetectorConfig(thresholds=thresholds, smoothing_windows=config.smoothing_windows, hop_s=config.hop_s)


def _decide(scores: list[np.ndarray], detector: DetectorConfig) -> Tensor:
    return torch.tensor([clip_decision(s, detector)[0] for s in scores])


def train_default_model(config: DefaultTrainingConfig, console: Console | None = None) -> dict[str, Any]:
    """Train, choose thresholds, write ``config.out``; returns the validation metrics and figures."""
    console = console or Console(stderr=True)
    torch.set_num_threads(max(config.threads, 1))
    torch.manual_seed(config.seed)
    work = config.work or config.data / ".train"
    work.mkdir(parents=True, exist_ok=True)
    train, val = _read_manifest(config)
    model = DefaultNet()
    if config.init_from is not None:
        # The file has no distillation head: that head starts afresh.
        model.load_state_dict(load_default_model(config.init_from)[0].state_dict(), strict=False)
    params, flops = count_parameters(model), count_flops(model)
    console.print(f"default model: {params:,} parameters (serving), {flops / 1e6:.1f} MFLOP per 2 s window; "
                  f"{len(train)} training clips, {len(val)} validation clips")
    if config.distill_weight > 0:
        teacher = _teacher_scores(train, config, work, console)
    else:  # no distillation: the teacher is not needed (and its weights need not exist)
        teacher = [torch.zeros(_grid(clip), 527, dtype=torch.float16) for clip in train]
    hop_frames = BEATS_FBANK.frames_for(config.hop_s)
    val_windows = _val_windows(val, hop_frames, config.smoothing_windows)
    val_targets = torch.tensor([c.class_id for c in val])
    default_detector = _detector(config, {c.key: 0.5 for c in CLASSES if c.is_emergency})

    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=1e-2)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(optimizer, config.lr, total_steps=config.epochs * steps_per_epoch)
    checkpoint = work / "checkpoint.pt"
    fingerprint = {k: str(v) for k, v in asdict(config).items() if k not in ("out", "max_minutes", "threads")}
    state: dict[str, Any] = {"epoch": 0, "best_f1": -1.0, "best": None, "stale": 0, "history": []}
    if checkpoint.is_file():
        saved = torch.load(checkpoint, weights_only=False)
        if saved["config"] == fingerprint:
            model.load_state_dict(saved["model"])
            optimizer.load_state_dict(saved["optimizer"])
            scheduler.load_state_dict(saved["scheduler"])
            state = saved["state"]
            console.print(f"resuming after epoch {state['epoch']}")
    rng = np.random.default_rng([config.seed, state["epoch"]])
    batches = _Batches(train, teacher, rng)
    started = time.monotonic()
    with _progress(console) as progress:
        while state["epoch"] < config.epochs and state["stale"] < config.patience:
            model.train()
            task = progress.add_task(f"epoch {state['epoch'] + 1}/{config.epochs}", total=steps_per_epoch)
            losses = []
            for windows, labels, soft in batches.epoch(config.batch_size):
                logits, teacher_logits = model(windows)
                loss = F.cross_entropy(logits, labels, label_smoothing=0.05)
                loss = loss + config.distill_weight * F.binary_cross_entropy_with_logits(teacher_logits, soft)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                progress.advance(task)
            progress.remove_task(task)
            metrics = detection_metrics(val_targets, _decide(_val_scores(model, val_windows), default_detector))
            state["epoch"] += 1
            improved = metrics["macro_f1"] > state["best_f1"]
            if improved:
                state["best_f1"], state["stale"] = metrics["macro_f1"], 0
                state["best"] = {k: v.clone() for k, v in model.state_dict().items()}
            else:
                state["stale"] += 1
            state["history"].append({"epoch": state["epoch"], "loss": float(np.mean(losses)), "val_macro_f1": metrics["macro_f1"]})
            console.print(f"epoch {state['epoch']}: loss {np.mean(losses):.3f}, val macro-F1 {metrics['macro_f1']:.3f} "
                          f"(emergency recall {metrics['emergency_recall']:.3f}, false alarms {metrics['false_alarm_rate']:.3f})"
                          + (" *" if improved else ""))
            torch.save({"config": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state}, checkpoint)
            if (time.monotonic() - started) / 60 > config.max_minutes:
                console.print(f"stopping: {config.max_minutes} minute budget reached")
                break
    model.load_state_dict(state["best"])
    scores = _val_scores(model, val_windows)
    thresholds = choose_thresholds(scores, val_targets.numpy(), config.smoothing_windows)
    metrics = detection_metrics(val_targets, _decide(scores, _detector(config, thresholds)))
    recipe = {
        "data": str(config.data), "epochs_run": state["epoch"], "history": state["history"],
        "parameters": params, "flops_per_window": flops, "train_clips": len(train), "val_clips": len(val),
        "hop_s": config.hop_s, "smoothing_windows": config.smoothing_windows, "distill_weight": config.distill_weight,
        "teacher": "EfficientAT mn04 (AudioSet, mAP 0.432)", "seed": config.seed,
        "init_from": None if config.init_from is None else {"file": str(config.init_from), "recipe": _recipe_of(config.init_from)},
    }
    save_default_model(config.out, model, thresholds, metrics, recipe)
    console.print(f"wrote {config.out}: validation macro-F1 {metrics['macro_f1']:.3f}, emergency recall "
                  f"{metrics['emergency_recall']:.3f}, false alarms {metrics['false_alarm_rate']:.3f}")
    return {"metrics": metrics, "thresholds": thresholds, "parameters": params, "flops": flops}


def _recipe_of(path: Path) -> Any:
    return load_default_model(path)[1].get("recipe")


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)
