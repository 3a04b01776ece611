"""BEATs configuration: the official checkpoint's ``cfg`` dict as a typed record."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields, replace
from typing import Any, Mapping


@dataclass(frozen=True)
class BEATsConfig:
    """Every field of an official BEATs ``cfg`` dict, with the reference's defaults.

    The defaults are the reference code's, not the released checkpoints' (``iter3_plus``
    gives those): a file's ``cfg`` is laid over them, so a key the file lacks takes the
    default and a key this record does not know is ignored, as the reference does.
    Dropout, LayerDrop and ``layer_wise_gradient_decay_ratio`` are kept for the round trip
    only: they do not act in this inference implementation.
    """

    input_patch_size: int = -1
    embed_dim: int = 512
    conv_bias: bool = False
    encoder_layers: int = 12
    encoder_embed_dim: int = 768
    encoder_ffn_embed_dim: int = 3072
    encoder_attention_heads: int = 12
    activation_fn: str = "gelu"
    layer_wise_gradient_decay_ratio: float = 1.0
    layer_norm_first: bool = False
    deep_norm: bool = False
    dropout: float = 0.1
    attention_dropout: float = 0.1
    activation_dropout: float = 0.0
    encoder_layerdrop: float = 0.0
    dropout_input: float = 0.0
    conv_pos: int = 128
    conv_pos_groups: int = 16
    relative_position_embedding: bool = False
    num_buckets: int = 320
    max_distance: int = 1280
    gru_rel_pos: bool = False
    finetuned_model: bool = False
    predictor_dropout: float = 0.1
    predictor_class: int = 527

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> BEATsConfig:
        """The defaults updated with ``data``'s known keys; unknown keys are ignored."""
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in known})

    @classmethod
    def iter3_plus(cls, *, finetuned: bool) -> BEATsConfig:
        """The released BEATs iter3 / iter3+ architecture (AS2M fine-tuned or pre-trained)."""
        base = cls(
            input_patch_size=16,
            deep_norm=True,
            relative_position_embedding=True,
            max_distance=800,
            gru_rel_pos=True,
        )
        if not finetuned:
            return base
        return replace(
            base,
            finetuned_model=True,
            dropout=0.0,
            attention_dropout=0.0,
            predictor_dropout=0.0,
            layer_wise_gradient_decay_ratio=0.6,
            encoder_layerdrop=0.05,
        )

    def to_dict(self) -> dict[str, Any]:
        """A plain dict, as written into an official-format checkpoint."""
        return asdict(self)

    @property
    def residual_scale(self) -> float:
        """DeepNorm's alpha, (2 * layers) ** 0.25 (2.2133638 for 12 layers), else 1."""
        return (2 * self.encoder_layers) ** 0.25 if self.deep_norm else 1.0

    def check_supported(self) -> None:
        """Raise ValueError for a configuration this implementation does not compute.

        Pre-LN (``layer_norm_first``) and activations other than GELU exist in the
        reference code but in no released checkpoint; they are refused rather than guessed.
        """
        problems = []
        if self.input_patch_size <= 0:
            problems.append(f"input_patch_size must be positive, got {self.input_patch_size}")
        if self.activation_fn != "gelu":
            problems.append(f"activation_fn {self.activation_fn!r} is not supported (gelu only)")
        if self.layer_norm_first:
            problems.append("layer_norm_first=True (pre-LN) is not supported")
        if self.encoder_embed_dim % self.encoder_attention_heads:
            problems.append("encoder_embed_dim must be a multiple of encoder_attention_heads")
        if self.encoder_embed_dim % self.conv_pos_groups:
            problems.append("encoder_embed_dim must be a multiple of conv_pos_groups")
        if problems:
            raise ValueError("unsupported BEATs config: " + "; ".join(problems))
