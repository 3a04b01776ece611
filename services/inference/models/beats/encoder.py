"""The BEATs Transformer encoder: pos conv, gated relative-position attention, post-LN layers.

Module and parameter names follow the official checkpoints, so ``state_dict()`` is already in
the official key format (``encoder.pos_conv.0.weight_g`` / ``weight_v``, and the one shared
relative-position table listed under every layer).

Tensors are batch-first here, ``[B, P, D]`` (the reference runs ``[P, B, D]``; same numbers).
"""

from __future__ import annotations

import math
from typing import cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from services.inference.models.beats.config import BEATsConfig


def relative_position_buckets(
    num_positions: int, num_buckets: int, max_distance: int, device: torch.device | None = None
) -> Tensor:
    """Bucket index ``[P, P]`` (long) of ``rel = key - query`` for every query/key pair.

    Half of the buckets take ``rel > 0``. Within a half, distances under a quarter of
    ``num_buckets`` (80) are exact; longer ones grow logarithmically up to ``max_distance``
    and saturate at the half's last bucket. The log is float32 and truncated, as in the
    reference (800 / 320: +1 -> 161, -1 -> 1, +100 -> 247, 319 first reached at +778).
    """
    positions = torch.arange(num_positions, device=device)
    rel = positions[None, :] - positions[:, None]
    half = num_buckets // 2
    exact = half // 2
    distance = rel.abs()
    # clamp(min=1) only keeps log() finite where the exact branch is taken anyway.
    log_ratio = torch.log(distance.clamp(min=1).float() / exact) / math.log(max_distance / exact)
    far = (exact + (log_ratio * (half - exact)).to(torch.long)).clamp(max=half - 1)
    return (rel > 0).to(torch.long) * half + torch.where(distance < exact, distance, far)


