"""BEATs numerics against a naive re-derivation written from the spec (shared/specs/beats.md §9).

The reference code cannot run here, so ``naive_*`` below re-derives the model literally from
the spec: per clip, per layer and per head, formulas written out (patch sums, weight norm per
tap, the ``q / sqrt(d) / 32 - rowmax, * 32`` scores, the gate, the even-chunk mask reduction),
reading only the official-format state dict that ``save_official`` wrote. It shares no code
with the implementation except the filterbank, which both take as input.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from services.inference.models.beats import (
    BEATs,
    BEATsConfig,
    load_beats,
    reduce_padding_mask,
    relative_position_buckets,
    save_official,
)
from shared.features.kaldi_fbank import beats_fbank
from tests.beats_support import TINY
from tests.kaldi_oracle import PARITY_KINDS, parity_signal, reference_beats_fbank

SECONDS_TO_TOKENS = {1: 48, 2: 96, 10: 496}

# --------------------------------------------------------------------------- naive reference


def naive_bucket(rel: int, num_buckets: int = 320, max_distance: int = 800) -> int:
    half = num_buckets // 2
    exact = half // 2
    offset = half if rel > 0 else 0
    a = abs(rel)
    if a < exact:
        return offset + a
    return offset + min(half - 1, exact + int(math.log(a / exact) / math.log(max_distance / exact) * (half - exact)))


def naive_bucket_table(size: int, num_buckets: int = 320, max_distance: int = 800) -> torch.Tensor:
    by_rel = torch.tensor([naive_bucket(r, num_buckets, max_distance) for r in range(-(size - 1), size)])
    i = torch.arange(size)
    return by_rel[(i[None, :] - i[:, None]) + size - 1]


def naive_reduce(row: list[bool], length: int) -> list[bool]:
    chunk = len(row) // length
    return [all(row[i * chunk : (i + 1) * chunk]) for i in range(length)]


def naive_gelu(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * x * (1.0 + torch.erf(x / math.sqrt(2.0)))


def naive_layer_norm(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    mean = x.mean(-1, keepdim=True)
    var = ((x - mean) ** 2).mean(-1, keepdim=True)
    return (x - mean) / torch.sqrt(var + 1e-5) * sd[name + ".weight"] + sd[name + ".bias"]


def naive_linear(x: torch.Tensor, sd: dict[str, torch.Tensor], name: str) -> torch.Tensor:
    return x @ sd[name + ".weight"].T + sd[name + ".bias"]


def naive_patches(fbank: torch.Tensor, sd: dict[str, torch.Tensor], patch: int) -> torch.Tensor:
    weight = sd["patch_embedding.weight"][:, 0]  # [E, time, freq]
    rows = []
    for t in range(fbank.shape[0] // patch):
        for f in range(fbank.shape[1] // patch):
            block = fbank[t * patch : (t + 1) * patch, f * patch : (f + 1) * patch]
            rows.append((weight * block).sum(dim=(1, 2)))
    tokens = torch.stack(rows)
    return tokens + sd["patch_embedding.bias"] if "patch_embedding.bias" in sd else tokens


def naive_pos_conv(x: torch.Tensor, sd: dict[str, torch.Tensor], groups: int) -> torch.Tensor:
    """GELU(conv(x))[:P] for one clip ``[P, D]``, weight norm computed tap by tap."""
    v = sd["encoder.pos_conv.0.weight_v"]
    g = sd["encoder.pos_conv.0.weight_g"]
    kernel = v.shape[2]
    weight = torch.empty_like(v)
    for k in range(kernel):
        weight[:, :, k] = g[0, 0, k] * v[:, :, k] / torch.sqrt((v[:, :, k] ** 2).sum())
    tokens, dim = x.shape
    per_group = dim // groups
    padded = torch.zeros(tokens + 2 * (kernel // 2), dim)
    padded[kernel // 2 : kernel // 2 + tokens] = x
    out = torch.zeros(tokens, dim)  # only the first P outputs: the last one is dropped
    for grp in range(groups):
        cols = slice(grp * per_group, (grp + 1) * per_group)
        for k in range(kernel):
            out[:, cols] += padded[k : k + tokens, cols] @ weight[cols, :, k].T
    return naive_gelu(out + sd["encoder.pos_conv.0.bias"])


def naive_attention(
    x: torch.Tensor, sd: dict[str, torch.Tensor], pre: str, cfg: dict[str, Any],
    bias: torch.Tensor | None, token_mask: torch.Tensor | None,
) -> torch.Tensor:
    heads = cfg["encoder_attention_heads"]
    head_dim = x.shape[1] // heads
    q = naive_linear(x, sd, pre + "q_proj")
    k = naive_linear(x, sd, pre + "k_proj")
    v = naive_linear(x, sd, pre + "v_proj")
    outs = []
    for h in range(heads):
        cols = slice(h * head_dim, (h + 1) * head_dim)
        qh, kh, vh = q[:, cols], k[:, cols], v[:, cols]
        scores = (qh * head_dim**-0.5 * (1 / 32)) @ kh.T
        scores = (scores - scores.max(dim=-1, keepdim=True).values) * 32
        if token_mask is not None:
            scores[:, token_mask] = float("-inf")
        if bias is not None:
            if cfg["gru_rel_pos"]:
                lin = qh @ sd[pre + "grep_linear.weight"].T + sd[pre + "grep_linear.bias"]
                ga = torch.sigmoid(lin[:, :4].sum(-1))
                gb = torch.sigmoid(lin[:, 4:].sum(-1))
                gate = ga * (gb * sd[pre + "grep_a"][0, h, 0, 0] - 1.0) + 2.0
                scores = scores + gate[:, None] * bias[h]
            else:
                scores = scores + bias[h]
        e = torch.exp(scores - scores.max(dim=-1, keepdim=True).values)
        outs.append((e / e.sum(-1, keepdim=True)) @ vh)
    return naive_linear(torch.cat(outs, dim=1), sd, pre + "out_proj")


def naive_layer(
    x: torch.Tensor, sd: dict[str, torch.Tensor], layer: int, cfg: dict[str, Any],
    bias: torch.Tensor | None, token_mask: torch.Tensor | None,
) -> torch.Tensor:
    pre = f"encoder.layers.{layer}."
    alpha = (2 * cfg["encoder_layers"]) ** 0.25 if cfg["deep_norm"] else 1.0
    attn = naive_attention(x, sd, pre + "self_attn.", cfg, bias, token_mask)
    x = naive_layer_norm(alpha * x + attn, sd, pre + "self_attn_layer_norm")
    ffn = naive_linear(naive_gelu(naive_linear(x, sd, pre + "fc1")), sd, pre + "fc2")
    return naive_layer_norm(alpha * x + ffn, sd, pre + "final_layer_norm")


def naive_encoder(
    fbank: torch.Tensor, sd: dict[str, torch.Tensor], cfg: dict[str, Any], token_mask: torch.Tensor | None
) -> torch.Tensor:
    """One clip ``[T, 128]`` -> ``[P, D]``."""
    x = naive_layer_norm(naive_patches(fbank, sd, cfg["input_patch_size"]), sd, "layer_norm")
    if "post_extract_proj.weight" in sd:
        x = naive_linear(x, sd, "post_extract_proj")
    if token_mask is not None:
        x = x.clone()
        x[token_mask] = 0.0
    x = naive_layer_norm(x + naive_pos_conv(x, sd, cfg["conv_pos_groups"]), sd, "encoder.layer_norm")
    bias = None
    if cfg["relative_position_embedding"]:
        table = sd["encoder.layers.0.self_attn.relative_attention_bias.weight"]
        bias = table[naive_bucket_table(x.shape[0], cfg["num_buckets"], cfg["max_distance"])].permute(2, 0, 1)
    for layer in range(cfg["encoder_layers"]):
        x = naive_layer(x, sd, layer, cfg, bias, token_mask)
    return x


def naive_beats(
    checkpoint: dict[str, Any], fbank: torch.Tensor, frame_mask: torch.Tensor | None = None
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """The reference pair for a batch ``[B, T, 128]``, clip by clip."""
    sd, cfg = checkpoint["model"], checkpoint["cfg"]
    patch = cfg["input_patch_size"]
    tokens = (fbank.shape[1] // patch) * (128 // patch)
    token_mask = None
    if frame_mask is not None:
        token_mask = torch.tensor([naive_reduce(row.tolist(), tokens) for row in frame_mask])
    outs = [
        naive_encoder(fbank[b], sd, cfg, None if token_mask is None else token_mask[b])
        for b in range(fbank.shape[0])
    ]
    if not cfg["finetuned_model"]:
        return torch.stack(outs), token_mask
    pooled = []
    for b, x in enumerate(outs):
        logits = naive_linear(x, sd, "predictor")
        if token_mask is not None and bool(token_mask.any()):
            keep = ~token_mask[b]
            pooled.append(logits[keep].sum(0) / keep.sum())
        else:
            pooled.append(logits.mean(0))
    return torch.sigmoid(torch.stack(pooled)), token_mask


# --------------------------------------------------------------------------- fixtures


def perturbed(cfg: BEATsConfig, seed: int) -> BEATs:
    """A random model with every parameter moved off its init (biases, LayerNorms, grep_a, table)."""
    torch.manual_seed(seed)
    model = BEATs(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.3 * (p.abs().mean() + 0.1))
    return model.eval()


def waves(seconds: float, batch: int = 3, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    n = int(seconds * 16_000)
    t = torch.arange(n) / 16_000
    freqs = 200 + 3000 * torch.rand(batch, 3, 1, generator=gen)
    tones = torch.sin(2 * math.pi * freqs * t).sum(1) * 0.1
    return (tones + 0.05 * torch.randn(batch, n, generator=gen)).clamp(-1, 1)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("beats")
    paths = {}
    for kind, finetuned in (("finetuned", True), ("pretrained", False)):
        cfg = BEATsConfig.from_dict({**TINY, "finetuned_model": finetuned})
        paths[kind] = folder / f"{kind}.pt"
        save_official(perturbed(cfg, seed=1), paths[kind], label_dict={i: f"/m/{i}" for i in range(527)} if finetuned else None)
    return paths


def official(path: Path) -> dict[str, Any]:
    return torch.load(path, weights_only=True)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("size", [1, 48, 96, 496, 2000])
def test_bucket_table_equals_formula(size: int) -> None:
    assert torch.equal(relative_position_buckets(size, 320, 800), naive_bucket_table(size))


def test_bucket_spot_values() -> None:
    table = relative_position_buckets(2000, 320, 800)
    by_rel = {rel: int(table[0, rel]) if rel >= 0 else int(table[-rel, 0]) for rel in (1, -1, 80, -80, 100, 400)}
    assert by_rel == {1: 161, -1: 1, 80: 240, -80: 80, 100: 247, 400: 295}
    first_last = int((table[0] == 319).nonzero()[0])
    assert first_last == 778


def test_reduce_padding_mask_even_chunks() -> None:
    mask = torch.zeros(2, 32_000, dtype=torch.bool)
    mask[1, 20_000:] = True
    frames = reduce_padding_mask(mask, 198)  # chunks of 161 samples, last 122 ignored
    assert frames.tolist() == [naive_reduce(row, 198) for row in mask.tolist()]
    tokens = reduce_padding_mask(frames, 96)
    assert tokens[0].sum() == 0
    assert tokens[1].nonzero().flatten().tolist() == list(range(63, 96))


@pytest.mark.parametrize("kind", ["pos_conv", "attention", "layer"])
def test_submodule_parity(checkpoints: dict[str, Path], kind: str) -> None:
    checkpoint = official(checkpoints["pretrained"])
    sd, cfg = checkpoint["model"], checkpoint["cfg"]
    model = load_beats(checkpoints["pretrained"])
    x = torch.randn(2, 96, 64)
    mask = torch.zeros(2, 96, dtype=torch.bool)
    mask[1, 70:] = True
    bias = sd["encoder.layers.0.self_attn.relative_attention_bias.weight"][naive_bucket_table(96)].permute(2, 0, 1)
    layer = model.encoder.layers[1]
    with torch.no_grad():
        if kind == "pos_conv":
            ours = model.encoder.pos_conv(x.transpose(1, 2)).transpose(1, 2)
            ref = torch.stack([naive_pos_conv(x[b], sd, cfg["conv_pos_groups"]) for b in range(2)])
        elif kind == "attention":
            ours = layer.self_attn(x, bias, mask)
            ref = torch.stack([naive_attention(x[b], sd, "encoder.layers.1.self_attn.", cfg, bias, mask[b]) for b in range(2)])
        else:
            ours = layer(x, bias, mask)
            ref = torch.stack([naive_layer(x[b], sd, 1, cfg, bias, mask[b]) for b in range(2)])
    assert (ours - ref).abs().max() < 1e-5


@pytest.mark.parametrize("seconds", [1, 2, 10])
def test_encoder_output_matches_reference(checkpoints: dict[str, Path], seconds: int) -> None:
    model = load_beats(checkpoints["pretrained"])
    wave = waves(seconds)
    with torch.no_grad():
        features, mask = model.extract_features(wave)
    ref, _ = naive_beats(official(checkpoints["pretrained"]), beats_fbank(wave))
    assert mask is None
    assert features.shape == (3, SECONDS_TO_TOKENS[seconds], 64)
    assert (features - ref).abs().max() < 1e-4


@pytest.mark.parametrize("seconds", [1, 2, 10])
def test_probabilities_match_reference(checkpoints: dict[str, Path], seconds: int) -> None:
    model = load_beats(checkpoints["finetuned"])
    wave = waves(seconds, seed=seconds)
    with torch.no_grad():
        probs, mask = model.extract_features(wave)
    ref, _ = naive_beats(official(checkpoints["finetuned"]), beats_fbank(wave))
    assert mask is None
    assert probs.shape == (3, 527)
    assert (probs - ref).abs().max() < 1e-5


@pytest.mark.parametrize(("kind", "tolerance"), [("pretrained", 1e-4), ("finetuned", 1e-5)])
def test_outputs_through_the_reference_fbank(checkpoints: dict[str, Path], kind: str, tolerance: float) -> None:
    """Our fbank in the model gives what torchaudio's (BEATs' own, clip by clip) gives, on the review's inputs."""
    model = load_beats(checkpoints[kind])
    wave = torch.from_numpy(np.stack([parity_signal(signal, 2) for signal in PARITY_KINDS]))
    with torch.no_grad():
        ours, _ = model.extract_features(wave)
        reference, _ = model.extract_features_from_fbank(reference_beats_fbank(wave))
    assert ours.shape == ((4, 96, 64) if kind == "pretrained" else (4, 527))
    # Measured 0.0: the filterbanks are bit-identical.
    assert (ours - reference).abs().max().item() <= tolerance


