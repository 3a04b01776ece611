"""Feature specs: what a model expects, declared by the model and computed by the gateway.

A spec is part of the gateway <-> inference handshake: the inference service refuses a
gateway whose spec differs from its model's (compared with ``FeatureSpec.to_dict``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any


@dataclass(frozen=True)
class FeatureSpec:
    """A log-mel feature layout.

    ``window_frames`` frames make one model window (2 s); the gateway emits one every
    ``hop_frames`` frames (0.5 s by default, overridable per deployment).
    """

    name: str
    sample_rate: int
    n_mels: int
    frame_length: int
    frame_shift: int
    window_frames: int
    normalisation: str

    @property
    def window_seconds(self) -> float:
        return self.window_frames * self.frame_shift / self.sample_rate

    def frames_for(self, seconds: float) -> int:
        return round(seconds * self.sample_rate / self.frame_shift)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "FeatureSpec":
        return cls(**{k: data[k] for k in cls.__dataclass_fields__})


# BEATs: Kaldi fbank, 16 kHz, 25 ms / 10 ms, snip_edges. 2 s = 32,000 samples -> 198 frames.
BEATS_FBANK = FeatureSpec(
    name="beats_fbank",
    sample_rate=16_000,
    n_mels=128,
    frame_length=400,
    frame_shift=160,
    window_frames=198,
    normalisation="beats: (ln fbank - 15.41663) / 13.11164",
)

# EfficientAT: 32 kHz, STFT 1024 / win 800 / hop 320 centred. 2 s = 64,000 samples -> 200 frames.
EFFICIENTAT_MEL = FeatureSpec(
    name="efficientat_mel",
    sample_rate=32_000,
    n_mels=128,
    frame_length=800,
    frame_shift=320,
    window_frames=200,
    normalisation="efficientat: (ln(mel + 1e-5) + 4.5) / 5",
)

SPECS: dict[str, FeatureSpec] = {s.name: s for s in (BEATS_FBANK, EFFICIENTAT_MEL)}


def spec_by_name(name: str) -> FeatureSpec:
    try:
        return SPECS[name]
    except KeyError:
        raise KeyError(f"unknown feature spec {name!r}; known: {', '.join(SPECS)}") from None
