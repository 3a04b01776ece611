"""The shipped default model, streamed through `hearo eval`: emergencies fire, a minute of TV does not.

Clips (tests/data/clips/README.md says where each comes from) are judged one by one through
``hearo.evaluate.evaluate``, the gateway's audio path and detector with the alarm patterns.
A clip the shipped model is known to miss is an expected failure with the reason, strict, so
a model that starts catching it turns the test red until the mark is removed.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
from rich.console import Console

from hearo.data.synth import smoke_alarm
from hearo.evaluate import evaluate
from services.inference.settings import DEFAULT_WEIGHTS
from shared.taxonomy import CLASSES, by_key

CLIPS = Path(__file__).resolve().parents[1] / "data" / "clips"

pytestmark = [
    pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default model yet"),
    pytest.mark.slow,
]


def _smoke_alarm(path: Path) -> Path:
    """A 10 s temporal-three alarm, quieter than full scale, with a little noise, 16 kHz."""
    rng = np.random.default_rng(7)
    alarm = np.concatenate([smoke_alarm(rng) for _ in range(3)])[: 10 * 16_000] * 0.3
    alarm = alarm + 0.005 * rng.standard_normal(alarm.size)
    sf.write(str(path), alarm.astype(np.float32), 16_000, subtype="PCM_16")
    return path


def _judged(path: Path, expected: str, folder: Path, spoken_languages: tuple[str, ...] = ()) -> str:
    manifest = folder / "manifest.csv"
    manifest.write_text(f"file,class_id\n{path},{by_key(expected).id}\n")
    report = evaluate(manifest, "default", json_out=folder / "report.json", console=Console(quiet=True),
                      spoken_languages=spoken_languages)
    return CLASSES[report.clips[0]["predicted"]].key


def test_a_smoke_alarm_fires(tmp_path: Path) -> None:
    assert _judged(_smoke_alarm(tmp_path / "smoke_alarm.wav"), "fire", tmp_path) == "fire"


def test_a_minute_of_tv_does_not_fire(tmp_path: Path) -> None:
    assert _judged(CLIPS / "tv_minute.flac", "normal", tmp_path) == "normal"


SCREAM_GAP = (
    "known gap (docs/model-card.md): the model scores this scream 0.84 for crime (smoothed), under the 0.93 "
    "threshold its household calibration set"
)
HELP_GAP = (
    "known gap (docs/model-card.md): the model scores this shouted call for help 0.12 for help (threshold 0.97); "
    "spoken words, off by default, catch it (the test below)"
)


@pytest.mark.parametrize(
    ("clip", "expected"),
    [
        pytest.param("scream.flac", "crime", marks=pytest.mark.xfail(strict=True, reason=SCREAM_GAP)),
        pytest.param("help_shouted_ko.flac", "help", marks=pytest.mark.xfail(strict=True, reason=HELP_GAP)),
    ],
)
def test_a_scream_and_a_shouted_call_for_help_fire(clip: str, expected: str, tmp_path: Path) -> None:
    assert _judged(CLIPS / clip, expected, tmp_path) == expected


def test_with_spoken_words_on_a_shouted_call_for_help_fires_and_tv_does_not(tmp_path: Path) -> None:
    """The model misses the shouted "살려주세요" (above); a gateway listening for spoken words
    hears the phrase, shouted, and fires help. A minute of TV stays quiet."""
    assert _judged(CLIPS / "help_shouted_ko.flac", "help", tmp_path, ("ko", "en")) == "help"
    assert _judged(CLIPS / "tv_minute.flac", "normal", tmp_path, ("ko", "en")) == "normal"