def test_mixed_batch_padding_matches_reference_and_single_runs(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["finetuned"])
    wave = waves(2)
    mask = torch.zeros(3, 32_000, dtype=torch.bool)
    mask[1, 20_000:] = True
    mask[2, 9_000:] = True
    with torch.no_grad():
        probs, token_mask = model.extract_features(wave, mask)
        singles = [model.extract_features(wave[b : b + 1], mask[b : b + 1])[0] for b in range(3)]
    frame_mask = torch.tensor([naive_reduce(row, 198) for row in mask.tolist()])
    ref, ref_mask = naive_beats(official(checkpoints["finetuned"]), beats_fbank(wave), frame_mask)
    assert token_mask is not None and ref_mask is not None
    assert torch.equal(token_mask, ref_mask)
    assert token_mask[1].nonzero().flatten().tolist() == list(range(63, 96))
    assert (probs - ref).abs().max() < 1e-5
    assert (probs - torch.cat(singles)).abs().max() < 1e-5


def test_pretrained_padding_matches_reference(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["pretrained"])
    fbank = beats_fbank(waves(2))
    frame_mask = torch.zeros(3, 198, dtype=torch.bool)
    frame_mask[0, 150:] = True
    with torch.no_grad():
        features, token_mask = model.extract_features_from_fbank(fbank, frame_mask)
    ref, ref_mask = naive_beats(official(checkpoints["pretrained"]), fbank, frame_mask)
    assert token_mask is not None and ref_mask is not None
    assert torch.equal(token_mask, ref_mask)
    assert (features - ref).abs().max() < 1e-4


