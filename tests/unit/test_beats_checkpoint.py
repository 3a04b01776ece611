"""BEATs official checkpoint format: key set, parameter counts, strict loading, saving."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from services.inference.models.beats import BEATs, BEATsConfig, load_beats, save_official
from shared.features.spec import BEATS_FBANK

TINY = BEATsConfig.from_dict(
    dict(
        input_patch_size=16, embed_dim=32, encoder_layers=2, encoder_embed_dim=64,
        encoder_ffn_embed_dim=128, encoder_attention_heads=4, conv_pos=16, conv_pos_groups=4,
        deep_norm=True, relative_position_embedding=True, max_distance=800, gru_rel_pos=True,
        finetuned_model=True,
    )
)
LABELS = {i: f"/m/{i:05d}" for i in range(527)}
BIAS_KEY = "encoder.layers.{}.self_attn.relative_attention_bias.weight"


def spec_keys(finetuned: bool) -> dict[str, tuple[int, ...]]:
    """The released BEATs state_dict, key by key, as shared/specs/beats.md §6 lists it."""
    keys: dict[str, tuple[int, ...]] = {
        "patch_embedding.weight": (512, 1, 16, 16),
        "layer_norm.weight": (512,),
        "layer_norm.bias": (512,),
        "post_extract_proj.weight": (768, 512),
        "post_extract_proj.bias": (768,),
        "encoder.pos_conv.0.weight_g": (1, 1, 128),
        "encoder.pos_conv.0.weight_v": (768, 48, 128),
        "encoder.pos_conv.0.bias": (768,),
        "encoder.layer_norm.weight": (768,),
        "encoder.layer_norm.bias": (768,),
    }
    if finetuned:
        keys |= {"predictor.weight": (527, 768), "predictor.bias": (527,)}
    for i in range(12):
        pre = f"encoder.layers.{i}."
        for proj in ("q", "k", "v", "out"):
            keys[f"{pre}self_attn.{proj}_proj.weight"] = (768, 768)
            keys[f"{pre}self_attn.{proj}_proj.bias"] = (768,)
        keys |= {
            f"{pre}self_attn.grep_linear.weight": (8, 64),
            f"{pre}self_attn.grep_linear.bias": (8,),
            f"{pre}self_attn.grep_a": (1, 12, 1, 1),
            f"{pre}self_attn.relative_attention_bias.weight": (320, 12),
            f"{pre}self_attn_layer_norm.weight": (768,),
            f"{pre}self_attn_layer_norm.bias": (768,),
            f"{pre}fc1.weight": (3072, 768),
            f"{pre}fc1.bias": (3072,),
            f"{pre}fc2.weight": (768, 3072),
            f"{pre}fc2.bias": (768,),
            f"{pre}final_layer_norm.weight": (768,),
            f"{pre}final_layer_norm.bias": (768,),
        }
    return keys


@pytest.mark.parametrize(("finetuned", "n_keys", "n_params"), [(True, 252, 90_717_055), (False, 250, 90_311_792)])
def test_full_size_key_set_and_parameter_count(finetuned: bool, n_keys: int, n_params: int) -> None:
    with torch.device("meta"):  # shapes only: nothing allocated, nothing run
        model = BEATs(BEATsConfig.iter3_plus(finetuned=finetuned))
    state = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert len(state) == n_keys
    assert state == spec_keys(finetuned)
    assert sum(p.numel() for p in model.parameters()) == n_params


def random_model(cfg: BEATsConfig = TINY, seed: int = 0) -> BEATs:
    torch.manual_seed(seed)
    model = BEATs(cfg)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.1)
    return model.eval()


def test_save_official_writes_the_official_layout(tmp_path: Path) -> None:
    path = tmp_path / "beats.pt"
    save_official(random_model(), path, label_dict=LABELS)
    checkpoint = torch.load(path, weights_only=True)
    assert set(checkpoint) == {"cfg", "model", "label_dict"}
    assert checkpoint["cfg"] == TINY.to_dict()
    assert checkpoint["label_dict"] == LABELS
    state = checkpoint["model"]
    assert {"encoder.pos_conv.0.weight_g", "encoder.pos_conv.0.weight_v"} <= state.keys()
    assert not any("parametrizations" in k for k in state)
    assert all(BIAS_KEY.format(i) in state for i in range(TINY.encoder_layers))
    assert all(v.dtype == torch.float32 for v in state.values())


def test_round_trip_is_exact_and_eval(tmp_path: Path) -> None:
    model = random_model()
    path = tmp_path / "beats.pt"
    save_official(model, path, label_dict=LABELS)
    loaded = load_beats(path)
    assert not loaded.training
    assert loaded.cfg == TINY
    assert loaded.label_dict == LABELS
    assert loaded.FEATURE_SPEC is BEATS_FBANK
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded.state_dict().items(), strict=True):
        assert torch.equal(a, b), name
    fbank = torch.randn(2, 198, 128)
    with torch.no_grad():
        assert torch.equal(model.extract_features_from_fbank(fbank)[0], loaded.extract_features_from_fbank(fbank)[0])


def test_pretrained_file_has_no_labels(tmp_path: Path) -> None:
    path = tmp_path / "pre.pt"
    save_official(random_model(replace(TINY, finetuned_model=False)), path)
    assert "label_dict" not in torch.load(path, weights_only=True)
    loaded = load_beats(path)
    assert loaded.label_dict is None and loaded.predictor is None


def rewrite(path: Path, edit: Any) -> Path:
    checkpoint = torch.load(path, weights_only=True)
    edit(checkpoint)
    out = path.with_name("edited.pt")
    torch.save(checkpoint, out)
    return out


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    path = tmp_path / "beats.pt"
    save_official(random_model(), path, label_dict=LABELS)
    return path


def test_independent_equal_bias_copies_load(saved: Path) -> None:
    def clone_copies(ckpt: dict[str, Any]) -> None:
        for i in range(TINY.encoder_layers):
            ckpt["model"][BIAS_KEY.format(i)] = ckpt["model"][BIAS_KEY.format(i)].clone()

    loaded = load_beats(rewrite(saved, clone_copies))
    assert loaded.encoder.layers[1].self_attn.relative_attention_bias is loaded.encoder.layers[0].self_attn.relative_attention_bias


def test_differing_bias_copies_are_refused(saved: Path) -> None:
    def differ(ckpt: dict[str, Any]) -> None:
        ckpt["model"][BIAS_KEY.format(1)] = ckpt["model"][BIAS_KEY.format(1)] + 1.0

    with pytest.raises(ValueError, match=r"relative-position table differs .*layers \[1\]"):
        load_beats(rewrite(saved, differ))


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda c: c["model"].pop("encoder.pos_conv.0.weight_g"), "missing keys"),
        (lambda c: c["model"].pop(BIAS_KEY.format(1)), "missing keys"),
        (lambda c: c["model"].__setitem__("encoder.extra.weight", torch.zeros(1)), "unexpected keys"),
        (lambda c: c["model"].__setitem__("predictor.bias", torch.zeros(10)), "wrong shapes"),
        (lambda c: c["cfg"].__setitem__("finetuned_model", False), "unexpected keys .*predictor"),
    ],
)
def test_mismatched_state_dict_is_refused(saved: Path, edit: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        load_beats(rewrite(saved, edit))


def test_missing_cfg_keys_take_defaults_and_unknown_keys_are_ignored(saved: Path) -> None:
    defaults = BEATsConfig().to_dict()

    def sparse_cfg(ckpt: dict[str, Any]) -> None:
        ckpt["cfg"] = {k: v for k, v in ckpt["cfg"].items() if v != defaults[k]}
        ckpt["cfg"] |= {"some_future_option": 3, "normalize": False}

    path = rewrite(saved, sparse_cfg)
    assert "conv_bias" not in torch.load(path, weights_only=True)["cfg"]
    assert load_beats(path).cfg == TINY


def test_not_a_checkpoint_and_unsupported_cfg_are_refused(tmp_path: Path, saved: Path) -> None:
    path = tmp_path / "state_only.pt"
    torch.save(random_model().state_dict(), path)
    with pytest.raises(ValueError, match="not a BEATs checkpoint"):
        load_beats(path)
    with pytest.raises(ValueError, match="layer_norm_first"):
        load_beats(rewrite(saved, lambda c: c["cfg"].__setitem__("layer_norm_first", True)))
    with pytest.raises(ValueError, match="input_patch_size"):
        BEATs(BEATsConfig())


@pytest.mark.parametrize(
    "changes",
    [
        {"gru_rel_pos": False},
        {"relative_position_embedding": False, "gru_rel_pos": False},
        {"embed_dim": 64, "conv_bias": True},
    ],
)
def test_architecture_variants_round_trip(tmp_path: Path, changes: dict[str, Any]) -> None:
    cfg = replace(TINY, **changes)
    path = tmp_path / "variant.pt"
    save_official(random_model(cfg), path)
    state = torch.load(path, weights_only=True)["model"]
    assert ("encoder.layers.0.self_attn.grep_a" in state) == cfg.gru_rel_pos
    assert (BIAS_KEY.format(0) in state) == cfg.relative_position_embedding
    assert ("post_extract_proj.weight" in state) == (cfg.embed_dim != cfg.encoder_embed_dim)
    assert ("patch_embedding.bias" in state) == cfg.conv_bias
    with torch.no_grad():
        probs, _ = load_beats(path).extract_features_from_fbank(torch.randn(2, 98, 128))
    assert probs.shape == (2, 527) and torch.isfinite(probs).all()
