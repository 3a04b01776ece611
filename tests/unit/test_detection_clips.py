"""The shipped default model, streamed through `hearo eval`: emergencies fire, a minute of TV does not."""

from __future__ import annotations

import csv
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

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped default model yet")


def _smoke_alarm(path: Path) -> Path:
    """A 10 s temporal-three alarm, quieter than full scale, with a little noise, 16 kHz."""
    rng = np.random.default_rng(7)
    alarm = np.concatenate([smoke_alarm(rng) for _ in range(3)])[: 10 * 16_000] * 0.3
    alarm = alarm + 0.005 * rng.standard_normal(alarm.size)
    sf.write(str(path), alarm.astype(np.float32), 16_000, subtype="PCM_16")
    return path


@pytest.mark.slow
def test_a_smoke_alarm_a_scream_and_a_shouted_call_for_help_fire_and_tv_does_not(tmp_path: Path) -> None:
    clips = [
        (_smoke_alarm(tmp_path / "smoke_alarm.wav"), "fire"),
        (CLIPS / "scream.flac", "crime"),
        (CLIPS / "help_shouted_ko.flac", "help"),
        (CLIPS / "tv_minute.flac", "normal"),
    ]
    manifest = tmp_path / "manifest.csv"
    with open(manifest, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["file", "class_id"])
        writer.writerows([(str(path), by_key(key).id) for path, key in clips])
    report = evaluate(manifest, "default", json_out=tmp_path / "report.json", console=Console(quiet=True))
    predicted = {Path(c["file"]).name: CLASSES[c["predicted"]].key for c in report.clips}
    assert predicted == {path.name: key for path, key in clips}
