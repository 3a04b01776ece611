"""hearo eval: metrics on a hand-made confusion case, the streaming decision (alarm patterns
fused), the end-to-end report."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from typer.testing import CliRunner

from hearo.cli import app
from hearo.evaluate import evaluate, evaluate_household, read_eval_manifest
from services.gateway.settings import GatewaySettings
from services.inference.models.default import DefaultNet, save_default_model
from services.inference.training.calibration import THRESHOLD_GRID
from services.inference.settings import DEFAULT_WEIGHTS
from services.inference.training.metrics import detection_metrics
from shared.detector import DetectorConfig, clip_decision
from shared.taxonomy import CLASSES, NUM_CLASSES, by_key

SR = 16_000
FIRE, GAS = by_key("fire").id, by_key("gas").id


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


@dataclass(frozen=True)
class Match:
    pattern: str
    class_key: str
    confidence: float
    stream_time_s: float
    partial: bool = False


def test_clip_decision_fuses_pattern_matches_in_stream_order() -> None:
    config = DetectorConfig.build(0.5, smoothing_windows=3)
    quiet = np.full((10, NUM_CLASSES), 0.01)
    ends = [2.0 + 0.5 * i for i in range(10)]
    # The model never fires; a temporal-three match does, even one heard after the last window.
    assert clip_decision(quiet, config, ends, [Match("temporal3", "fire", 0.8, 4.2)]) == (FIRE, 0.8)
    assert clip_decision(quiet, config, ends, [Match("temporal3", "fire", 0.8, 9.0)]) == (FIRE, 0.8)
    # The model's gas (smoothed over windows 1-3, ending 3.5 s) comes before a fire pattern
    # at 3.7 s ...
    gas = quiet.copy()
    gas[2:, GAS] = 0.9
    assert clip_decision(gas, config, ends, [Match("temporal3", "fire", 0.8, 3.7)])[0] == GAS
    # ... and after one at 3.4 s, which the window ending 3.5 s observes first.
    assert clip_decision(gas, config, ends, [Match("temporal3", "fire", 0.8, 3.4)]) == (FIRE, 0.8)
    with pytest.raises(ValueError, match="end times"):
        clip_decision(quiet, config, ends[:-1])


def _temporal_three(seconds: float, hz: float = 3100.0) -> np.ndarray:
    """ISO 8201 temporal-three: 0.5 s on, 0.5 s off, three times, then 1.5 s more off."""
    t = np.arange(round(seconds * SR)) / SR
    on = (t % 4.0 < 2.5) & (t % 1.0 < 0.5)
    return (0.5 * np.sin(2 * np.pi * hz * t) * on).astype(np.float32)


def _never_firing_model(path: Path) -> Path:
    """A default-model file whose class head always says ``normal``. Its tags are all named
    "Speech" (the real model's say so over a voice), so the spoken words' gate, which takes the
    model's tags as a session does, lets a call through."""
    net = DefaultNet()
    with torch.no_grad():
        net.classes.weight.zero_()
        net.classes.bias.fill_(-20.0)
        net.classes.bias[0] = 20.0
    point = {"thresholds": {c.key: 0.5 for c in CLASSES if c.is_emergency}, "smoothing_windows": 3, "hop_s": 0.5}
    save_default_model(path, net, ("Speech",) * 527, point, metrics={}, recipe={})
    return path


def test_household_audio_counts_false_alarms_per_hour(tmp_path: Path) -> None:
    """A model that never fires gives none; the alarm patterns still fire on a real alarm in a
    household file, and each one counts."""
    household = tmp_path / "household"
    household.mkdir()
    rng = np.random.default_rng(2)
    sf.write(str(household / "quiet.wav"), (0.001 * rng.standard_normal(SR * 70)).astype(np.float32), SR)
    model = _never_firing_model(tmp_path / "never.pt")
    quiet = evaluate_household(household, model)
    assert quiet.alarms == [] and quiet.minutes == 1 and quiet.minutes_firing == 0
    assert quiet.hours == pytest.approx(70 / 3600)
    sf.write(str(household / "alarm.wav"), np.concatenate([np.zeros(SR * 5, np.float32), _temporal_three(20.0)]), SR)
    result = CliRunner().invoke(app, ["eval", "--household", str(household), "--model", str(model),
                                      "--json", str(tmp_path / "h.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "h.json").read_text())["household"]
    assert report["false_alarms"] == 1 and report["alarms"][0]["class"] == "fire"
    assert report["alarms"][0]["pattern"] == "temporal3" and report["minutes_firing"] == 0  # alarm.wav is 25 s
    assert report["false_alarms_per_hour"] == pytest.approx(3600 / 95, rel=0.01)


def test_eval_hears_the_alarm_patterns_the_model_misses(tmp_path: Path) -> None:
    sf.write(str(tmp_path / "smoke.wav"), _temporal_three(10.0), SR)
    rng = np.random.default_rng(0)
    sf.write(str(tmp_path / "quiet.wav"), (0.001 * rng.standard_normal(SR // 2)).astype(np.float32), SR)
    (tmp_path / "m.csv").write_text(f"file,class_id\nsmoke.wav,{FIRE}\nquiet.wav,0\n")
    model = _never_firing_model(tmp_path / "never.pt")

    report = evaluate(tmp_path / "m.csv", model, json_out=tmp_path / "with.json", alarm_patterns=True)
    assert report.alarm_patterns and report.metrics["confusion"][FIRE][FIRE] == 1
    assert report.metrics["confusion"][0][0] == 1

    result = CliRunner().invoke(
        app, ["eval", "--manifest", str(tmp_path / "m.csv"), "--model", str(model),
              "--json", str(tmp_path / "without.json"), "--no-patterns"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    without = json.loads((tmp_path / "without.json").read_text())
    assert without["alarm_patterns"] is False
    assert without["confusion"][FIRE][0] == 1 and without["confusion"][0][0] == 1
    assert json.loads((tmp_path / "with.json").read_text())["alarm_patterns"] is True


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
    assert [(Path(c["file"]).name, c["class_id"]) for c in data["predictions"]] == [("quiet.wav", 0), ("noise.wav", 0)]
    assert all(0 <= c["predicted"] < NUM_CLASSES for c in data["predictions"])
    assert (tmp_path / "r.png").stat().st_size > 1000


def test_thresholds_command_prints_a_setting_the_gateway_reads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    rng = np.random.default_rng(1)
    sf.write(str(tmp_path / "smoke.wav"), _temporal_three(4.0), SR)
    sf.write(str(tmp_path / "quiet.wav"), (0.001 * rng.standard_normal(SR)).astype(np.float32), SR)
    (tmp_path / "m.csv").write_text(f"file,class_id\nsmoke.wav,{FIRE}\nquiet.wav,0\n")
    model = _never_firing_model(tmp_path / "never.pt")

    result = CliRunner().invoke(app, ["thresholds", "--manifest", str(tmp_path / "m.csv"), "--model", str(model)])
    assert result.exit_code == 0, result.output
    line = result.output.strip().splitlines()[-1]
    name, value = line.split("=", 1)
    assert name == "HEARO_GATEWAY_DETECTOR_THRESHOLDS"
    monkeypatch.setenv(name, value.strip("'"))
    # A model that never fires separates nothing: every class gets the strictest threshold.
    assert GatewaySettings().detector_thresholds == {c.key: THRESHOLD_GRID[-1] for c in CLASSES if c.is_emergency}


def test_eval_with_spoken_words_fuses_the_phrases_a_session_would_hear(tmp_path: Path) -> None:
    """A model that never fires misses a shouted "살려주세요"; with --spoken-words the clip fires
    help on the manifest, and counts as a spoken false alarm in household audio."""
    clip = Path(__file__).resolve().parents[1] / "data" / "clips" / "help_shouted_ko.flac"
    (tmp_path / "m.csv").write_text(f"file,class_id\n{clip},{by_key('help').id}\n")
    household = tmp_path / "household"
    household.mkdir()
    audio, rate = sf.read(str(clip), dtype="float32")
    sf.write(str(household / "call.wav"), audio, rate)
    model = _never_firing_model(tmp_path / "never.pt")

    assert evaluate(tmp_path / "m.csv", model).clips[0]["predicted"] == 0
    result = CliRunner().invoke(app, ["eval", "--manifest", str(tmp_path / "m.csv"), "--household", str(household),
                                      "--model", str(model), "--spoken-words", "--languages", "ko",
                                      "--json", str(tmp_path / "r.json")])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "r.json").read_text())
    assert report["spoken_languages"] == ["ko"] and report["predictions"][0]["predicted"] == by_key("help").id
    [alarm] = report["household"]["alarms"]
    assert alarm["class"] == "help" and "살려주세요" in alarm["spoken"]
    refused = CliRunner().invoke(app, ["eval", "--manifest", str(tmp_path / "m.csv"), "--model", str(model),
                                       "--spoken-words", "--languages", "fr"])
    assert refused.exit_code == 2 and "fr" in refused.output
