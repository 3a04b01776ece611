"""Training data: class-folder layout, split by source file, audio reading and window cutting."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soxr
import torch

from services.inference.training import (
    LabelledClip,
    clip_to_windows,
    read_clip,
    scan_class_folders,
    scan_dataset,
    split_by_source,
)
from shared.features.spec import BEATS_FBANK
from shared.features.stream import clip_windows
from tests.beats_support import tone, write_audio


def test_class_folders_are_scanned_recursively_for_wav_flac_ogg(tmp_path: Path) -> None:
    write_audio(tmp_path / "fire" / "a.wav", tone(0.5, 440), 16_000)
    write_audio(tmp_path / "fire" / "nested" / "b.FLAC", tone(0.5, 440), 16_000)
    write_audio(tmp_path / "help" / "c.ogg", tone(0.5, 440), 16_000)
    (tmp_path / "help" / "notes.txt").write_text("not audio")
    (tmp_path / "README.md").write_text("a dataset")
    (tmp_path / ".cache").mkdir()

    scan = scan_dataset(tmp_path)
    assert scan.layout == "folders"
    assert [(c.path.relative_to(tmp_path).as_posix(), c.class_key) for c in scan.clips] == [
        ("fire/a.wav", "fire"),
        ("fire/nested/b.FLAC", "fire"),
        ("help/c.ogg", "help"),
    ]
    assert scan.class_counts() == {"fire": 2, "help": 1}


def test_unknown_class_folder_and_unlabelled_audio_are_refused(tmp_path: Path) -> None:
    (tmp_path / "fires").mkdir()
    with pytest.raises(ValueError, match="fires: not a class folder; top-level folders must be class keys"):
        scan_class_folders(tmp_path)
    (tmp_path / "fires").rmdir()
    write_audio(tmp_path / "loose.wav", tone(0.5, 440), 16_000)
    with pytest.raises(ValueError, match="audio outside a class folder has no label"):
        scan_class_folders(tmp_path)


def test_empty_or_unrecognised_folders_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="neither class folders"):
        scan_dataset(tmp_path)
    (tmp_path / "normal").mkdir()
    with pytest.raises(ValueError, match="no labelled audio found"):
        scan_dataset(tmp_path)
    with pytest.raises(ValueError, match="does not exist"):
        scan_dataset(tmp_path / "absent")


def clips_for(counts: dict[str, int], segments_per_file: int = 1) -> list[LabelledClip]:
    return [
        LabelledClip(Path(f"/data/{key}/{i}.wav"), key, float(s), float(s + 1))
        for key, n in counts.items()
        for i in range(n)
        for s in range(segments_per_file)
    ]


def test_split_is_by_source_file_stratified_and_deterministic() -> None:
    clips = clips_for({"normal": 10, "fire": 5, "gas": 2, "help": 1}, segments_per_file=3)
    train, val = split_by_source(clips, val_fraction=0.2, seed=7)
    train_sources = {c.source for c in train}
    val_sources = {c.source for c in val}
    assert not train_sources & val_sources
    assert len(train) + len(val) == len(clips)
    val_files = {key: len({c.source for c in val if c.class_key == key}) for key in ("normal", "fire", "gas", "help")}
    # round(0.2 n), at least one, never the last file of a class; a single file stays in training.
    assert val_files == {"normal": 2, "fire": 1, "gas": 1, "help": 0}

    again = split_by_source(list(reversed(clips)), val_fraction=0.2, seed=7)
    assert {c.source for c in again[1]} == val_sources
    other_seeds = [{c.source for c in split_by_source(clips, 0.2, seed)[1]} for seed in range(5)]
    assert any(s != val_sources for s in other_seeds)
    assert split_by_source(clips, 0.0, seed=7)[1] == []


def test_a_source_with_mixed_segments_stays_on_one_side() -> None:
    mixed = [
        LabelledClip(Path("/data/x.wav"), "crime", 0.0, 2.0),
        LabelledClip(Path("/data/x.wav"), "help", 2.0, 4.0),
        LabelledClip(Path("/data/x.wav"), "help", 4.0, 6.0),
    ]
    others = clips_for({"help": 3, "crime": 3})
    for seed in range(4):
        train, val = split_by_source(mixed + others, 0.4, seed)
        sides = {("train" if c in train else "val") for c in mixed}
        assert len(sides) == 1


def test_read_clip_downmixes_and_resamples_like_the_gateway(tmp_path: Path) -> None:
    left, right = tone(1.0, 440, rate=44_100), tone(1.0, 660, rate=44_100)
    path = write_audio(tmp_path / "stereo.wav", np.stack([left, right], axis=1), 44_100)
    audio = read_clip(LabelledClip(path, "normal"))
    assert audio.dtype == np.float32 and audio.shape == (16_000,)
    mono = ((left.astype(np.float64) + right) / 2).astype(np.float32)
    expected = soxr.resample(mono, 44_100, 16_000)
    np.testing.assert_allclose(audio, expected, atol=1e-4)  # the file stores 16-bit PCM


def test_short_segments_widen_to_a_window_of_real_audio(tmp_path: Path) -> None:
    path = write_audio(tmp_path / "long.wav", tone(6.0, 440), 16_000)
    # One window's samples (198 frames: 31,920), centred on the segment and kept inside the file.
    assert read_clip(LabelledClip(path, "fire", 3.0, 3.5)).shape == (31_920,)
    at_the_end = read_clip(LabelledClip(path, "fire", 5.8, 6.0))
    np.testing.assert_array_equal(at_the_end, read_clip(LabelledClip(path, "fire", 4.005, 6.0)))
    assert read_clip(LabelledClip(path, "fire", 1.0, 4.0)).shape == (48_000,)
    with pytest.raises(ValueError, match="starts after the audio's end"):
        read_clip(LabelledClip(path, "fire", 7.0, 8.0))


def test_clip_windows_are_the_gateway_windows(tmp_path: Path) -> None:
    samples = tone(3.0, 880, noise=0.05)
    path = write_audio(tmp_path / "a.wav", samples, 16_000)
    windows = clip_to_windows(LabelledClip(path, "fire"), hop_frames=50)
    # 3 s -> 298 frames -> windows ending at frames 198, 248, 298.
    assert windows.shape == (3, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels)
    torch.testing.assert_close(windows, clip_windows(BEATS_FBANK, read_clip(LabelledClip(path, "fire")), 50))
    short = write_audio(tmp_path / "short.wav", tone(0.5, 880), 16_000)
    assert clip_to_windows(LabelledClip(short, "fire"), hop_frames=50).shape[0] == 1


def test_clip_rejects_unknown_classes_and_bad_segments() -> None:
    with pytest.raises(KeyError, match="unknown class 'storm'"):
        LabelledClip(Path("a.wav"), "storm")
    with pytest.raises(ValueError, match="bad segment"):
        LabelledClip(Path("a.wav"), "fire", 2.0, 1.0)
