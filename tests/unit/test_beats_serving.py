"""The ``beats`` model of the inference registry: AudioSet fine-tuned checkpoints and 9-class head files."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from services.inference.audioset_map import AudioSetClassMap
from services.inference.models.beats import (
    BEATsHeadModel,
    ClassHead,
    backbone_from_official,
    load_beats,
    load_head_file,
    official_dict,
    save_head_file,
)
from services.inference.models.beats.head import head_file_dict
from services.inference.models.base import Classifier, ModelLoadError
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK
from shared.features.stream import clip_windows
from shared.taxonomy import NUM_CLASSES
from tests.beats_support import AUDIOSET_LABELS_CSV, tiny_beats, tone, write_tiny_checkpoint

CPU = torch.device("cpu")


def load(path: Path | None) -> Classifier:
    return default_registry().get("beats").load(InferenceSettings(beats_checkpoint=path), CPU)


@pytest.fixture(scope="module")
def clips() -> np.ndarray:
    """Three different 2 s clips at 16 kHz, [3, 32000]."""
    return np.stack([tone(2.0, f, noise=0.05, seed=i) for i, f in enumerate((300.0, 1200.0, 3500.0))])


def windows_of(clips: np.ndarray) -> torch.Tensor:
    """What the gateway sends for each clip: its first (only) 2 s window, [B, 198, 128]."""
    hop = BEATS_FBANK.frames_for(0.5)
    return torch.stack([clip_windows(BEATS_FBANK, clip, hop)[0] for clip in clips])


def test_beats_is_registered_on_the_beats_filterbank() -> None:
    assert default_registry().get("beats").spec == BEATS_FBANK


def test_audioset_checkpoint_scores_are_the_map_applied_to_beats_probabilities(
    tmp_path: Path, clips: np.ndarray
) -> None:
    path = write_tiny_checkpoint(tmp_path / "as2m.pt", finetuned=True)
    prediction = load(path).predict(windows_of(clips))

    model = load_beats(path)
    probs, _ = model.extract_features(torch.from_numpy(clips))
    expected = AudioSetClassMap.from_label_dict(model.label_dict or {})(probs)
    assert prediction.scores.shape == (3, NUM_CLASSES)
    assert prediction.scores.dtype == torch.float32
    # The probabilities go to the map as they are (a second sigmoid would break this).
    torch.testing.assert_close(prediction.scores, expected, atol=1e-5, rtol=0)
    assert prediction.tags is not None
    torch.testing.assert_close(prediction.tags, probs, atol=1e-5, rtol=0)
    assert not torch.allclose(prediction.scores[0], prediction.scores[1])


def test_tags_are_display_names_when_a_label_list_sits_beside_the_checkpoint(tmp_path: Path) -> None:
    path = write_tiny_checkpoint(tmp_path / "as2m.pt", finetuned=True)
    assert load(path).tag_labels[:2] == ("/m/09x0r", "/m/05zppz")  # type: ignore[index]
    shutil.copy(AUDIOSET_LABELS_CSV, tmp_path / "class_labels_indices.csv")
    labels = load(path).tag_labels
    assert labels is not None and len(labels) == 527
    assert labels[:2] == ("Speech", "Male speech, man speaking")


def test_head_file_loads_and_predicts_its_softmax(tmp_path: Path, clips: np.ndarray) -> None:
    torch.manual_seed(0)
    model = BEATsHeadModel(tiny_beats(finetuned=False), ClassHead(64)).eval()
    path = tmp_path / "head.pt"
    save_head_file(model, path, metrics={"macro_f1": 0.5}, training={"epochs_run": 3})
    windows = windows_of(clips)

    classifier = load(path)
    prediction = classifier.predict(windows)
    assert classifier.tag_labels is None and prediction.tags is None
    assert prediction.scores.shape == (3, NUM_CLASSES)
    with torch.inference_mode():
        expected = torch.softmax(model(windows), dim=-1)
    torch.testing.assert_close(prediction.scores, expected, atol=1e-6, rtol=0)
    torch.testing.assert_close(prediction.scores.sum(dim=1), torch.ones(3))

    loaded, metadata = load_head_file(path)
    assert metadata["metrics"] == {"macro_f1": 0.5} and metadata["training"] == {"epochs_run": 3}
    assert metadata["feature_spec"] == BEATS_FBANK.to_dict()
    assert loaded.backbone.cfg == model.backbone.cfg


def test_backbone_of_a_finetuned_checkpoint_drops_the_audioset_head(tmp_path: Path) -> None:
    finetuned = tiny_beats(finetuned=True)
    backbone = backbone_from_official(official_dict(finetuned), source="test")
    assert backbone.predictor is None and backbone.label_dict is None
    assert not backbone.cfg.finetuned_model
    shared = {k: v for k, v in finetuned.state_dict().items() if not k.startswith("predictor.")}
    assert all(torch.equal(v, shared[k]) for k, v in backbone.state_dict().items())


def test_missing_checkpoint_setting_or_file_names_the_setting(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="HEARO_INFERENCE_BEATS_CHECKPOINT"):
        load(None)
    with pytest.raises(ModelLoadError, match="HEARO_INFERENCE_BEATS_CHECKPOINT") as info:
        load(tmp_path / "absent.pt")
    assert str(tmp_path / "absent.pt") in str(info.value)


def test_unservable_files_are_refused_with_a_load_error(tmp_path: Path) -> None:
    pretrained = write_tiny_checkpoint(tmp_path / "pretrained.pt", finetuned=False)
    with pytest.raises(ModelLoadError, match="pre-trained BEATs checkpoint has no classifier"):
        load(pretrained)

    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelLoadError, match="cannot read a BEATs checkpoint"):
        load(garbage)

    no_labels = tmp_path / "no_labels.pt"
    torch.save(official_dict(tiny_beats(finetuned=True)), no_labels)
    with pytest.raises(ModelLoadError, match="label_dict"):
        load(no_labels)

    head = head_file_dict(BEATsHeadModel(tiny_beats(finetuned=False), ClassHead(64)), metrics={}, training={})
    other_classes = tmp_path / "other_classes.pt"
    torch.save({**head, "class_keys": ["normal", "fire"]}, other_classes)
    with pytest.raises(ModelLoadError, match="trained for classes"):
        load(other_classes)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_bf16_scores_stay_within_the_documented_tolerance(tmp_path: Path, clips: np.ndarray) -> None:
    """docs/beats.md: bf16 autocast + fused attention within 2e-2 of the fp32 CPU scores."""
    windows = windows_of(clips)
    torch.manual_seed(0)
    head = tmp_path / "head.pt"
    save_head_file(BEATsHeadModel(tiny_beats(finetuned=False), ClassHead(64)), head, metrics={}, training={})
    for path in (write_tiny_checkpoint(tmp_path / "as2m.pt", finetuned=True), head):
        settings = InferenceSettings(beats_checkpoint=path)
        cpu = default_registry().get("beats").load(settings, CPU).predict(windows)
        cuda = default_registry().get("beats").load(settings, torch.device("cuda")).predict(windows)
        assert cuda.scores.device.type == "cpu" and cuda.scores.dtype == torch.float32
        assert (cuda.scores - cpu.scores).abs().max() < 2e-2
