"""The AudioSet -> Hear-o class map: resolution against real label lists, the scoring rule, and
mn04 + map on synthesised alarms and speech (figures in docs/audioset-map.md)."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from scipy.signal import resample_poly

from services.inference.audioset_map import MAP_ENTRIES, AudioSetClassMap, AudioSetLabel, read_labels_csv
from services.inference.models.efficientat import EfficientAT, load_efficientat
from shared.taxonomy import CLASS_KEYS, NORMAL, NUM_CLASSES, by_key

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
MN04_DIR = SHARED / "models" / "efficientat_mn04_as"
LABELS_CSV = MN04_DIR / "class_labels_indices.csv"
SPEECH = SHARED / "models" / "yamnet" / "speech_test_16k_int16.bin"
SR = 32_000
FIRE, GAS = by_key("fire").id, by_key("gas").id


@pytest.fixture(scope="module")
def labels_csv() -> Path:
    if not LABELS_CSV.is_file():
        pytest.skip(f"AudioSet label list not found at {LABELS_CSV} (the CEO shared/ folder beside the clone)")
    return LABELS_CSV


@pytest.fixture(scope="module")
def class_map(labels_csv: Path) -> AudioSetClassMap:
    return AudioSetClassMap.from_labels_csv(labels_csv)


@pytest.fixture(scope="module")
def model() -> EfficientAT:
    weights = MN04_DIR / "mn04_as_mAP_432.pt"
    if not weights.is_file():
        pytest.skip(f"EfficientAT mn04 weights not found at {weights} (the CEO shared/ folder beside the clone)")
    return load_efficientat(weights)


def _index(display_name: str) -> int:
    return next(label.index for label in read_labels_csv(LABELS_CSV) if label.display_name == display_name)


def test_every_entry_resolves_in_the_mn04_label_list(class_map: AudioSetClassMap, labels_csv: Path) -> None:
    labels = {label.mid: label for label in read_labels_csv(labels_csv)}
    for entry in MAP_ENTRIES:
        label = labels[entry.mid]
        assert label.display_name == entry.display_name
        assert float(class_map.weights[by_key(entry.class_key).id, label.index]) == pytest.approx(entry.weight)
    assert class_map.num_labels == 527
    assert int(class_map.weights.count_nonzero()) == len(MAP_ENTRIES)


def test_each_emergency_class_has_labels_and_normal_none(class_map: AudioSetClassMap) -> None:
    per_class = class_map.weights.count_nonzero(dim=1).tolist()
    assert per_class[NORMAL.id] == 0
    assert all(count >= 1 for class_id, count in enumerate(per_class) if class_id != NORMAL.id)


def test_beep_bleep_maps_nowhere(class_map: AudioSetClassMap) -> None:
    assert not class_map.weights[:, _index("Beep, bleep")].any()
    assert not class_map.weights[:, _index("Buzzer")].any()


def test_label_dict_of_mids_gives_the_same_map(class_map: AudioSetClassMap, labels_csv: Path) -> None:
    label_dict = {label.index: label.mid for label in read_labels_csv(labels_csv)}
    assert torch.equal(AudioSetClassMap.from_label_dict(label_dict).weights, class_map.weights)


def test_display_name_is_the_fallback_when_the_mid_differs() -> None:
    labels = [AudioSetLabel(0, "/x/other", "Smoke detector, smoke alarm"), AudioSetLabel(1, "/x/speech", "Speech")]
    entries = [e for e in MAP_ENTRIES if e.display_name == "Smoke detector, smoke alarm"]
    assert AudioSetClassMap(labels, entries).weights[FIRE].tolist() == [1.0, 0.0]


def test_missing_label_is_named(labels_csv: Path, tmp_path: Path) -> None:
    with open(labels_csv, newline="", encoding="utf-8") as f:
        rows = [row for row in csv.reader(f) if row[2] != "Fire alarm"]
    renumbered = [rows[0]] + [[str(i), mid, name] for i, (_, mid, name) in enumerate(rows[1:])]
    path = tmp_path / "labels.csv"
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f).writerows(renumbered)
    with pytest.raises(ValueError, match=r"'Fire alarm' \(/m/0c3f7m\) is not in the label list"):
        AudioSetClassMap.from_labels_csv(path)
    with pytest.raises(ValueError, match="exactly 0..1"):
        AudioSetClassMap.from_label_dict({0: "/m/09x0r", 2: "/m/01y3hg"})


def test_hand_made_probabilities_follow_the_documented_rule(class_map: AudioSetClassMap) -> None:
    probs = torch.zeros(2, 527)
    probs[0, _index("Smoke detector, smoke alarm")] = 0.8
    probs[0, _index("Screaming")] = 0.5  # crime 0.8 and help 0.8
    probs[0, _index("Cough")] = 0.9  # medical 0.4
    probs[0, _index("Crackle")] = 0.5  # fire 0.6 (below the smoke alarm) and electric 0.4
    probs[0, _index("Beep, bleep")] = 1.0  # maps nowhere
    probs[1, _index("Speech")] = 0.9
    before = probs.clone()
    scores = class_map(probs)
    assert torch.equal(probs, before)
    expected = dict.fromkeys(CLASS_KEYS, 0.0) | {
        "normal": 0.2, "crime": 0.4, "electric": 0.2, "fire": 0.8, "medical": 0.36, "help": 0.4,
    }
    assert scores[0].tolist() == pytest.approx([expected[k] for k in CLASS_KEYS], abs=1e-6)
    assert scores[1].tolist() == [1.0] + [0.0] * (NUM_CLASSES - 1)


def test_scores_stay_in_unit_range(class_map: AudioSetClassMap) -> None:
    scores = class_map(torch.rand(64, 527, generator=torch.Generator().manual_seed(0)))
    assert scores.shape == (64, NUM_CLASSES)
    assert bool((scores >= 0).all() and (scores <= 1).all())
    with pytest.raises(ValueError, match=r"expected probabilities \[B, 527\]"):
        class_map(torch.rand(527))


def _beep(freq: float, seconds: float, harmonics: tuple[float, ...]) -> np.ndarray:
    """A beep with the given harmonic amplitudes (1st = fundamental) and 5 ms ramps."""
    t = np.arange(round(seconds * SR)) / SR
    x = sum(a * np.sin(2 * np.pi * freq * (k + 1) * t) for k, a in enumerate(harmonics))
    ramp = np.minimum(1.0, np.minimum(t, t[::-1]) / 0.005)
    return x * ramp


def _on_off(beep: np.ndarray, pattern: list[tuple[float, float]], total: float) -> np.ndarray:
    out = np.zeros(round(total * SR))
    start = 0.0
    while start < total:
        for on, off in pattern:
            i = round(start * SR)
            segment = beep[: round(on * SR)][: max(0, len(out) - i)]
            out[i : i + len(segment)] += segment
            start += on + off
    return out


def _tensor(x: np.ndarray, peak: float = 0.5) -> torch.Tensor:
    return torch.from_numpy((x * peak / np.abs(x).max()).astype(np.float32))[None]


def _window_scores(model: EfficientAT, class_map: AudioSetClassMap, waveform: torch.Tensor) -> torch.Tensor:
    """Class scores of every 2 s window at a 0.5 s hop, as the inference service sees them."""
    windows = waveform[0].unfold(0, 2 * SR, SR // 2)
    with torch.inference_mode():
        return class_map(torch.sigmoid(model(windows)[0]))


PIEZO_HARMONICS = (1.0, 0.3, 0.5, 0.15, 0.25)
TEMPORAL_THREE = [(0.5, 0.5), (0.5, 0.5), (0.5, 1.5)]  # ISO 8201: repeats every 4 s


def test_mn04_puts_a_temporal_three_smoke_alarm_in_fire(model: EfficientAT, class_map: AudioSetClassMap) -> None:
    alarm = _tensor(_on_off(_beep(3100, 0.5, PIEZO_HARMONICS), TEMPORAL_THREE, 8.0))
    scores = _window_scores(model, class_map, alarm)
    emergency = scores[:, 1:]
    assert bool((emergency.argmax(dim=1) + 1 == FIRE).all()), "fire must be the top emergency in every window"
    mean = scores.mean(dim=0)
    runner_up = float(torch.cat([mean[1:FIRE], mean[FIRE + 1 :]]).max())
    assert float(mean[FIRE]) > 0.1
    assert runner_up < 0.02


def test_mn04_keeps_speech_and_plain_beeps_normal(model: EfficientAT, class_map: AudioSetClassMap) -> None:
    speech = np.fromfile(SPEECH, dtype="<i2").astype(np.float64) / 32768
    clips = {
        "speech": torch.from_numpy(resample_poly(speech, 2, 1).astype(np.float32))[None],
        "1 kHz tone": _tensor(_beep(1000, 2.0, (1.0,))),  # mn04: "Beep, bleep" 0.58
        "microwave beep": _tensor(np.concatenate([np.zeros(SR // 4), _beep(2000, 1.0, (1.0,)), np.zeros(3 * SR // 4)])),
    }
    for name, clip in clips.items():
        with torch.inference_mode():
            scores = class_map(torch.sigmoid(model(clip)[0]))[0]
        assert int(scores.argmax()) == NORMAL.id, name
        assert float(scores[1:].max()) < 0.01, name
