"""Our keyword network: hears the distress phrases of ``phrases.toml`` in a speech segment.

A small CNN over 2 s windows of 16 kHz log-mel (64 bins, 10 ms frames, each bin's mean over the
window removed, so a phone line or a door in between shifts nothing), with one sigmoid per
phrase: several phrases may sit in one window ("갇혔어요 문 좀 열어주세요"). It is trained by
``hearo spoken train`` (``hearo/keyword_training.py``) on synthesised speech of the phrases and
of everyday sentences in many voices, over household sound, and it ships in the repository
(``weights/keyword_net.pt``, with the phrase order and the per-phrase thresholds it was
calibrated with). Unlike the Vosk and PocketSphinx recognisers it needs nothing beyond torch,
so it is the default recogniser of both languages.

A segment is cut into 2 s windows every 0.25 s (a shorter one is padded with faint noise); a
phrase's confidence is its highest score over the windows.
"""

from __future__ import annotations

import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from shared.features.kaldi_fbank import kaldi_fbank
from shared.spoken.match import ALONE_OTHER_SPEECH_S, KeywordMatch
from shared.spoken.phrases import DistressPhrase, load_phrases

__all__ = [
    "HOP_S", "N_MELS", "WEIGHTS", "WINDOW_S", "KeywordCNN", "KeywordNet", "NetKeywords", "keyword_features",
    "load_keyword_net", "segment_windows",
]

SAMPLE_RATE = 16_000
WINDOW_S = 2.0
HOP_S = 0.25
WINDOW = int(WINDOW_S * SAMPLE_RATE)
N_MELS = 64
WEIGHTS = Path(__file__).with_name("weights") / "keyword_net.pt"
# Padding for a segment shorter than a window: faint noise, as training pads (a digital zero
# would put the log floor into the window's mean).
PAD_RMS = 1e-4


def keyword_features(windows: torch.Tensor) -> torch.Tensor:
    """``[B, 32000]`` float audio in [-1, 1] -> ``[B, 1, 198, 64]``: Kaldi log fbank, adjacent bin
    pairs averaged, each bin's mean over the window removed, scaled to about unit variance."""
    fbank = kaldi_fbank(windows)  # [B, T, 128]
    fbank = fbank.reshape(fbank.shape[0], fbank.shape[1], N_MELS, 2).mean(-1)
    fbank = fbank - fbank.mean(dim=1, keepdim=True)
    return (fbank / 4.0).unsqueeze(1)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU())


class KeywordCNN(nn.Module):
    """Four 3x3 convolution blocks (24-48-96-128 channels) with pooling, the frequency axis
    averaged, then the mean and max over time into one linear layer: a logit per phrase."""

    def __init__(self, n_phrases: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.features = nn.Sequential(
            _block(1, 24, stride=2), nn.MaxPool2d((1, 2)),
            _block(24, 48), nn.MaxPool2d(2),
            _block(48, 96), nn.MaxPool2d(2),
            _block(96, 128),
        )
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(256, n_phrases)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.features(x).mean(dim=3)  # [B, C, T']
        pooled = torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)
        return self.head(self.dropout(pooled))


def segment_windows(audio: np.ndarray, rng: np.random.Generator | None = None) -> np.ndarray:
    """The 2 s windows of a segment every 0.25 s, ``[W, 32000]`` float32; a segment shorter than
    one window is centred in faint noise, and the last window ends at the segment's end."""
    audio = np.asarray(audio, dtype=np.float32)
    if audio.size < WINDOW:
        noise = (rng or np.random.default_rng(0)).normal(0.0, PAD_RMS, WINDOW).astype(np.float32)
        lo = (WINDOW - audio.size) // 2
        noise[lo: lo + audio.size] += audio
        return noise[None, :]
    hop = int(HOP_S * SAMPLE_RATE)
    starts = list(range(0, audio.size - WINDOW + 1, hop))
    if starts[-1] != audio.size - WINDOW:
        starts.append(audio.size - WINDOW)
    return np.stack([audio[s: s + WINDOW] for s in starts])


@dataclass(frozen=True)
class _Scores:
    audio: np.ndarray  # the segment these scores are for (identity, not equality)
    scores: np.ndarray  # [W, phrases]


class KeywordNet:
    """The trained network with its phrase order and thresholds; ``scores`` is thread-safe."""

    def __init__(self, state: dict[str, Any]) -> None:
        self.phrase_keys: tuple[str, ...] = tuple(state["phrase_keys"])
        self.thresholds: dict[str, float] = {k: float(v) for k, v in state["thresholds"].items()}
        self.model = KeywordCNN(len(self.phrase_keys))
        self.model.load_state_dict({k: v.float() for k, v in state["model"].items()}, strict=True)
        self.model.eval()
        self.notes: dict[str, Any] = dict(state.get("notes", {}))
        self._last = threading.local()

    @torch.inference_mode()
    def window_scores(self, windows: np.ndarray) -> np.ndarray:
        """``[W, 32000]`` -> sigmoid scores ``[W, phrases]``."""
        x = keyword_features(torch.from_numpy(np.ascontiguousarray(windows, dtype=np.float32)))
        return torch.sigmoid(self.model(x)).numpy()

    def scores(self, audio: np.ndarray) -> np.ndarray:
        """Per-window scores of one segment; the last segment's are reused (per thread), so the
        Korean and English views of one listener run the network once per segment."""
        last: _Scores | None = getattr(self._last, "value", None)
        if last is not None and last.audio is audio:
            return last.scores
        scores = self.window_scores(segment_windows(audio))
        self._last.value = _Scores(audio, scores)
        return scores


@cache
def load_keyword_net(path: Path = WEIGHTS) -> KeywordNet:
    """The shipped network (loaded once per process); ValueError when its phrases are not
    those of ``phrases.toml``: a phrase added to the list needs the network retrained."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    net = KeywordNet(state)
    listed = {p.key for p in load_phrases()}
    if set(net.phrase_keys) != listed:
        raise ValueError(f"{path} was trained for other phrases: missing {sorted(listed - set(net.phrase_keys))}, "
                         f"extra {sorted(set(net.phrase_keys) - listed)}; retrain with `hearo spoken train`")
    return net


class NetKeywords:
    """One language's view of the keyword network (``KeywordRecogniser``)."""

    def __init__(self, language: str, net: KeywordNet | None = None, phrases: Sequence[DistressPhrase] | None = None) -> None:
        self.language = language
        self.net = net or load_keyword_net()
        by_key = {p.key: p for p in (phrases or load_phrases())}
        self._phrases = [(i, by_key[k]) for i, k in enumerate(self.net.phrase_keys) if by_key[k].language == language]

    def recognise(self, segment: np.ndarray, voiced_s: float | None = None) -> list[KeywordMatch]:
        scores = self.net.scores(segment)
        speech_s = voiced_s if voiced_s is not None else segment.size / SAMPLE_RATE
        hop = int(HOP_S * SAMPLE_RATE)
        matches = []
        for i, phrase in self._phrases:
            w = int(np.argmax(scores[:, i]))
            confidence = float(scores[w, i])
            if confidence < self.net.thresholds[phrase.key]:
                continue
            start = min(w * hop, max(segment.size - WINDOW, 0)) / SAMPLE_RATE
            end = min(start + WINDOW_S, segment.size / SAMPLE_RATE)
            # The window's speech is the phrase's at most: the rest of the utterance is other speech.
            other_s = max(speech_s - WINDOW_S, 0.0)
            if phrase.alone and other_s > ALONE_OTHER_SPEECH_S:
                continue
            matches.append(KeywordMatch(phrase, confidence, start, end, other_s))
        return matches
