"""The BEATs audio model: filterbank front end, patch embedding, encoder, optional AudioSet head."""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import Tensor, nn

from services.inference.models.beats.config import BEATsConfig
from services.inference.models.beats.encoder import TransformerEncoder
from shared.features.kaldi_fbank import beats_fbank
from shared.features.spec import BEATS_FBANK, FeatureSpec


def reduce_padding_mask(mask: Tensor, length: int) -> Tensor:
    """Reduce a padding mask ``[B, L]`` to ``[B, length]`` the way the reference does.

    The last ``L mod length`` entries are dropped, the rest is cut into ``length`` even chunks
    and a chunk is padded (True) only if all of it is. These chunks are not the real frame
    hops or patches (samples -> frames uses chunks of ``N // T`` samples; frames -> tokens
    chunks of ``T // P`` frames in flattened token order), but that is what the official
    model was run with, so it is reproduced exactly.
    """
    batch, size = mask.shape
    if size < length:
        raise ValueError(f"cannot reduce a padding mask of {size} entries to {length}")
    chunk = size // length
    return mask[:, : length * chunk].reshape(batch, length, chunk).all(-1)


class BEATs(nn.Module):
    """BEATs (iter3 / iter3+) for inference, output-identical to the official model in fp32.

    Build with ``load_beats`` (official checkpoint) or ``BEATs(cfg)`` (random weights);
    ``state_dict()`` is in the official key format. Two entry points:

    - ``extract_features(source, padding_mask)``: 16 kHz waveforms, like the reference;
    - ``extract_features_from_fbank(fbank, padding_mask)``: the normalised filterbank
      windows the gateway sends (``FEATURE_SPEC``), so features are never recomputed.

    Both return the reference's pair: ``[B, predictor_class]`` sigmoid probabilities for a
    fine-tuned model or ``[B, P, D]`` features for a pre-trained one, and the token padding
    mask ``[B, P]`` (or None when no mask was given). ``P = (T // 16) * 8`` for ``T`` frames.

    Precision: fp32 on the CPU (within 1e-5 of the reference's probabilities). On CUDA the
    encoder runs under ``autocast_dtype`` (bf16 by default; set None for fp32) with fused
    attention; expect probabilities within 2e-2 of fp32 and the same top-5 (1e-3 with TF32).
    Outputs are float32 in every case.

    Differences from the reference that do not change any output: inference only (dropout,
    LayerDrop and the layer-wise gradient decay are not implemented), and the reference's
    one NumPy random draw per layer per forward (a side effect on NumPy's global RNG, even
    in eval) is not reproduced.
    """

    FEATURE_SPEC: FeatureSpec = BEATS_FBANK

    def __init__(self, cfg: BEATsConfig, label_dict: dict[Any, Any] | None = None) -> None:
        super().__init__()
        cfg.check_supported()
        self.cfg = cfg
        self.label_dict = label_dict
        self.autocast_dtype: torch.dtype | None = torch.bfloat16
        patch = cfg.input_patch_size
        self.patch_size = patch
        self.patch_embedding = nn.Conv2d(
            1, cfg.embed_dim, kernel_size=patch, stride=patch, bias=cfg.conv_bias
        )
        self.layer_norm = nn.LayerNorm(cfg.embed_dim)
        self.post_extract_proj = (
            nn.Linear(cfg.embed_dim, cfg.encoder_embed_dim)
            if cfg.embed_dim != cfg.encoder_embed_dim
            else None
        )
        self.encoder = TransformerEncoder(cfg)
        self.predictor = (
            nn.Linear(cfg.encoder_embed_dim, cfg.predictor_class) if cfg.finetuned_model else None
        )

    @property
    def min_frames(self) -> int:
        """Frames for one time patch: the shortest input (16 frames -> 8 tokens)."""
        return self.patch_size

    @property
    def min_samples(self) -> int:
        """Samples for ``min_frames`` frames at 16 kHz (2,800 for patch 16)."""
        spec = self.FEATURE_SPEC
        return spec.frame_length + spec.frame_shift * (self.min_frames - 1)

    def num_tokens(self, frames: int) -> int:
        """Tokens for ``frames`` filterbank frames: 198 -> 96, 98 -> 48, 998 -> 496."""
        return (frames // self.patch_size) * (self.FEATURE_SPEC.n_mels // self.patch_size)

    def extract_features(
        self, source: Tensor, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Waveforms ``[B, N]`` float in [-1, 1] at 16 kHz -> (output, token mask or None).

        ``padding_mask`` is bool ``[B, N]``, True = padded sample; it is reduced to frames
        and then to tokens with ``reduce_padding_mask``. The audio itself is not zeroed.
        Raises ValueError for ``N < min_samples`` (2,800).
        """
        if source.dim() != 2:
            raise ValueError(f"source must be [B, N] waveforms, got shape {tuple(source.shape)}")
        if source.shape[1] < self.min_samples:
            raise ValueError(
                f"BEATs needs at least {self.min_samples} samples at 16 kHz "
                f"({self.min_frames} filterbank frames), got {source.shape[1]}"
            )
        if padding_mask is not None and padding_mask.shape != source.shape:
            raise ValueError(
                f"padding_mask shape {tuple(padding_mask.shape)} != source shape {tuple(source.shape)}"
            )
        fbank = beats_fbank(source.float())
        frame_mask = None
        if padding_mask is not None:
            frame_mask = reduce_padding_mask(padding_mask.to(torch.bool), fbank.shape[1])
        return self.extract_features_from_fbank(fbank, frame_mask)

    def extract_features_from_fbank(
        self, fbank: Tensor, padding_mask: Tensor | None = None
    ) -> tuple[Tensor, Tensor | None]:
        """Normalised filterbank ``[B, T, 128]`` (time-major) -> (output, token mask or None).

        ``padding_mask`` is bool ``[B, T]``, True = padded FRAME. It is reduced to tokens
        with the reference's rule, so ``extract_features(wave, sample_mask)`` equals
        ``extract_features_from_fbank(beats_fbank(wave), reduce_padding_mask(sample_mask, T))``.
        A clip whose tokens are all padded gives NaN, as in the reference; an all-False mask
        gives the same output as None. Raises ValueError for ``T < min_frames`` (16).
        """
        if fbank.dim() != 3 or fbank.shape[2] != self.FEATURE_SPEC.n_mels:
            raise ValueError(
                f"fbank must be [B, T, {self.FEATURE_SPEC.n_mels}], got shape {tuple(fbank.shape)}"
            )
        frames = fbank.shape[1]
        if frames < self.min_frames:
            raise ValueError(
                f"BEATs needs at least {self.min_frames} filterbank frames "
                f"({self.min_samples} samples at 16 kHz), got {frames}"
            )
        token_mask = None
        if padding_mask is not None:
            if padding_mask.shape != fbank.shape[:2]:
                raise ValueError(
                    f"padding_mask shape {tuple(padding_mask.shape)} != fbank frames "
                    f"{tuple(fbank.shape[:2])}"
                )
            token_mask = reduce_padding_mask(padding_mask.to(torch.bool), self.num_tokens(frames))
        with self._precision(fbank):
            output = self._forward_tokens(fbank.float(), token_mask)
        return output, token_mask

    def _precision(self, x: Tensor) -> contextlib.AbstractContextManager[Any]:
        if x.is_cuda and self.autocast_dtype is not None:
            return torch.autocast("cuda", dtype=self.autocast_dtype)
        return contextlib.nullcontext()

    def _forward_tokens(self, fbank: Tensor, token_mask: Tensor | None) -> Tensor:
        # [B, T, 128] is [B, 1, height=time, width=freq] for the [time, freq] patch kernel;
        # tokens are flattened time-major (p = t * 8 + f).
        x = self.patch_embedding(fbank.unsqueeze(1)).flatten(2).transpose(1, 2)
        x = self.layer_norm(x)
        if self.post_extract_proj is not None:
            x = self.post_extract_proj(x)
        x = self.encoder(x, token_mask)
        if self.predictor is None:
            return x.float()
        logits = self.predictor(x).float()
        # Mean of the LOGITS over unpadded tokens, then sigmoid (multi-label).
        if token_mask is not None and bool(token_mask.any()):
            logits = logits.masked_fill(token_mask.unsqueeze(-1), 0.0).sum(dim=1)
            logits = logits / (~token_mask).sum(dim=1, keepdim=True)
        else:
            logits = logits.mean(dim=1)
        return torch.sigmoid(logits)
