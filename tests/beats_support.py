"""Helpers for the BEATs serving and training tests: tiny official-format checkpoints and audio."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import soundfile as sf
import torch

from services.inference.audioset_map import read_labels_csv
from services.inference.models.beats import BEATs, BEATsConfig, save_official
from services.inference.settings import SHARED_MODELS_DIR

# The released architecture (DeepNorm, gated relative-position bias) at a tiny size.
TINY = dict(
    input_patch_size=16,
    embed_dim=32,
    encoder_layers=3,
    encoder_embed_dim=64,
    encoder_ffn_embed_dim=128,
    encoder_attention_heads=4,
    conv_pos=16,
    conv_pos_groups=4,
    deep_norm=True,
    relative_position_embedding=True,
    num_buckets=320,
    max_distance=800,
    gru_rel_pos=True,
)
AUDIOSET_LABELS_CSV = SHARED_MODELS_DIR / "efficientat_mn04_as" / "class_labels_indices.csv"


def audioset_label_dict() -> dict[int, str]:
    """Index -> AudioSet mid for the 527 real AudioSet labels, as a fine-tuned BEATs file holds."""
    return {label.index: label.mid for label in read_labels_csv(AUDIOSET_LABELS_CSV)}


def tiny_beats(finetuned: bool, seed: int = 1) -> BEATs:
    """A tiny random BEATs with every parameter moved off its init (biases, LayerNorms, table)."""
    torch.manual_seed(seed)
    model = BEATs(BEATsConfig.from_dict({**TINY, "finetuned_model": finetuned}))
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3 * (p.abs().mean() + 0.1))
    return model.eval()


def write_tiny_checkpoint(path: Path, finetuned: bool, seed: int = 1) -> Path:
    """An official-format tiny checkpoint; fine-tuned ones carry the real AudioSet label_dict."""
    save_official(tiny_beats(finetuned, seed), path, label_dict=audioset_label_dict() if finetuned else None)
    return path


def tone(seconds: float, freq: float, rate: int = 16_000, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    """A sine (plus optional white noise) in [-1, 1], float32."""
    t = np.arange(int(seconds * rate)) / rate
    signal = 0.3 * np.sin(2 * math.pi * freq * t)
    signal += noise * np.random.default_rng(seed).standard_normal(t.shape)
    return np.clip(signal, -1, 1).astype(np.float32)


def write_audio(path: Path, samples: np.ndarray, rate: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    sf.write(str(path), samples, rate)
    return path