class TapNormConv1d(nn.Module):
    """Grouped Conv1d with weight norm over each kernel tap; the output keeps the input length.

    ``weight[:, :, k] = weight_g[0, 0, k] * weight_v[:, :, k] / ||weight_v[:, :, k]||``: the
    legacy ``nn.utils.weight_norm(dim=2)`` written out, so the parameters carry the official
    ``weight_g`` / ``weight_v`` names. Padding is ``kernel // 2`` on both sides; for an even
    kernel the one extra output at the end is dropped (the reference's ``SamePad``).
    """

    def __init__(self, channels: int, kernel_size: int, groups: int) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.groups = groups
        self.weight_v = nn.Parameter(torch.empty(channels, channels // groups, kernel_size))
        self.weight_g = nn.Parameter(torch.empty(1, 1, kernel_size))
        self.bias = nn.Parameter(torch.zeros(channels))
        nn.init.normal_(self.weight_v, std=math.sqrt(4.0 / (kernel_size * channels)))
        with torch.no_grad():
            self.weight_g.copy_(self._tap_norms())

    def _tap_norms(self) -> Tensor:
        return self.weight_v.norm(dim=(0, 1), keepdim=True)

    @property
    def weight(self) -> Tensor:
        return self.weight_v * (self.weight_g / self._tap_norms())

    def forward(self, x: Tensor) -> Tensor:
        """``[B, C, P] -> [B, C, P]``."""
        length = x.shape[-1]
        out = F.conv1d(x, self.weight, self.bias, padding=self.kernel_size // 2, groups=self.groups)
        return out[..., :length]


class GatedRelativeAttention(nn.Module):
    """Multi-head self-attention with a relative-position bias scaled by a per-query gate.

    ``scores = q.k / sqrt(d) + gate * bias`` with padded keys at -inf, one softmax, ``@ v``.
    The gate comes from the unscaled ``q_proj`` output of each head: ``grep_linear`` to 8,
    two sums of 4, sigmoid -> ``ga, gb``; ``gate = ga * (gb * grep_a[h] - 1) + 2``. Without
    ``gru_rel_pos`` the bias is added ungated. The reference's ``q / 8 / 32 - rowmax, * 32``
    ordering only guards fp16 against overflow; fused SDPA with the float mask gives the same
    result (within 1e-5 in fp32). A clip whose every key is padded yields NaN, as in the
    reference (SDPA alone would give zeros).
    """

    relative_attention_bias: nn.Embedding

    def __init__(self, dim: int, heads: int, *, gated: bool, bias_table: nn.Embedding | None) -> None:
        super().__init__()
        self.heads = heads
        self.head_dim = dim // heads
        self.q_proj = nn.Linear(dim, dim)
        self.k_proj = nn.Linear(dim, dim)
        self.v_proj = nn.Linear(dim, dim)
        self.out_proj = nn.Linear(dim, dim)
        self.gated = gated
        if gated:
            self.grep_linear = nn.Linear(self.head_dim, 8)
            self.grep_a = nn.Parameter(torch.ones(1, heads, 1, 1))
        if bias_table is not None:
            # The same module in every layer: state_dict() lists it under each, as the
            # official files do, while parameters() counts it once.
            self.relative_attention_bias = bias_table

    def _split_heads(self, x: Tensor) -> Tensor:
        batch, tokens, _ = x.shape
        return x.view(batch, tokens, self.heads, self.head_dim).transpose(1, 2)

    def forward(
        self, x: Tensor, position_bias: Tensor | None, key_padding_mask: Tensor | None
    ) -> Tensor:
        """``x [B, P, D]``, ``position_bias [H, P, P]`` (ungated) or None, mask ``[B, P]``."""
        q = self._split_heads(self.q_proj(x))
        k = self._split_heads(self.k_proj(x))
        v = self._split_heads(self.v_proj(x))
        mask: Tensor | None = None
        if position_bias is not None:
            if self.gated:
                batch, heads, tokens, _ = q.shape
                halves = self.grep_linear(q).view(batch, heads, tokens, 2, 4).sum(-1)
                gate_a, gate_b = torch.sigmoid(halves).chunk(2, dim=-1)
                gate = gate_a * (gate_b * self.grep_a - 1.0) + 2.0
                mask = gate * position_bias
            else:
                mask = position_bias.unsqueeze(0)
        if key_padding_mask is not None:
            pads = torch.zeros(key_padding_mask.shape, dtype=torch.float32, device=x.device)
            pads = pads.masked_fill(key_padding_mask, float("-inf"))[:, None, None, :]
            mask = pads if mask is None else mask + pads
        if mask is not None:
            mask = mask.to(q.dtype)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        if key_padding_mask is not None:
            out = out.masked_fill(key_padding_mask.all(-1)[:, None, None, None], float("nan"))
        out = out.transpose(1, 2).reshape(x.shape[0], x.shape[1], -1)
        return self.out_proj(out)


class EncoderLayer(nn.Module):
    """Post-LN layer with DeepNorm residual scaling ``alpha``.

    ``x = LN(alpha * x + Attn(x)); x = LN(alpha * x + fc2(GELU(fc1(x))))``; the exact (erf)
    GELU runs in fp32 and is cast back.
    """

    def __init__(self, cfg: BEATsConfig, bias_table: nn.Embedding | None) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.alpha = cfg.residual_scale
        self.self_attn = GatedRelativeAttention(
            dim, cfg.encoder_attention_heads, gated=cfg.gru_rel_pos, bias_table=bias_table
        )
        self.self_attn_layer_norm = nn.LayerNorm(dim)
        self.fc1 = nn.Linear(dim, cfg.encoder_ffn_embed_dim)
        self.fc2 = nn.Linear(cfg.encoder_ffn_embed_dim, dim)
        self.final_layer_norm = nn.LayerNorm(dim)

    def forward(
        self, x: Tensor, position_bias: Tensor | None, key_padding_mask: Tensor | None
    ) -> Tensor:
        x = self.self_attn_layer_norm(
            self.alpha * x + self.self_attn(x, position_bias, key_padding_mask)
        )
        hidden = self.fc1(x)
        hidden = F.gelu(hidden.float()).type_as(hidden)
        return self.final_layer_norm(self.alpha * x + self.fc2(hidden))


class TransformerEncoder(nn.Module):
    """Pos conv (+ GELU, residual) -> LayerNorm -> layers; no final norm.

    Padded tokens (``key_padding_mask`` True) are zeroed before the pos conv and excluded
    as attention keys; their own outputs are still computed. The relative-position bias is
    evaluated once per forward and shared, ungated, by every layer.
    """

    def __init__(self, cfg: BEATsConfig) -> None:
        super().__init__()
        dim = cfg.encoder_embed_dim
        self.relative_position = cfg.relative_position_embedding
        self.num_buckets = cfg.num_buckets
        self.max_distance = cfg.max_distance
        self.pos_conv = nn.Sequential(
            TapNormConv1d(dim, cfg.conv_pos, cfg.conv_pos_groups), nn.GELU()
        )
        self.layer_norm = nn.LayerNorm(dim)
        bias_table = (
            nn.Embedding(cfg.num_buckets, cfg.encoder_attention_heads)
            if cfg.relative_position_embedding
            else None
        )
        self.layers = nn.ModuleList(
            EncoderLayer(cfg, bias_table) for _ in range(cfg.encoder_layers)
        )

    def forward(self, x: Tensor, key_padding_mask: Tensor | None) -> Tensor:
        """``x [B, P, D]``, mask ``[B, P]`` bool (True = padded) or None -> ``[B, P, D]``."""
        if key_padding_mask is not None:
            x = x.masked_fill(key_padding_mask.unsqueeze(-1), 0.0)
        x = x + self.pos_conv(x.transpose(1, 2)).transpose(1, 2)
        x = self.layer_norm(x)
        position_bias = None
        if self.relative_position:
            buckets = relative_position_buckets(
                x.shape[1], self.num_buckets, self.max_distance, device=x.device
            )
            # Layer 0 owns the table (every layer holds the same module).
            owner = cast(EncoderLayer, self.layers[0]).self_attn
            position_bias = owner.relative_attention_bias(buckets).permute(2, 0, 1)
        for layer in self.layers:
            x = layer(x, position_bias, key_padding_mask)
        return x