def test_all_false_mask_equals_none(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["finetuned"])
    wave = waves(2)
    with torch.no_grad():
        plain, none_mask = model.extract_features(wave)
        masked, token_mask = model.extract_features(wave, torch.zeros_like(wave, dtype=torch.bool))
    assert none_mask is None
    assert token_mask is not None and not token_mask.any() and token_mask.shape == (3, 96)
    assert torch.equal(plain, masked)


def test_fully_padded_clip_gives_nan_like_the_reference(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["pretrained"])
    fbank = beats_fbank(waves(1))
    frame_mask = torch.zeros(3, 98, dtype=torch.bool)
    frame_mask[2] = True
    with torch.no_grad():
        features, _ = model.extract_features_from_fbank(fbank, frame_mask)
        alone, _ = model.extract_features_from_fbank(fbank[:2])
    assert features[2].isnan().all()
    assert (features[:2] - alone).abs().max() < 1e-5


def test_waveform_and_fbank_entry_points_agree(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["finetuned"])
    wave = waves(2)
    mask = torch.zeros(3, 32_000, dtype=torch.bool)
    mask[0, 25_000:] = True
    with torch.no_grad():
        from_wave = model.extract_features(wave, mask)
        from_fbank = model.extract_features_from_fbank(beats_fbank(wave), reduce_padding_mask(mask, 198))
    assert from_wave[1] is not None and from_fbank[1] is not None
    assert torch.equal(from_wave[0], from_fbank[0])
    assert torch.equal(from_wave[1], from_fbank[1])


