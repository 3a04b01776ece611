"""``hearo data spoken`` and ``hearo eval --spoken``: the spoken source measured.

The set (built under a cache folder, resumable: a file already written is kept):

- ``positives/``: every phrase of ``shared/spoken/phrases.toml`` (and a few rewordings) in
  every TTS voice we have (espeak-ng Korean variants; flite and espeak-ng English), plain,
  shouted (``hearo.data.synth.shout``) and muffled (low-pass, behind a door), over household
  backgrounds at 0-20 dB SNR, 1 s of background either side. Voices are split: ``tune``
  voices set the confidence rules, ``val`` voices are the figures; tune clips take their
  backgrounds from the household calibration part, val clips from the evaluation part.
- ``real/``: the 13 real "I need help" voice lines of nexuiz-data (allow-listed), clean and
  over household backgrounds.
- ``normal/``: speech-heavy normal audio in ten-minute files: the Asterisk prompts in
  Spanish, French, Italian and Russian, game voice lines (hedgewars, nexuiz call-outs other
  than needhelp, 0 A.D.), Korean and English TTS conversation (everyday sentences, some
  shouted), and TV-like mixtures (speech over music). False keywords show here.

``evaluate_spoken`` streams each file through ``SpokenStream`` exactly as a gateway session does
(``services/gateway/session_spoken.py``: the same listener and gate configuration, on the stream's
clock) and reports keyword recall (the clip's phrase class heard) per language, condition and
split, false keywords per hour and false distress detections per hour (a ``Detector`` whose
spoken evidence is a default ``SpokenFusion``, as a session's is: repetition, shouting and the
model's support, the refractory period), recogniser CPU per stream-hour and the gate's pass
rate. The default model judges every window as the inference service would, and the listener
gets its tags as a session does: they keep the recogniser off segments the model heard no
speech in, and mark shouts.
"""

from __future__ import annotations

import csv
import json
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from hearo.data.household import part_sources
from hearo.data.packages import SAMPLE_RATE, load_audio
from hearo.data.synth import TTS_PHRASES, shout, synthesise_speech
from hearo.evaluate import ServedModel, predict_windows, stream_clip
from shared.augment import muffle
from shared.detector import DetectionEvent, Detector, DetectorConfig
from shared.spoken import SpokenFusion, SpokenStream, listen, load_phrases
from shared.taxonomy import NORMAL, NUM_CLASSES

__all__ = ["build_spoken_set", "evaluate_spoken"]

SR = SAMPLE_RATE
KO_TUNE = ("klatt", "Andy", "Denis", "Michael", "f5", "whisper")
KO_VAL = ("klatt2", "Annie", "Gene", "m5", "m6", "croak")
EN_TUNE = (("flite", "kal"), ("flite", "awb"), ("espeak-ng", "en+m3"), ("espeak-ng", "en+klatt"))
EN_VAL = (("flite", "kal16"), ("flite", "rms"), ("flite", "slt"), ("espeak-ng", "en-us+f3"), ("espeak-ng", "en-gb+m5"))
# Rewordings a person says, beside the listed forms (the recogniser must cope with both).
EXTRA_SAYINGS = {
    "ko": [("help", "살려 주세요 제발"), ("help", "제발 도와주세요"), ("help", "여기요 여기요"), ("trapped", "갇혔어요 문 좀 열어주세요")],
    "en": [("help", "Help me, please!"), ("help", "Somebody help! Please!"), ("trapped", "I'm trapped, let me out!")],
}
CONDITIONS = ("plain", "shouted", "muffled")
KO_CONVERSATION = (
    "오늘 저녁은 뭐 먹을까", "오늘 날씨가 참 좋네요", "내일 아침에 회의가 있어요", "텔레비전 좀 꺼 줄래", "지금 몇 시예요",
    "버스가 곧 도착합니다", "전화 왔어요", "다음 역은 시청입니다", "물 좀 주세요", "여기 앉으세요", "불 좀 꺼 주세요",
    "사람이 많네요", "숙제 다 했니", "문 닫고 들어와", "엄마 어디 있어요", "밥 먹었어요", "주말에 뭐 할 거예요",
    "이 옷 어때요", "창문 좀 열어 줄래", "커피 한 잔 주세요", "도서관에 가요", "날씨가 추워졌어요", "할머니 댁에 가요",
    "불고기 맛있다", "살 빼야 되는데", "여기 좀 봐", "도와줄까", "사람들이 기다려요", "문 열어 놨어", "숨 좀 돌리자",
    "골 골이야", "빨리 와 밥 먹어", "생일 축하해", "야 이거 봐 대박이다", "조용히 좀 해", "엄마 나 왔어",
)
EN_CONVERSATION = (
    "The meeting starts at ten.", "What would you like for dinner?", "Turn the TV down a little.",
    "The next station is City Hall.", "I'll call you back later.", "It is going to rain tomorrow.",
    "Can you help me with the dishes?", "The fireplace is warm tonight.", "Let me out at the corner, please.",
    "I can't believe it.", "Call me when you get home.", "Somebody left the door open.", "Help yourself to some cake.",
    "We need more milk.", "Goal! Did you see that?", "Dinner is ready, come down!", "Happy birthday!",
    "Hurry up, we're late!", "Turn that music down!", "Yes! We won!", "The fire drill is on Tuesday.",
    "I'm tired, I'll go to bed.", "Where are my keys?", "Out of the way, coming through!",
)


