"""Our own PyTorch BEATs, loading the official checkpoints and output-identical to them.

    from services.inference.models.beats import load_beats
    model = load_beats("BEATs_iter3_plus_AS2M_finetuned_on_AS2M_cpt2.pt")
    probs, _ = model.extract_features_from_fbank(windows)   # [B, 198, 128] -> [B, 527]

A 9-class Hear-o head on the encoder and its model file: ``head``. Serving either kind of
file as the inference service's ``beats`` model: ``serving`` (not imported here: it builds on
the inference registry). Facts behind it: ``shared/specs/beats.md`` (CEO material).
"""

from __future__ import annotations

from services.inference.models.beats.checkpoint import (
    beats_from_official,
    load_beats,
    official_dict,
    save_official,
)
from services.inference.models.beats.config import BEATsConfig
from services.inference.models.beats.encoder import relative_position_buckets
from services.inference.models.beats.head import (
    HEAD_FILE_FORMAT,
    BEATsHeadModel,
    ClassHead,
    backbone_from_official,
    load_head_file,
    pool_tokens,
    save_head_file,
)
from services.inference.models.beats.model import BEATs, reduce_padding_mask
from shared.features.spec import BEATS_FBANK

FEATURE_SPEC = BEATS_FBANK

__all__ = [
    "BEATS_FBANK",
    "BEATs",
    "BEATsConfig",
    "BEATsHeadModel",
    "ClassHead",
    "FEATURE_SPEC",
    "HEAD_FILE_FORMAT",
    "backbone_from_official",
    "beats_from_official",
    "load_beats",
    "load_head_file",
    "official_dict",
    "pool_tokens",
    "reduce_padding_mask",
    "relative_position_buckets",
    "save_head_file",
    "save_official",
]
