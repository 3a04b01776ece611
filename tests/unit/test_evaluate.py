"""hearo eval: metrics on a hand-made confusion case, the streaming decision, the end-to-end report."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from hearo.evaluate import evaluate, read_eval_manifest
from services.inference.settings import DEFAULT_WEIGHTS
from services.inference.training.metrics import detection_metrics
from shared.detector import DetectorConfig, clip_decision
from shared.taxonomy import NUM_CLASSES


def test_metrics_on_a_hand_made_confusion_case() -> None:
    # normal x4: 3 right, 1 called fire (a false alarm); fire x3: 2 right, 1 missed;
    # help x3: 1 right, 1 called crime (still an emergency), 1 missed.
    targets = torch.tensor([0, 0, 0, 0, 5, 5, 5, 8, 8, 8])
    predictions = torch.tensor([0, 0, 0, 5, 5, 5, 0, 8, 1, 0])
    m = detection_metrics(targets, predictions)
    assert m["clips"] == 10
    assert m["false_alarm_rate"] == pytest.approx(1 / 4)
    assert m["emergency_recall"] == pytest.approx(4 / 6)
    fire = m["per_class"]["fire"]
    assert (fire["precision"], fire["recall"]) == pytest.approx((2 / 3, 2 / 3))
    normal = m["per_class"]["normal"]
    assert (normal["precision"], normal["recall"]) == pytest.approx((3 / 5, 3 / 4))
    help_ = m["per_class"]["help"]
    assert (help_["precision"], help_["recall"], help_["f1"]) == pytest.approx((1.0, 1 / 3, 0.5))
    # macro over the classes present (normal, fire, help); crime has support 0 and is left out.
    f1_normal = 2 * 0.6 * 0.75 / 1.35
    assert m["macro_f1"] == pytest.approx((f1_normal + 2 / 3 + 0.5) / 3)
    assert m["confusion"][8][1] == 1 and m["confusion"][0][5] == 1


def test_clip_decision_follows_the_detector_smoothing() -> None:
    config = DetectorConfig.build(0.5, smoothing_windows=3)
    scores = np.full((6, NUM_CLASSES), 0.01)
    scores[2, 5] = 0.9  # one loud window: its mean over three stays under 0.5
    assert clip_decision(scores, config) == (0, 0.0)
    scores[3, 5] = 0.9
    class_id, confidence = clip_decision(scores, config)
    assert class_id == 5 and confidence == pytest.approx((0.01 + 0.9 + 0.9) / 3)


def test_manifest_rows_are_relative_to_the_csv(tmp_path: Path) -> None:
    (tmp_path / "m.csv").write_text("file,class_id,note\na/x.wav,5,ignored\n")
    assert read_eval_manifest(tmp_path / "m.csv") == [(tmp_path / "a/x.wav", 5)]
    (tmp_path / "bad.csv").write_text("file,class_id\nx.wav,9\n")
    with pytest.raises(ValueError, match="bad.csv:2"):
        read_eval_manifest(tmp_path / "bad.csv")


@pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default model yet")
def test_evaluate_writes_json_and_png_for_short_clips(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "quiet.wav"), (0.001 * rng.standard_normal(8_000)).astype(np.float32), 16_000)
    sf.write(str(tmp_path / "noise.wav"), (0.01 * rng.standard_normal(44_100)).astype(np.float32), 44_100)
    (tmp_path / "m.csv").write_text("file,class_id\nquiet.wav,0\nnoise.wav,0\n")
    report = evaluate(tmp_path / "m.csv", "default", json_out=tmp_path / "r.json")
    data = json.loads((tmp_path / "r.json").read_text())
    assert data["clips"] == 2 and len(data["confusion"]) == NUM_CLASSES
    assert {"macro_f1", "emergency_recall", "false_alarm_rate", "per_class", "thresholds"} <= set(data)
    assert report.metrics["clips"] == 2
    assert (tmp_path / "r.png").stat().st_size > 1000
