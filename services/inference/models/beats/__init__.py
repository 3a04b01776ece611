"""Our own PyTorch BEATs, loading the official checkpoints and output-identical to them.

    from services.inference.models.beats import load_beats
    model = load_beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    probs, _ = model.extract_features_from_fbank(windows)   # [B, 198, 128] -> [B, 527]

Facts behind it: ``shared/specs/beats.md`` (CEO material).
"""

from __future__ import annotations

from services.inference.models.beats.checkpoint import load_beats, save_official
from services.inference.models.beats.config import BEATsConfig
from services.inference.models.beats.encoder import relative_position_buckets
from services.inference.models.beats.model import BEATs, reduce_padding_mask
from shared.features.spec import BEATS_FBANK

FEATURE_SPEC = BEATS_FBANK

__all__ = [
    "BEATS_FBANK",
    "BEATs",
    "BEATsConfig",
    "FEATURE_SPEC",
    "load_beats",
    "reduce_padding_mask",
    "relative_position_buckets",
    "save_official",
]