def test_shortest_input_and_too_short_inputs(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["pretrained"])
    with torch.no_grad():
        features, _ = model.extract_features(waves(2800 / 16_000, batch=1))
    assert features.shape == (1, 8, 64)
    for samples in (2799, 400, 100):
        with pytest.raises(ValueError, match="at least 2800 samples"):
            model.extract_features(torch.zeros(1, samples))
    with pytest.raises(ValueError, match="at least 16 filterbank frames"):
        model.extract_features_from_fbank(torch.zeros(1, 15, 128))
    with pytest.raises(ValueError, match=r"\[B, T, 128\]"):
        model.extract_features_from_fbank(torch.zeros(1, 128, 198))


def test_silence_is_finite(checkpoints: dict[str, Path]) -> None:
    model = load_beats(checkpoints["finetuned"])
    with torch.no_grad():
        probs, _ = model.extract_features(torch.zeros(2, 32_000))
    assert torch.isfinite(probs).all()
    assert torch.equal(probs[0], probs[1])


@pytest.mark.parametrize(
    "changes",
    [
        {"gru_rel_pos": False},
        {"relative_position_embedding": False, "gru_rel_pos": False},
        {"embed_dim": 64, "conv_bias": True, "deep_norm": False},
    ],
)
def test_architecture_variants_match_reference(tmp_path: Path, changes: dict[str, Any]) -> None:
    path = tmp_path / "variant.pt"
    cfg = BEATsConfig.from_dict({**TINY, "finetuned_model": True, **changes})
    save_official(perturbed(cfg, seed=2), path)
    fbank = beats_fbank(waves(2, batch=2))
    frame_mask = torch.zeros(2, 198, dtype=torch.bool)
    frame_mask[1, 120:] = True
    with torch.no_grad():
        probs, _ = load_beats(path).extract_features_from_fbank(fbank, frame_mask)
    ref, _ = naive_beats(official(path), fbank, frame_mask)
    assert (probs - ref).abs().max() < 1e-5


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_and_fp32_match_cpu(checkpoints: dict[str, Path]) -> None:
    """§9.9: bf16 autocast + fused attention within 2e-2 of fp32; CUDA fp32 (no TF32) within 1e-4."""
    model = load_beats(checkpoints["finetuned"])
    fbank = beats_fbank(waves(2))
    frame_mask = torch.zeros(3, 198, dtype=torch.bool)
    frame_mask[1, 100:] = True
    with torch.no_grad():
        cpu, cpu_mask = model.extract_features_from_fbank(fbank, frame_mask)
        model.cuda()
        bf16, cuda_mask = model.extract_features_from_fbank(fbank.cuda(), frame_mask.cuda())
        model.autocast_dtype = None
        fp32, _ = model.extract_features_from_fbank(fbank.cuda(), frame_mask.cuda())
    assert cpu_mask is not None and cuda_mask is not None
    assert torch.equal(cuda_mask.cpu(), cpu_mask)
    assert bf16.dtype == torch.float32
    assert (bf16.cpu() - cpu).abs().max() < 2e-2
    assert (fp32.cpu() - cpu).abs().max() < 1e-4


@pytest.mark.slow
def test_full_size_matches_reference_on_a_padded_batch() -> None:
    """The released size (12 x 768, heads of 64, alpha 24 ** 0.25), 2 s windows, one padded."""
    model = perturbed(BEATsConfig.iter3_plus(finetuned=True), seed=3)
    checkpoint = {"model": model.state_dict(), "cfg": model.cfg.to_dict()}
    fbank = beats_fbank(waves(2, batch=2))
    frame_mask = torch.zeros(2, 198, dtype=torch.bool)
    frame_mask[1, 120:] = True
    with torch.no_grad():
        probs, _ = model.extract_features_from_fbank(fbank, frame_mask)
    ref, _ = naive_beats(checkpoint, fbank, frame_mask)
    assert (probs - ref).abs().max() < 1e-5