@dataclass(frozen=True)
class _Clip:
    file: str
    language: str
    class_key: str  # "normal" for the normal files
    text: str
    voice: str
    condition: str
    split: str
    snr_db: float


def _backgrounds(household: Path, seconds: float = 8.0) -> list[np.ndarray]:
    """Cuts of household audio, quiet and loud scenes alike."""
    out = []
    for path in sorted(household.glob("*.wav")):
        audio, rate = sf.read(str(path), dtype="float32")
        if rate != SR:
            continue
        for lo in range(0, audio.size - int(seconds * SR), int(47 * SR)):
            out.append(audio[lo: lo + int(seconds * SR)])
    return out


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(x.astype(np.float64) ** 2)) + 1e-9)


def _voiced_rms(x: np.ndarray) -> float:
    frames = x[: x.size // 320 * 320].reshape(-1, 320)
    levels = np.sqrt(np.mean(frames.astype(np.float64) ** 2, axis=1))
    return float(np.sqrt(np.mean(levels[levels > levels.max() * 0.1] ** 2)) + 1e-9)


def _mix(speech: np.ndarray, background: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    n = speech.size + 2 * SR
    bed = np.resize(background, n).astype(np.float64)
    out = bed / _rms(bed) * 0.05
    gain = 0.05 * 10 ** (snr_db / 20) / _voiced_rms(speech)
    out[SR: SR + speech.size] += speech * gain
    peak = float(np.max(np.abs(out)))
    return (out / peak * 0.9 if peak > 0.99 else out).astype(np.float32)


def _sayings(language: str) -> list[tuple[str, str]]:
    listed = [(p.class_key, p.text if language == "ko" else p.text) for p in load_phrases() if p.language == language]
    if language == "en":  # TTS reads "call 911" as digits; say it as a person does
        listed = [(c, "Call nine one one!" if t == "call 911" else t) for c, t in listed]
    return listed + EXTRA_SAYINGS[language]


def build_spoken_set(out: Path, cache: Path, household_tune: Path, household_val: Path, normal_minutes: float = 130.0,
                     seed: int = 0) -> dict[str, int]:
    """Write the set under ``out`` (see the module docstring); returns the number of clips per part."""
    rng = np.random.default_rng(seed)
    out.mkdir(parents=True, exist_ok=True)
    rows: list[_Clip] = []
    backgrounds = {"tune": _backgrounds(household_tune), "val": _backgrounds(household_val)}
    voices = {
        "ko": [("espeak-ng", f"ko+{v}", "tune") for v in KO_TUNE] + [("espeak-ng", f"ko+{v}", "val") for v in KO_VAL],
        "en": [(e, v, "tune") for e, v in EN_TUNE] + [(e, v, "val") for e, v in EN_VAL],
    }
    (out / "positives").mkdir(exist_ok=True)
    for language, voice_list in voices.items():
        for engine, voice, split in voice_list:
            for i, (class_key, text) in enumerate(_sayings(language)):
                speech = synthesise_speech(engine, voice, text, rng)
                for condition in CONDITIONS:
                    name = f"positives/{language}-{voice.replace('+', '_')}-{i:02d}-{condition}.wav"
                    snr = float(rng.uniform(0, 20))
                    rows.append(_Clip(name, language, class_key, text, f"{engine}:{voice}", condition, split, round(snr, 1)))
                    if (out / name).is_file():
                        continue
                    x = shout(speech, rng) if condition == "shouted" else muffle(speech, rng) if condition == "muffled" else speech
                    pool = backgrounds[split]
                    sf.write(str(out / name), _mix(x, pool[int(rng.integers(len(pool)))], snr, rng), SR, subtype="PCM_16")
    # The real calls: nexuiz-data's needhelp lines (decoded by the data build).
    (out / "real").mkdir(exist_ok=True)
    index = json.loads((cache / "decoded" / "nexuiz-data" / "index.json").read_text())
    for clip in index["clips"]:
        if "/coms/needhelp" not in clip["member"]:
            continue
        speech = load_audio(cache / "decoded" / "nexuiz-data" / clip["wav"])
        who = clip["member"].split("/player/")[1].split("/")[0]
        stem = Path(clip["member"]).stem
        for condition, snr in (("clean", 40.0), ("household", float(rng.uniform(0, 20)))):
            name = f"real/{who}-{stem}-{condition}.wav"
            rows.append(_Clip(name, "en", "help", "I need help (nexuiz)", f"nexuiz:{who}", condition, "val", round(snr, 1)))
            if not (out / name).is_file():
                pool = backgrounds["val"]
                sf.write(str(out / name), _mix(speech, pool[int(rng.integers(len(pool)))], snr, rng), SR, subtype="PCM_16")
    rows += _normal_files(out / "normal", cache, household_val, normal_minutes, rng)
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(_Clip.__dataclass_fields__)
        writer.writerows([[getattr(r, k) for k in _Clip.__dataclass_fields__] for r in rows])
    counts: dict[str, int] = defaultdict(int)
    for r in rows:
        counts[r.file.split("/")[0]] += 1
    return dict(counts)


def _decoded(cache: Path, package: str, member_marks: tuple[str, ...], exclude: tuple[str, ...] = (),
             trained: frozenset[str] = frozenset()) -> list[Path]:
    """Decoded clips of ``package`` whose member names one of ``member_marks`` and none of
    ``exclude``, and that is not a ``trained`` source (``package:member``)."""
    folder = cache / "decoded" / package
    index = json.loads((folder / "index.json").read_text())
    return [folder / c["wav"] for c in index["clips"]
            if any(m in c["member"] for m in member_marks) and not any(e in c["member"] for e in exclude)
            and f"{package}:{c['member']}" not in trained]


def _normal_files(folder: Path, cache: Path, household_val: Path, minutes: float, rng: np.random.Generator) -> list[_Clip]:
    """Ten-minute files of speech-heavy normal audio: prompts, voice lines, TTS talk, TV mixtures.
    No recorded source on the training side of the data build's split: the keyword network
    (``hearo spoken train``) trains on those."""
    folder.mkdir(parents=True, exist_ok=True)
    trained = frozenset(f"{s.package}:{s.path}" for s in part_sources(cache, "training"))
    asterisk = [p for pkg in ("asterisk-core-sounds-es-wav", "asterisk-core-sounds-fr-wav", "asterisk-core-sounds-it-wav",
                              "asterisk-core-sounds-ru-wav") for p in _decoded(cache, pkg, ("asterisk",), trained=trained)]
    voices = (_decoded(cache, "hedgewars-data", ("/voices/",), trained=trained)
              + _decoded(cache, "nexuiz-data", ("/coms/", "announcer"), ("needhelp",), trained=trained)
              + _decoded(cache, "0ad-data", ("audio/voice/",), trained=trained))
    music = (_decoded(cache, "wesnoth-1.16-music", ("",), trained=trained)
             + _decoded(cache, "0ad-data", ("audio/music",), trained=trained))
    ambience = _backgrounds(household_val, 20.0)
    kinds = ("asterisk", "voices", "tts", "tv")
    files = max(1, int(np.ceil(minutes / 10)))
    rows = []
    for k in range(files):
        kind = kinds[k % len(kinds)]
        name = f"normal/{kind}-{k:02d}.wav"
        rows.append(_Clip(name, "mixed", "normal", kind, "", kind, "val", 0.0))
        if (folder / Path(name).name).is_file():
            continue
        n = int(600 * SR)
        bed = np.resize(ambience[int(rng.integers(len(ambience)))], n).astype(np.float64)
        mix = bed / _rms(bed) * 0.01
        if kind == "tv":
            tune = load_audio(music[int(rng.integers(len(music)))]).astype(np.float64)
            mix += np.resize(tune, n) / _rms(tune) * 0.03
        pos = int(rng.uniform(0.2, 1.0) * SR)
        while pos < n - 8 * SR:
            if kind == "asterisk" or (kind == "tv" and rng.random() < 0.5):
                piece = load_audio(asterisk[int(rng.integers(len(asterisk)))])
            elif kind == "voices":
                piece = load_audio(voices[int(rng.integers(len(voices)))])
            else:
                language = "ko" if rng.random() < 0.5 else "en"
                text = str(rng.choice(KO_CONVERSATION if language == "ko" else EN_CONVERSATION))
                voice = f"ko+{rng.choice(KO_TUNE + KO_VAL)}" if language == "ko" else None
                engine, voice = ("espeak-ng", voice) if voice else tuple(EN_TUNE[int(rng.integers(len(EN_TUNE)))]) if rng.random() < 0.5 else tuple(EN_VAL[int(rng.integers(len(EN_VAL)))])
                piece = synthesise_speech(engine, voice, text, rng)
                if rng.random() < 0.3:
                    piece = shout(piece, rng)
            piece = piece[: 8 * SR].astype(np.float64)
            level = 0.05 * 10 ** (rng.uniform(0, 20) / 20) / _voiced_rms(piece)
            mix[pos: pos + piece.size] += piece * level
            pos += piece.size + int(rng.uniform(0.3, 2.5) * SR)
        peak = float(np.max(np.abs(mix)))
        sf.write(str(folder / Path(name).name), (mix / max(peak / 0.9, 1.0)).astype(np.float32), SR, subtype="PCM_16")
    return rows


@dataclass(frozen=True)
class _Heard:
    """One file as a session hears it: the phrases, the listener's stream, its length, and the
    model's windows (their ends and class scores; none without a model)."""

    hits: list[Any]
    stream: SpokenStream
    seconds: float
    ends: list[float]
    scores: np.ndarray | None


def _listen(path: Path, languages: tuple[str, ...], served: ServedModel | None) -> _Heard:
    audio, rate = sf.read(str(path), dtype="float32")
    assert rate == SR, path
    if served is None:
        hits, stream = listen(audio, languages)
        return _Heard(hits, stream, audio.size / SR, [], None)
    windows, _ = stream_clip(audio, SR, served.spec, served.hop_frames, served.detector.smoothing_windows, False,
                             served.gateway.ring_buffer_s)
    scores, tags = predict_windows(served.classifier, windows)
    ends = [w.end_s for w in windows]
    hits, stream = listen(audio, languages, tags=list(zip(ends, tags)))
    return _Heard(hits, stream, audio.size / SR, ends, scores)


def _fired(heard: _Heard, served: ServedModel | None) -> list[DetectionEvent]:
    """The detections the spoken evidence makes over a stream, as a session's detector makes
    them (its window hop, refractory period and thresholds): with the model, its scores back a
    phrase as they do live, and only detections that carry spoken evidence count (what the
    model fires alone is the model issue's figure); without, every window is "normal"."""
    detector = Detector(served.detector if served else DetectorConfig.build(0.5), spoken=SpokenFusion())
    assert isinstance(detector.spoken, SpokenFusion)
    detector.spoken.hear(sorted(heard.hits, key=lambda h: h.end_s))
    if heard.scores is not None:
        events = [e for row, t in zip(heard.scores, heard.ends) for e in detector.update(row, t)]
        return [e for e in events if e.spoken]
    normal = np.zeros(NUM_CLASSES)
    normal[NORMAL.id] = 1.0
    events = []
    for t in np.arange(2.0, heard.seconds + 2.5, detector.config.hop_s):
        events += detector.update(normal, float(t))
    return events


def evaluate_spoken(folder: Path, languages: tuple[str, ...] = ("ko", "en"), parts: tuple[str, ...] = ("positives", "real", "normal"),
                    household: Path | None = None, json_out: Path | None = None,
                    model: str | Path | None = "default") -> dict[str, Any]:
    """Keyword recall on the positives, false keywords and false detections per hour on the
    normal files (and on ``household`` audio when given), recogniser CPU and gate pass rate.
    ``model`` judges every window as the inference service would: its AudioSet tags gate the
    recogniser and mark shouts, its scores back phrases (None: no model, every speech segment
    reaches the recogniser and only the level marks a shout)."""
    served = None if model is None else ServedModel.load(model, 0.5, 3, False, None)
    with open(folder / "index.csv", newline="", encoding="utf-8") as f:
        rows = [r for r in csv.DictReader(f) if r["file"].split("/")[0] in parts]
    recall: dict[str, list[int]] = defaultdict(list)
    clips, false_hits, false_detections = [], [], []
    normal_s = cpu_s = heard_s = passed_s = 0.0
    started = time.time()
    for row in rows:
        heard = _listen(folder / row["file"], languages, served)
        hits = heard.hits
        cpu_s, heard_s, passed_s = (a + b for a, b in zip((cpu_s, heard_s, passed_s), heard.stream.figures()))
        if row["class_key"] == "normal":
            normal_s += heard.seconds
            false_hits += [{"file": row["file"], "time_s": h.end_s, "phrase": h.text, "conf": h.confidence, "shouted": h.shouted} for h in hits]
            false_detections += [{"file": row["file"], "time_s": d.stream_time_s, "class": d.emergency_class.key,
                                  "summary": d.spoken} for d in _fired(heard, served)]
            continue
        ok = int(any(h.class_key == row["class_key"] for h in hits))
        wrong = [h.text for h in hits if h.class_key != row["class_key"]]
        for key in (f"{row['split']}/{row['language']}", f"{row['split']}/{row['language']}/{row['condition']}",
                    f"{row['split']}/{row['language']}/{row['class_key']}", f"{row['file'].split('/')[0]}/{row['split']}"):
            recall[key].append(ok)
        clips.append({**row, "heard": [h.text for h in hits], "hit": ok, "wrong_class": wrong})
    household_report = None
    if household is not None:
        h_hits, h_det, h_s = [], [], 0.0
        for path in sorted(household.glob("*.wav")):
            heard = _listen(path, languages, served)
            cpu_s, heard_s, passed_s = (a + b for a, b in zip((cpu_s, heard_s, passed_s), heard.stream.figures()))
            h_s += heard.seconds
            h_hits += [{"file": path.name, "time_s": h.end_s, "phrase": h.text, "conf": h.confidence} for h in heard.hits]
            h_det += [{"file": path.name, "time_s": d.stream_time_s, "class": d.emergency_class.key, "summary": d.spoken}
                      for d in _fired(heard, served)]
        household_report = {"hours": round(h_s / 3600, 3), "false_keywords": len(h_hits),
                            "false_keywords_per_hour": round(len(h_hits) / (h_s / 3600), 2) if h_s else 0.0,
                            "false_detections": h_det, "keywords": h_hits}
    report = {
        "languages": list(languages),
        "model": None if served is None else served.label,
        "keyword_recall": {k: {"recall": round(float(np.mean(v)), 3), "clips": len(v)} for k, v in sorted(recall.items())},
        "normal_hours": round(normal_s / 3600, 3),
        "false_keywords": len(false_hits),
        "false_keywords_per_hour": round(len(false_hits) / (normal_s / 3600), 2) if normal_s else None,
        "false_detections_per_hour": round(len(false_detections) / (normal_s / 3600), 2) if normal_s else None,
        "false_detections": false_detections,
        "false_keyword_list": false_hits,
        "household": household_report,
        "recogniser_cpu_share_of_stream": round(cpu_s / heard_s, 4) if heard_s else None,
        "gate_pass_rate": round(passed_s / heard_s, 3) if heard_s else None,
        "wall_s": round(time.time() - started, 1),
        "clips": clips,
    }
    if json_out is not None:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=1, ensure_ascii=False))
    return report
