"""Training inputs: every window of every clip, labelled, cached in the run folder.

Head-only training (``head_only``) needs the frozen encoder's output once per window, so
each window is embedded as soon as it is cut and only its pooled features ``[D]`` are kept
(``features.pt``). Training encoder layers needs the windows themselves: they are written to
``windows.f32`` (float32 ``[W, 198, 128]``, 101 KB each) and memory-mapped, with labels and
sources in ``windows.pt``. Either cache is reused while its fingerprint (files' size and
mtime, segments, hop, and for features the backbone checkpoint) is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import Progress
from torch import Tensor

from services.inference.models.beats.head import BEATsHeadModel
from services.inference.training.dataset import LabelledClip, clip_to_windows
from shared.features.spec import BEATS_FBANK
from shared.taxonomy import by_key

FEATURES_FILE = "features.pt"
WINDOWS_FILE = "windows.f32"
WINDOWS_INDEX_FILE = "windows.pt"


@dataclass
class TrainingExamples:
    """Inputs (pooled features ``[W, D]`` or windows ``[W, T, M]``), class ids and source files."""

    inputs: Tensor | np.ndarray
    labels: Tensor
    source_ids: Tensor
    sources: list[str]

    def rows(self, sources: Sequence[str]) -> Tensor:
        """Indices of the examples cut from ``sources``."""
        chosen = set(sources)
        wanted = torch.tensor([i for i, s in enumerate(self.sources) if s in chosen], dtype=torch.long)
        return torch.nonzero(torch.isin(self.source_ids, wanted)).flatten()

    def batch(self, rows: Tensor) -> Tensor:
        """The inputs at ``rows`` as one CPU tensor."""
        if isinstance(self.inputs, Tensor):
            return self.inputs[rows]
        return torch.from_numpy(np.ascontiguousarray(self.inputs[rows.numpy()]))


def prepare_examples(
    clips: Sequence[LabelledClip],
    *,
    folder: Path,
    hop_frames: int,
    model: BEATsHeadModel,
    head_only: bool,
    backbone_checkpoint: Path,
    batch_size: int,
    device: torch.device,
    progress: Progress,
) -> TrainingExamples:
    """The examples of ``clips``, from ``folder``'s cache when it is still valid, else built there."""
    fingerprint = _fingerprint(clips, hop_frames, backbone_checkpoint if head_only else None)
    index_path = folder / (FEATURES_FILE if head_only else WINDOWS_INDEX_FILE)
    if index_path.is_file():
        index = torch.load(index_path, map_location="cpu", weights_only=True)
        if index["fingerprint"] == fingerprint:
            progress.console.print(f"using the cached {'features' if head_only else 'windows'} in {folder}")
            return _from_index(index, folder, head_only)
    index_path.unlink(missing_ok=True)  # never leave an index beside a half-written store
    sources = sorted({clip.source for clip in clips})
    source_id = {s: i for i, s in enumerate(sources)}
    labels: list[int] = []
    source_ids: list[int] = []
    features: list[Tensor] = []
    task = progress.add_task("features" if head_only else "windows", total=len(clips), status="")
    with nullcontext() if head_only else open(folder / WINDOWS_FILE, "wb") as store:
        for clip in clips:
            windows = clip_to_windows(clip, hop_frames)
            if store is None:
                features.append(_embed(model, windows, batch_size, device))
            else:
                store.write(windows.numpy().astype(np.float32, copy=False).tobytes())
            labels.extend([by_key(clip.class_key).id] * windows.shape[0])
            source_ids.extend([source_id[clip.source]] * windows.shape[0])
            progress.advance(task)
    index = {
        "fingerprint": fingerprint,
        "labels": torch.tensor(labels, dtype=torch.long),
        "source_ids": torch.tensor(source_ids, dtype=torch.long),
        "sources": sources,
    }
    if head_only:
        index["features"] = torch.cat(features)
    save_atomic(index, index_path)
    return _from_index(index, folder, head_only)


def save_atomic(obj: Any, path: Path) -> None:
    """``torch.save`` to a temporary file beside ``path``, then rename: never half a file at ``path``."""
    tmp = path.with_name(path.name + ".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def _fingerprint(clips: Sequence[LabelledClip], hop_frames: int, backbone: Path | None) -> str:
    items: list[Any] = [hop_frames]
    for clip in clips:
        stat = clip.path.stat()
        items.append([clip.source, clip.class_key, clip.start_s, clip.end_s, stat.st_size, stat.st_mtime_ns])
    if backbone is not None:
        stat = backbone.stat()
        items.append([str(backbone.resolve()), stat.st_size, stat.st_mtime_ns])
    return hashlib.sha256(json.dumps(items).encode()).hexdigest()


def _from_index(index: dict[str, Any], folder: Path, head_only: bool) -> TrainingExamples:
    inputs: Tensor | np.ndarray
    if head_only:
        inputs = index["features"]
    else:
        shape = (int(index["labels"].numel()), BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)
        inputs = np.memmap(folder / WINDOWS_FILE, dtype=np.float32, mode="r", shape=shape)
    return TrainingExamples(inputs, index["labels"], index["source_ids"], list(index["sources"]))


@torch.no_grad()
def _embed(model: BEATsHeadModel, windows: Tensor, batch_size: int, device: torch.device) -> Tensor:
    return torch.cat([model.embed(chunk.to(device)).cpu() for chunk in windows.split(batch_size)])
