"""``run_training`` end to end on a tiny generated dataset with a tiny BEATs, and its metrics."""

from __future__ import annotations

import io
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from rich.console import Console

from services.inference.models.beats import load_beats, load_head_file
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings
from services.inference.training import TrainingConfig, classification_metrics, run_training
from services.inference.training.finetune import _class_weights
from shared.features.spec import BEATS_FBANK
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES, by_key
from tests.beats_support import tone, write_audio, write_tiny_checkpoint

CLASS_TONES = {"normal": 200.0, "fire": 1000.0, "gas": 3000.0}


def quiet() -> Console:
    return Console(file=io.StringIO(), width=120)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Three classes x three files (2.5 to 3.5 s, 16 and 22.05 kHz) and two tiny checkpoints."""
    root = tmp_path_factory.mktemp("training")
    for key, freq in CLASS_TONES.items():
        for i in range(3):
            rate = 22_050 if i % 2 else 16_000
            samples = tone(2.5 + 0.5 * i, freq * (1 + 0.05 * i), rate=rate, noise=0.05, seed=i)
            write_audio(root / "data" / key / f"{key}_{i}.wav", samples, rate)
    return {
        "root": root,
        "data": root / "data",
        "pretrained": write_tiny_checkpoint(root / "pretrained.pt", finetuned=False),
        "finetuned": write_tiny_checkpoint(root / "finetuned.pt", finetuned=True, seed=2),
    }


def serve(path: Path, windows: torch.Tensor) -> torch.Tensor:
    classifier = default_registry().get("beats").load(InferenceSettings(beats_checkpoint=path), torch.device("cpu"))
    return classifier.predict(windows).scores


@pytest.mark.slow
def test_head_training_splits_by_file_resumes_exactly_and_writes_a_served_model(dataset: dict[str, Path]) -> None:
    root = dataset["root"]
    config = TrainingConfig(
        checkpoint=dataset["pretrained"], data=dataset["data"], out=root / "full.pt",
        epochs=4, lr=0.05, batch_size=8, val_fraction=0.34, patience=10, seed=3,
    )
    run_training(config, console=quiet())
    # The same run interrupted after two epochs, then resumed.
    halves = replace(config, out=root / "halves.pt", epochs=2)
    run_training(halves, console=quiet())
    run_training(replace(halves, epochs=4, resume=True), console=quiet())

    full, full_meta = load_head_file(root / "full.pt")
    resumed, resumed_meta = load_head_file(root / "halves.pt")
    history = full_meta["training"]["history"]
    assert len(history) == 4 and resumed_meta["training"]["history"] == history
    assert history[-1]["train_loss"] < history[0]["train_loss"]
    for name, tensor in full.head.state_dict().items():
        torch.testing.assert_close(resumed.head.state_dict()[name], tensor, atol=1e-6, rtol=0)
    # Head only: the backbone is the checkpoint's, untouched.
    base = load_beats(dataset["pretrained"]).state_dict()
    assert all(torch.equal(v, base[k]) for k, v in full.backbone.state_dict().items())

    state = torch.load(root / "full.run" / "state.pt", weights_only=True)
    train, val = set(state["split"]["train"]), set(state["split"]["val"])
    assert not train & val
    assert train | val == {str(p) for p in dataset["data"].rglob("*.wav")}
    assert sorted(Path(s).parent.name for s in val) == sorted(CLASS_TONES)  # one file per class

    metrics = full_meta["metrics"]
    assert 0.0 <= metrics["macro_f1"] <= 1.0
    assert {k for k, v in metrics["per_class"].items() if v["support"]} == set(CLASS_TONES)
    assert full_meta["training"]["val_files"] == 3 and full_meta["training"]["train_files"] == 6

    windows = torch.randn(2, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)
    scores = serve(root / "full.pt", windows)
    assert scores.shape == (2, NUM_CLASSES)
    with torch.inference_mode():
        torch.testing.assert_close(scores, torch.softmax(full(windows), dim=-1), atol=1e-6, rtol=0)

    with pytest.raises(FileExistsError, match="already holds a training run"):
        run_training(config, console=quiet())
    with pytest.raises(ValueError, match="settings differ .*seed"):
        run_training(replace(config, seed=4, resume=True), console=quiet())
    with pytest.raises(FileNotFoundError, match="nothing to resume"):
        run_training(replace(config, out=root / "never.pt", resume=True), console=quiet())


@pytest.mark.slow
def test_top_layers_fine_tune_only_those_layers_from_a_finetuned_checkpoint(dataset: dict[str, Path]) -> None:
    out = dataset["root"] / "top1.pt"
    config = TrainingConfig(
        checkpoint=dataset["finetuned"], data=dataset["data"], out=out,
        epochs=1, top_layers=1, lr=0.05, batch_size=8, val_fraction=0.34,
    )
    run_training(config, console=quiet())

    model, metadata = load_head_file(out)
    assert metadata["training"]["top_layers"] == 1
    base = {k: v for k, v in load_beats(dataset["finetuned"]).state_dict().items() if not k.startswith("predictor.")}
    trained = model.backbone.state_dict()
    assert trained.keys() == base.keys()
    changed = {k for k in base if not torch.equal(trained[k], base[k])}
    top = "encoder.layers.2."
    assert changed and all(k.startswith(top) for k in changed)
    assert not any("relative_attention_bias" in k for k in changed)  # shared by the frozen layers
    assert f"{top}fc1.weight" in changed
    assert serve(out, torch.randn(1, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)).shape == (1, NUM_CLASSES)


def test_config_refuses_bad_values(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="epochs must be >= 1.*monitor must be one of"):
        TrainingConfig(checkpoint=tmp_path, data=tmp_path, out=tmp_path / "m.pt", epochs=0, monitor="acc")
    config = TrainingConfig(checkpoint=tmp_path, data=tmp_path, out=tmp_path / "m.pt")
    assert config.run_folder == tmp_path / "m.run" and config.hop_frames == 50


def test_class_weights_are_inverse_frequency_over_present_classes() -> None:
    labels = torch.tensor([0] * 6 + [5] * 3 + [8] * 1)
    weights = _class_weights(labels)
    # n / (k * n_c) with n = 10, k = 3.
    expected = torch.zeros(NUM_CLASSES)
    expected[[0, 5, 8]] = torch.tensor([10 / 18, 10 / 9, 10 / 3])
    torch.testing.assert_close(weights, expected)


def test_metrics_per_class_and_macro_f1_over_present_classes() -> None:
    fire, gas, normal = by_key("fire").id, by_key("gas").id, by_key("normal").id
    targets = torch.tensor([fire, fire, fire, gas, gas, normal])
    predictions = torch.tensor([fire, fire, gas, gas, fire, normal])
    metrics = classification_metrics(targets, predictions)
    assert metrics["accuracy"] == pytest.approx(4 / 6)
    third = 2 / 3
    assert metrics["per_class"]["fire"] == pytest.approx({"precision": third, "recall": third, "f1": third, "support": 3})
    assert metrics["per_class"]["gas"] == pytest.approx({"precision": 0.5, "recall": 0.5, "f1": 0.5, "support": 2})
    assert metrics["per_class"]["crime"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0}
    assert metrics["macro_f1"] == pytest.approx((2 / 3 + 0.5 + 1.0) / 3)
    assert metrics["confusion"][fire][gas] == 1 and len(metrics["per_class"]) == len(CLASS_KEYS)
