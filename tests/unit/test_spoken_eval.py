"""``hearo eval --spoken`` hears a file as a session does: the model's tags reach the listener
with the audio, gate its recogniser and mark shouts, and its scores back phrases."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from hearo.spoken_eval import evaluate_spoken
from shared.spoken import listen
from tests.unit.spoken_support import need_language

CLIPS = Path(__file__).resolve().parents[1] / "data" / "clips"
SR = 16_000


def _clip(name: str) -> np.ndarray:
    audio, rate = sf.read(str(CLIPS / name), dtype="float32")
    return soxr.resample(audio, rate, SR).astype(np.float32) if rate != SR else audio


def test_tags_saying_no_speech_keep_the_recogniser_off_the_phrase() -> None:
    need_language("ko")
    audio = _clip("help_shouted_ko.flac")
    heard, _ = listen(audio, ("ko",))
    assert {h.class_key for h in heard} == {"help"}
    ends = np.arange(2.0, audio.size / SR + 0.5, 0.5)
    music = [(float(t), [("Music", 0.9), ("Speech", 0.01)]) for t in ends]
    unheard, stream = listen(audio, ("ko",), tags=music)
    assert unheard == []
    assert stream.figures()[2] == 0.0  # nothing passed to the recogniser
    speech = [(float(t), [("Speech", 0.8), ("Shout", 0.6)]) for t in ends]
    shouted, _ = listen(audio, ("ko",), tags=speech)
    assert shouted and all(h.shouted for h in shouted)


def test_the_spoken_evaluation_runs_the_model_as_a_session_does(tmp_path: Path) -> None:
    need_language("ko")
    (tmp_path / "positives").mkdir()
    (tmp_path / "normal").mkdir()
    sf.write(str(tmp_path / "positives" / "ko-help.wav"), _clip("help_shouted_ko.flac"), SR, subtype="PCM_16")
    sf.write(str(tmp_path / "normal" / "tv-00.wav"), _clip("tv_minute.flac"), SR, subtype="PCM_16")
    fields = ("file", "language", "class_key", "text", "voice", "condition", "split", "snr_db")
    with open(tmp_path / "index.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(fields)
        writer.writerow(["positives/ko-help.wav", "ko", "help", "살려주세요", "espeak-ng:ko+m5", "shouted", "val", "40"])
        writer.writerow(["normal/tv-00.wav", "mixed", "normal", "tv", "", "tv", "val", "0"])
    with_model = evaluate_spoken(tmp_path, ("ko", "en"), json_out=tmp_path / "report.json")
    assert with_model["model"] == "default"
    assert with_model["keyword_recall"]["val/ko"] == {"recall": 1.0, "clips": 1}
    assert with_model["normal_hours"] > 0.016
    assert with_model["false_detections"] == []  # a minute of TV says no phrase twice or shouted
    assert (tmp_path / "report.json").is_file()
    without = evaluate_spoken(tmp_path, ("ko", "en"), model=None)
    assert without["model"] is None
    assert without["keyword_recall"]["val/ko"]["recall"] == 1.0
    # The model's tags keep the recogniser off what it heard as no speech: it never passes more.
    assert with_model["gate_pass_rate"] <= without["gate_pass_rate"]
