"""Hard-negative mining cuts clips where a model fires on household audio, resumes, and never
touches calibration or evaluation audio."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch
from torch import nn

from services.inference.training.calibration import household_clips
from services.inference.training.hard_negatives import HardNegativeConfig, _rows, mine_hard_negatives, peaks

SR = 16_000


class LoudIsFire(nn.Module):
    """Scores a window by its loudness: fire's logit rises with the mean log-mel level."""

    def forward(self, windows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        level = windows.mean(dim=(1, 2))
        logits = torch.full((windows.shape[0], 9), -8.0)
        logits[:, 5] = (level + 0.5) * 20.0  # quiet windows sit near -1, the loud second near 0
        return logits, torch.zeros(windows.shape[0], 527)


def _household(folder: Path, part: str = "training", loud: bool = True) -> Path:
    folder.mkdir(parents=True)
    rng = np.random.default_rng(0)
    audio = rng.standard_normal(60 * SR).astype(np.float32) * 1e-3
    if loud:
        audio[30 * SR: 31 * SR] = rng.standard_normal(SR) * 0.5  # one loud second at 30 s
    sf.write(str(folder / "kitchen-000.wav"), audio, SR, subtype="PCM_16")
    (folder / "index.csv").write_text(f"file,scene,seconds,sources,part\nkitchen-000.wav,kitchen,60.0,x,{part}\n")
    return folder


def test_peaks_keep_the_highest_apart() -> None:
    score = np.array([0.1, 0.5, 0.9, 0.6, 0.2, 0.1, 0.4, 0.35, 0.0])
    assert peaks(score, 0.3, 3) == [2, 6]
    assert peaks(score, 0.95, 3) == []


def test_clips_are_cut_around_the_moment_that_fires(tmp_path: Path) -> None:
    household = _household(tmp_path / "household")
    out = tmp_path / "hard"
    count = mine_hard_negatives(LoudIsFire(), [household], out, HardNegativeConfig(min_score=0.5))
    rows = [r for r in _rows(out / "hard_negatives.csv") if r["clip"]]
    assert count == len(rows) == 3  # one peak, three offsets
    assert {r["class"] for r in rows} == {"fire"}
    assert all(29.0 <= float(r["peak_s"]) <= 32.0 for r in rows)
    for row in rows:
        clip, rate = sf.read(str(out / row["clip"]))
        assert rate == SR and clip.size == 4 * SR
        assert np.abs(clip).max() > 0.1  # the loud second is inside every offset
    # The trainer reads them as normal clips, one per file.
    assert len(household_clips(out, SR, 4.0)) == 3


def test_a_rerun_resumes_without_duplicates(tmp_path: Path) -> None:
    household = _household(tmp_path / "household")
    out = tmp_path / "hard"
    first = mine_hard_negatives(LoudIsFire(), [household], out, HardNegativeConfig(min_score=0.5))
    again = mine_hard_negatives(LoudIsFire(), [household], out, HardNegativeConfig(min_score=0.5))
    assert first == again == 3
    assert len(list(out.glob("*.wav"))) == 3


def test_quiet_audio_is_recorded_as_mined_with_no_clip(tmp_path: Path) -> None:
    household = _household(tmp_path / "household", loud=False)
    out = tmp_path / "hard"
    assert mine_hard_negatives(LoudIsFire(), [household], out, HardNegativeConfig(min_score=0.5)) == 0
    assert [r["source"] for r in _rows(out / "hard_negatives.csv")] == [str(household / "kitchen-000.wav")]


@pytest.mark.parametrize("part", ["calibration", "evaluation"])
def test_calibration_and_evaluation_audio_are_refused(tmp_path: Path, part: str) -> None:
    household = _household(tmp_path / "household", part)
    with pytest.raises(ValueError, match="only --part training"):
        mine_hard_negatives(LoudIsFire(), [household], tmp_path / "hard")
