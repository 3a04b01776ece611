"""Training Hear-o's embedded default model (``hearo train --backbone default``).

Input: a ``hearo data build`` folder (``manifest.csv`` with ``file``, ``class_id``, ``split``,
``source_package``, ``source_path`` and the event span). Clips are held in memory at 16 kHz.
Review exports (``extra``) add reviewed clips to the training clips
(``services.inference.training.reviewed``).

- Model: ``DefaultNet``, EfficientAT mn04 initialised from the published AudioSet weights, with a
  nine-class sigmoid head (multi-label binary cross-entropy, so confusable classes do not split
  one probability).
- Distillation: the AudioSet head is pulled towards the frozen original's sigmoid scores at the
  same 2 s position (computed once per clip on a 0.5 s grid and cached), which keeps the tags
  meaningful and regularises the backbone.
- Scenes are re-composed on the fly: each step crops a 2 s window that overlaps the clip's event
  (anywhere for ``normal``), shifts it, may mix in a normal clip 0-20 dB under, adds room
  reverb, passes it through a telephone band (8 kHz, 300-3,400 Hz) or a phone microphone, and
  draws a gain from -40 to 0 dBFS; SpecAugment masks the log-mel.
- A fixed one-cycle schedule; no epoch is picked on validation clips. A checkpoint after every
  epoch makes an interrupted run resume.
- The operating point is then chosen on the calibration half of the validation split (and on a
  household calibration track when given: ``services.inference.training.calibration``) and the
  model is scored on the other, held-out half, whose sources are disjoint from both.
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr
import torch
import torch.nn.functional as F
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from scipy import signal
from torch import Tensor

from services.inference.audioset_map import read_labels_csv
from services.inference.models.default import (
    DefaultNet,
    count_flops,
    count_parameters,
    load_default_model,
    save_default_model,
)
from services.inference.models.efficientat import load_efficientat
from services.inference.settings import SHARED_MODELS_DIR
from services.inference.training.calibration import (
    CalibrationBudget,
    calibrate,
    clip_scores,
    household_clips,
    score_household,
)
from services.inference.training.manifest import ManifestClip, read_manifest_splits
from services.inference.training.reviewed import consent_record, reviewed_training_clips
from shared.augment import band_limit, room_impulse
from shared.features.efficientat_mel import efficientat_logmel
from shared.features.spec import EFFICIENTAT_MEL
from shared.taxonomy import NUM_CLASSES

__all__ = ["DefaultTrainingConfig", "train_default_model"]

SR = 16_000  # the data build's rate
MODEL_RATE = EFFICIENTAT_MEL.sample_rate
WINDOW = 2 * SR
GRID_S = 0.5
CLIP_S = 4.0  # household training audio is cut into clips as long as the data build's scenes


@dataclass(frozen=True)
class DefaultTrainingConfig:
    """``data``: a data build folder; ``out``: the model file to write; ``household``: a folder
    of household calibration audio (``hearo data household --part calibration``);
    ``household_train``: household audio from training sources (``--part training``), cut into
    normal clips. ``work``
    (default ``data/.train``) holds the teacher cache and the resumable checkpoint."""

    data: Path
    out: Path
    household: Path | None = None
    household_train: Path | None = None
    weights: Path = SHARED_MODELS_DIR / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"
    work: Path | None = None
    epochs: int = 6
    batch_size: int = 48
    lr: float = 1e-3
    distill_weight: float = 0.5
    max_minutes: float = 90.0
    budget: CalibrationBudget = CalibrationBudget()
    seed: int = 0
    threads: int = 2
    max_clips: int | None = None  # per split, for quick runs and tests
    init_from: Path | None = None  # a default model file to continue from (else the published mn04)
    extra: tuple[Path, ...] = ()  # review exports: reviewed clips join the training clips


def _grid(clip: ManifestClip) -> int:
    return max(1, int((clip.audio.size - WINDOW) // (GRID_S * SR)) + 1)


def _crop(audio: np.ndarray, start: int) -> np.ndarray:
    piece = audio[max(start, 0): start + WINDOW].astype(np.float64) / 32768
    return np.pad(piece, (0, WINDOW - piece.size)) if piece.size < WINDOW else piece


def _to_model_rate(batch: np.ndarray) -> Tensor:
    """[B, 32,000] at 16 kHz -> log-mel windows [B, 200, 128] (the wire's time-major layout)."""
    upsampled = np.stack([soxr.resample(x, SR, MODEL_RATE) for x in batch]).astype(np.float32)
    return efficientat_logmel(torch.from_numpy(upsampled)).transpose(1, 2).contiguous()


def _teacher_scores(clips: list[ManifestClip], config: DefaultTrainingConfig, work: Path, console: Console) -> list[Tensor]:
    """Per clip, the frozen mn04's sigmoid scores [grid, 527] (float16), computed once and cached."""
    digest = hashlib.sha1()
    for clip in clips:
        digest.update(hashlib.sha1(clip.audio.tobytes()).digest())
    cache = work / f"teacher-mn04-{digest.hexdigest()[:16]}.pt"
    if cache.is_file():
        return torch.load(cache, weights_only=True)
    teacher = load_efficientat(config.weights)
    crops = [(i, g) for i, clip in enumerate(clips) for g in range(_grid(clip))]
    out = [torch.zeros(_grid(clip), 527, dtype=torch.float16) for clip in clips]
    with _progress(console) as progress, torch.inference_mode():
        task = progress.add_task("teacher (frozen mn04) scores", total=len(crops))
        for lo in range(0, len(crops), 64):
            batch = crops[lo: lo + 64]
            windows = _to_model_rate(np.stack([_crop(clips[i].audio, int(g * GRID_S * SR)) for i, g in batch]))
            probs = torch.sigmoid(teacher.forward_features(windows)[0]).half()
            for (i, g), row in zip(batch, probs):
                out[i][g] = row
            progress.advance(task, len(batch))
    work.mkdir(parents=True, exist_ok=True)
    torch.save(out, cache)
    return out


class _Batches:
    """Augmented batches: (windows [B, 200, 128], class targets [B, 9], teacher scores [B, 527])."""

    def __init__(self, clips: list[ManifestClip], teacher: list[Tensor], rng: np.random.Generator) -> None:
        self.clips, self.teacher, self.rng = clips, teacher, rng
        self.normals = [i for i, c in enumerate(clips) if c.class_id == 0]
        self.positions = [self._positions(c) for c in clips]

    @staticmethod
    def _positions(clip: ManifestClip) -> list[int]:
        grid = range(_grid(clip))
        if clip.class_id == 0:
            return list(grid)
        # Any overlap of 0.2 s or more: events at a window's edge are what a stream sees too.
        need = min(0.2, clip.end_s - clip.start_s)
        good = [g for g in grid if min(g * GRID_S + 2.0, clip.end_s) - max(g * GRID_S, clip.start_s) >= need]
        return good or list(grid)

    def _example(self, index: int) -> tuple[np.ndarray, Tensor]:
        rng, clip = self.rng, self.clips[index]
        g = int(rng.choice(self.positions[index]))
        x = _crop(clip.audio, int(g * GRID_S * SR + rng.uniform(-0.15, 0.15) * SR))
        if self.normals and rng.random() < 0.4:  # another household sound under it, 0-20 dB down
            other = self.clips[int(rng.choice(self.normals))]
            bed = _crop(other.audio, int(rng.integers(0, max(other.audio.size - WINDOW, 1))))
            level = (np.sqrt(np.mean(x**2)) + 1e-5) / (np.sqrt(np.mean(bed**2)) + 1e-5)
            x = x + bed * level * 10 ** (-rng.uniform(0, 20) / 20)
        if rng.random() < 0.25:
            x = signal.fftconvolve(x, room_impulse(rng, rng.uniform(0.15, 0.8), rng.uniform(0.3, 0.9)))[:WINDOW]
        channel = rng.random()
        if channel < 0.15:  # an 8 kHz telephone or intercom line
            sos = signal.butter(4, [rng.uniform(250, 350), rng.uniform(3200, 3500)], btype="band", fs=SR, output="sos")
            x = soxr.resample(soxr.resample(signal.sosfilt(sos, x), SR, 8000), 8000, SR)[:WINDOW]
            x = np.pad(x, (0, WINDOW - x.size))
        elif channel < 0.35:
            x = band_limit(x, rng)
        peak = np.max(np.abs(x)) + 1e-9
        x = x / peak * 10 ** (-rng.uniform(0, 40) / 20)
        return x, self.teacher[index][g].float()

    def epoch(self, batch_size: int) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """The epoch's batches, each made on a helper thread while the previous one trains."""
        order = self.rng.permutation(len(self.clips))
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = None
            for lo in range(0, len(order), batch_size):
                upcoming = pool.submit(self._batch, order[lo: lo + batch_size])
                if pending is not None:
                    yield pending.result()
                pending = upcoming
            if pending is not None:
                yield pending.result()

    def _batch(self, indices: np.ndarray) -> tuple[Tensor, Tensor, Tensor]:
        examples = [self._example(int(i)) for i in indices]
        windows = _to_model_rate(np.stack([w for w, _ in examples]))
        _spec_augment(windows, self.rng)
        targets = F.one_hot(torch.tensor([self.clips[int(i)].class_id for i in indices]), NUM_CLASSES).float()
        return windows, targets, torch.stack([t for _, t in examples])


def _spec_augment(windows: Tensor, rng: np.random.Generator) -> None:
    """Two frequency masks (<= 12 bins) and two time masks (<= 20 frames) per window, in place,
    filled with the batch mean."""
    batch, frames, bins = windows.shape
    fill = float(windows.mean())
    for size, limit, along_time in ((bins, 12, False), (frames, 20, True)):
        position = torch.arange(size).view(1, 1, size)
        width = torch.from_numpy(rng.integers(0, limit + 1, (batch, 2, 1)))
        start = torch.from_numpy(rng.integers(0, size - limit, (batch, 2, 1)))
        masked = ((position >= start) & (position < start + width)).any(dim=1)
        windows.masked_fill_(masked.unsqueeze(2) if along_time else masked.unsqueeze(1), fill)


def train_default_model(config: DefaultTrainingConfig, console: Console | None = None) -> dict[str, Any]:
    """Fine-tune, calibrate, write ``config.out``; returns the held-out metrics and the operating point."""
    console = console or Console(stderr=True)
    torch.set_num_threads(max(config.threads, 1))
    torch.manual_seed(config.seed)
    work = config.work or config.data / ".train"
    work.mkdir(parents=True, exist_ok=True)
    splits = read_manifest_splits(config.data, SR, config.max_clips)
    train = splits.train
    if config.household_train is not None:  # household minutes from training sources, as normal clips
        train = train + household_clips(config.household_train, SR, CLIP_S)
    known = {clip.group for part in (splits.train, splits.calibration, splits.test) for clip in part}
    reviewed, reviewed_rows = reviewed_training_clips(config.extra, SR, known)
    train = train + reviewed
    model = DefaultNet()
    if config.init_from is not None:
        model.load_state_dict(load_default_model(config.init_from)[0].state_dict())
    else:
        model.backbone.load_state_dict(load_efficientat(config.weights).state_dict())
    tag_labels = tuple(label.display_name or label.mid for label in
                       read_labels_csv(config.weights.with_name("class_labels_indices.csv")))
    params, flops = count_parameters(model), count_flops(model, torch.zeros(1, EFFICIENTAT_MEL.window_frames, 128))
    console.print(f"default model (mn04 fine-tuned): {params:,} parameters, {flops / 1e6:.1f} MFLOP per 2 s window; "
                  f"{len(train)} training clips, {len(splits.calibration)} calibration, {len(splits.test)} held out")
    teacher = _teacher_scores(splits.train, config, work, console) + (
        _teacher_scores(train[len(splits.train):], config, work, console) if len(train) > len(splits.train) else [])

    backbone = [p for n, p in model.named_parameters() if n.startswith("backbone.")]
    head = [p for n, p in model.named_parameters() if not n.startswith("backbone.")]
    optimizer = torch.optim.AdamW([{"params": backbone, "lr": config.lr}, {"params": head, "lr": config.lr * 5}],
                                  weight_decay=1e-2)
    steps_per_epoch = math.ceil(len(train) / config.batch_size)
    scheduler = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, [config.lr, config.lr * 5], total_steps=config.epochs * steps_per_epoch, pct_start=0.15)
    checkpoint = work / "checkpoint-mn04.pt"
    fingerprint = {k: str(v) for k, v in asdict(config).items() if k not in ("out", "max_minutes", "threads", "household", "budget")}
    state: dict[str, Any] = {"epoch": 0, "history": [], "seconds": 0.0}
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
        while state["epoch"] < config.epochs:
            epoch_started = time.monotonic()
            model.train()
            task = progress.add_task(f"epoch {state['epoch'] + 1}/{config.epochs}", total=steps_per_epoch)
            losses = []
            for windows, targets, soft in batches.epoch(config.batch_size):
                logits, audioset = model(windows)
                loss = F.binary_cross_entropy_with_logits(logits, targets * 0.95 + 0.05 / NUM_CLASSES)
                loss = loss + config.distill_weight * F.binary_cross_entropy_with_logits(audioset, soft)
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                scheduler.step()
                losses.append(loss.item())
                progress.advance(task)
            progress.remove_task(task)
            state["epoch"] += 1
            state["seconds"] += time.monotonic() - epoch_started
            state["history"].append({"epoch": state["epoch"], "loss": float(np.mean(losses))})
            console.print(f"epoch {state['epoch']}: loss {np.mean(losses):.4f} ({time.monotonic() - epoch_started:.0f} s)")
            torch.save({"config": fingerprint, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                        "scheduler": scheduler.state_dict(), "state": state}, checkpoint)
            if (time.monotonic() - started) / 60 > config.max_minutes:
                console.print(f"stopping: {config.max_minutes} minute budget reached")
                break

    model.eval()
    household = score_household(model, config.household, console) if config.household is not None else []
    point = calibrate(clip_scores(model, splits.calibration), [c.class_id for c in splits.calibration],
                      household, config.budget)
    metrics = point.evaluate(clip_scores(model, splits.test), [c.class_id for c in splits.test])
    console.print(f"operating point: {point.thresholds}")
    console.print(f"held-out: macro-F1 {metrics['macro_f1']:.3f}, emergency recall {metrics['emergency_recall']:.3f}, "
                  f"false alarms {metrics['false_alarm_rate']:.3f}")
    recipe = {
        "data": str(config.data), "household": None if config.household is None else str(config.household),
        "epochs_run": state["epoch"], "history": state["history"], "training_minutes": round(state["seconds"] / 60, 1),
        "parameters": params, "flops_per_window": flops, "train_clips": len(train),
        "calibration_clips": len(splits.calibration), "test_clips": len(splits.test),
        "init": "EfficientAT mn04 AudioSet (mn04_as_mAP_432.pt, MIT)" if config.init_from is None else
        {"file": str(config.init_from), "recipe": load_default_model(config.init_from)[1].get("recipe")},
        "distill_weight": config.distill_weight, "reviewed": consent_record(reviewed_rows),
        "lr": config.lr, "batch_size": config.batch_size, "seed": config.seed,
    }
    save_default_model(config.out, model, tag_labels, point.to_dict(), metrics, recipe)
    console.print(f"wrote {config.out}")
    return {"metrics": metrics, "operating_point": point.to_dict(), "parameters": params, "flops": flops}


def _progress(console: Console) -> Progress:
    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                    console=console, transient=True)
