"""Synthesised sources (``../shared/data/sources.md``): standard alarm patterns, physical noises
and speech from espeak-ng (Korean, English), flite and festival (English).

Every generator takes a ``numpy.random.Generator`` and returns float32 mono at 16 kHz with a
peak of about 1, so a build is reproducible from its seed. Patterns are randomised in tone,
duty and harmonics, as the standards allow, and may start mid-pattern.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from hearo.data.packages import SAMPLE_RATE, to_mono_16k

__all__ = ["GENERATORS", "TTS_PHRASES", "Phrase", "synthesise_speech", "tts_voices"]

SR = SAMPLE_RATE


def _normalise(x: np.ndarray) -> np.ndarray:
    peak = float(np.max(np.abs(x))) or 1.0
    return (x / peak).astype(np.float32)


def _tone(rng: np.random.Generator, freq: float, seconds: float, square: bool = False) -> np.ndarray:
    t = np.arange(int(seconds * SR)) / SR
    if square:
        return np.sign(np.sin(2 * np.pi * freq * t)) * 0.8
    # A piezo horn: the fundamental plus random odd/even harmonics and a little vibrato.
    vibrato = 1 + 0.003 * np.sin(2 * np.pi * rng.uniform(3, 12) * t)
    phase = 2 * np.pi * freq * np.cumsum(vibrato) / SR
    out = np.sin(phase)
    for k in (2, 3, 4):
        if k * freq < SR / 2:
            out += rng.uniform(0.0, 0.4 / k) * np.sin(k * phase)
    return out


def _pattern(rng: np.random.Generator, tone: np.ndarray, on_s: float, off_s: float, pulses: int,
             rest_s: float, seconds: float) -> np.ndarray:
    """Pulses of ``tone`` (on/off) in groups of ``pulses`` with a rest, starting at a random phase."""
    ramp = int(0.004 * SR)
    on, off, rest = int(on_s * SR), int(off_s * SR), int(rest_s * SR)
    pulse = tone[:on].copy()
    pulse[:ramp] *= np.linspace(0, 1, ramp)
    pulse[-ramp:] *= np.linspace(1, 0, ramp)
    group = np.concatenate([np.concatenate([pulse, np.zeros(off)]) for _ in range(pulses)])
    group = np.concatenate([group[: len(group) - off], np.zeros(rest)])
    total = int(seconds * SR)
    reps = total // len(group) + 2
    cycle = np.tile(group, reps)
    start = int(rng.integers(0, len(group)))
    return cycle[start: start + total]


def smoke_alarm(rng: np.random.Generator) -> np.ndarray:
    """ISO 8201 temporal-three: 0.5 s on, 0.5 s off, x3, 1.5 s off; piezo 2.8-3.5 kHz or 520 Hz square."""
    duty = rng.uniform(0.9, 1.1)
    if rng.random() < 0.25:
        tone = _tone(rng, rng.uniform(500, 540), 1.0, square=True)
    else:
        tone = _tone(rng, rng.uniform(2800, 3500), 1.0)
    # Often longer than a scene: scenes and training crops cut it at every phase, and the
    # long-normal and stream evaluations hear whole alarms.
    return _normalise(_pattern(rng, tone, 0.5 * duty, 0.5 * (2 - duty), 3, 1.5, rng.uniform(4.0, 12.0)))


def co_alarm(rng: np.random.Generator) -> np.ndarray:
    """UL 2034 / NFPA 720 temporal-four: four 100 ms pulses 100 ms apart, then about 5 s off."""
    duty = rng.uniform(0.9, 1.1)
    tone = _tone(rng, rng.uniform(2700, 3600), 0.2)
    return _normalise(_pattern(rng, tone, 0.1 * duty, 0.1 * (2 - duty), 4, rng.uniform(1.0, 5.0), rng.uniform(4.0, 6.0)))


def gas_hiss(rng: np.random.Generator) -> np.ndarray:
    """A leaking valve: white noise band-passed somewhere in 2-8 kHz with slow amplitude flutter."""
    n = int(rng.uniform(2.5, 5.0) * SR)
    low = rng.uniform(1500, 3500)
    high = min(rng.uniform(low + 1500, 7800), 7900)
    sos = signal.butter(4, [low, high], btype="band", fs=SR, output="sos")
    hiss = signal.sosfilt(sos, rng.standard_normal(n))
    t = np.arange(n) / SR
    flutter = 1 + 0.25 * np.sin(2 * np.pi * rng.uniform(0.3, 4) * t) * rng.random()
    onset = np.minimum(1.0, t / rng.uniform(0.01, 0.4))
    return _normalise(hiss * flutter * onset)


def electric_hum(rng: np.random.Generator) -> np.ndarray:
    """Mains buzz: 50/60 Hz (or 100/120 Hz magnetostriction) with many harmonics, clipped square-ish."""
    n = int(rng.uniform(2.5, 5.0) * SR)
    t = np.arange(n) / SR
    base = rng.choice([50.0, 60.0, 100.0, 120.0])
    wave = sum(rng.uniform(0.2, 1.0) / k * np.sin(2 * np.pi * base * k * t + rng.uniform(0, 6.3)) for k in range(1, 30))
    wave = np.tanh(rng.uniform(1.5, 6.0) * wave)
    return _normalise(wave + 0.05 * rng.standard_normal(n))


def electric_arc(rng: np.random.Generator) -> np.ndarray:
    """Arc crackle: bursts of random impulses through a band-pass, often over a buzz."""
    n = int(rng.uniform(2.5, 5.0) * SR)
    impulses = (rng.random(n) < rng.uniform(0.002, 0.02)) * rng.standard_normal(n)
    bursts = np.repeat(rng.random(n // 800 + 1) < rng.uniform(0.3, 0.8), 800)[:n]
    low = rng.uniform(800, 3000)
    sos = signal.butter(2, [low, min(low * rng.uniform(2, 5), 7800)], btype="band", fs=SR, output="sos")
    crackle = signal.sosfilt(sos, impulses * bursts)
    hum = np.resize(electric_hum(rng), n)
    return _normalise(_normalise(crackle) + rng.uniform(0, 0.5) * hum)


def glass_break(rng: np.random.Generator) -> np.ndarray:
    """Breaking glass: a noise burst, many decaying high-Q resonances, then scattered tinkles."""
    n = int(rng.uniform(1.5, 3.0) * SR)
    t = np.arange(n) / SR
    out = rng.standard_normal(n) * np.exp(-t / rng.uniform(0.01, 0.05))
    for _ in range(int(rng.integers(15, 40))):
        f = rng.uniform(2000, 7500)
        out += rng.uniform(0.1, 0.6) * np.sin(2 * np.pi * f * t + rng.uniform(0, 6.3)) * np.exp(-t / rng.uniform(0.05, 0.4))
    for _ in range(int(rng.integers(5, 25))):
        start = int(rng.uniform(0.1, 0.9) * n)
        length = int(0.08 * SR)
        tt = np.arange(min(length, n - start)) / SR
        f = rng.uniform(3000, 7800)
        out[start: start + tt.size] += rng.uniform(0.05, 0.3) * np.sin(2 * np.pi * f * tt) * np.exp(-tt / 0.02)
    sos = signal.butter(2, 1000, btype="high", fs=SR, output="sos")
    return _normalise(signal.sosfilt(sos, out))


def knocking(rng: np.random.Generator) -> np.ndarray:
    """Banging on a door or wall: groups of 2-5 thuds at 2-4 Hz with 1-3 s pauses, muffled."""
    out = np.zeros(int(rng.uniform(4.0, 6.0) * SR))
    pos = int(rng.uniform(0, 0.5) * SR)
    while pos < out.size:
        rate = rng.uniform(2.0, 4.0)
        for _ in range(int(rng.integers(2, 6))):
            if pos >= out.size:
                break
            length = int(0.15 * SR)
            tt = np.arange(length) / SR
            f = rng.uniform(60, 250)
            hit = (np.sin(2 * np.pi * f * tt) + 0.5 * rng.standard_normal(length) * np.exp(-tt / 0.005)) * np.exp(-tt / rng.uniform(0.02, 0.06))
            end = min(pos + length, out.size)
            out[pos:end] += rng.uniform(0.5, 1.0) * hit[: end - pos]
            pos += int(SR / rate)
        pos += int(rng.uniform(1.0, 3.0) * SR)
    sos = signal.butter(2, rng.uniform(800, 2500), btype="low", fs=SR, output="sos")
    return _normalise(signal.sosfilt(sos, out))


def beeps(rng: np.random.Generator) -> np.ndarray:
    """Hard negative: microwave / oven / alarm-clock beeps, regular and not in a temporal pattern."""
    f = rng.uniform(1000, 4000)
    on = rng.uniform(0.08, 0.4)
    return _normalise(_pattern(rng, _tone(rng, f, 1.0), on, rng.uniform(0.08, 0.4), int(rng.integers(1, 5)),
                               rng.uniform(0.0, 1.0), rng.uniform(3.0, 5.0)))


def phone_ring(rng: np.random.Generator) -> np.ndarray:
    """Hard negative: a phone ring (two tones, 20-25 Hz warble, 2 s on 4 s off or double ring)."""
    n = int(1.0 * SR)
    t = np.arange(n) / SR
    f1, f2 = rng.uniform(400, 1200), rng.uniform(400, 1200)
    warble = (np.sin(2 * np.pi * rng.uniform(15, 25) * t) > 0).astype(float)
    tone = (np.sin(2 * np.pi * f1 * t) + np.sin(2 * np.pi * f2 * t)) * (0.6 + 0.4 * warble)
    return _normalise(_pattern(rng, tone, rng.uniform(0.4, 1.0), rng.uniform(0.2, 0.4), 2, 2.0, 5.0))


# (class key or "negative", recipe name) -> generator
GENERATORS: dict[tuple[str, str], Callable[[np.random.Generator], np.ndarray]] = {
    ("fire", "smoke_alarm_t3"): smoke_alarm,
    ("gas", "co_alarm_t4"): co_alarm,
    ("gas", "leak_hiss"): gas_hiss,
    ("negative", "mains_hum"): electric_hum,  # a steady hum is not a fault (labels.py, rule 3)
    ("electric", "arc_crackle"): electric_arc,
    ("crime", "glass_break"): glass_break,
    ("trapped", "knocking"): knocking,
    ("negative", "beeps"): beeps,
    ("negative", "phone_ring"): phone_ring,
}


@dataclass(frozen=True)
class Phrase:
    label: str  # class key, or "negative" for calm everyday speech
    lang: str  # "ko" or "en"
    text: str


TTS_PHRASES: tuple[Phrase, ...] = tuple(
    [Phrase("help", "ko", t) for t in (
        "살려 주세요", "살려 주세요 제발", "누구 없어요", "119 불러주세요", "여기요 도와줘요",
        "도와주세요", "사람 살려", "도와줘요 여기 사람 있어요", "제발 도와주세요", "구해 주세요")]
    + [Phrase("help", "en", t) for t in (
        "Help!", "Help me, please!", "Somebody help!", "Call nine one one!", "Please help me!",
        "Help, is anyone there?")]
    + [Phrase("trapped", "ko", t) for t in (
        "갇혔어요 문 좀 열어주세요", "엘리베이터에 갇혔어요", "문이 안 열려요 꺼내 주세요", "여기 안에 사람 있어요")]
    + [Phrase("trapped", "en", t) for t in ("I'm trapped, open the door!", "I'm stuck in here, let me out!")]
    + [Phrase("gas", "ko", t) for t in ("가스가 누출되었습니다 대피하십시오", "가스 냄새가 나요", "가스 경보 가스 경보")]
    + [Phrase("negative", "ko", t) for t in (
        "오늘 날씨가 참 좋네요", "저녁 뭐 먹을까", "내일 아침에 회의가 있어요", "텔레비전 좀 꺼 줄래",
        "지금 몇 시예요", "버스가 곧 도착합니다", "전화 왔어요", "다음 역은 시청입니다")]
    + [Phrase("negative", "en", t) for t in (
        "The meeting starts at ten.", "What would you like for dinner?", "Turn the TV down a little.",
        "The next station is City Hall.", "I'll call you back later.", "It is going to rain tomorrow.")]
    # Shouted and excited everyday speech: the same shout processing as the distress phrases
    # (``build._event_audio``), so a raised voice alone never means an emergency.
    + [Phrase("negative", "ko", t) for t in (
        "골! 골이야!", "빨리 와 밥 먹어!", "생일 축하해!", "야 이거 봐 대박이다!", "조용히 좀 해!", "엄마 나 왔어!")]
    + [Phrase("negative", "en", t) for t in (
        "Goal! Did you see that?", "Dinner is ready, come down!", "Happy birthday!", "Hurry up, we're late!",
        "Turn that music down!", "Yes! We won!")]
)

_KO_VARIANTS = ("klatt", "klatt2", "Andy", "Annie", "Denis", "Gene", "Michael", "f5", "m5", "m6", "whisper", "croak")
_EN_ESPEAK = ("en+m3", "en-us+f3", "en+klatt", "en-gb+m5")
_FLITE_VOICES = ("kal", "kal16", "awb", "rms", "slt")


def tts_voices(lang: str) -> list[tuple[str, str]]:
    """(engine, voice) pairs available on this machine for ``lang``."""
    voices: list[tuple[str, str]] = []
    if shutil.which("espeak-ng"):
        voices += [("espeak-ng", f"ko+{v}") for v in _KO_VARIANTS] if lang == "ko" else [("espeak-ng", v) for v in _EN_ESPEAK]
    if lang == "en" and shutil.which("flite"):
        voices += [("flite", v) for v in _FLITE_VOICES]
    return voices


def synthesise_speech(engine: str, voice: str, text: str, rng: np.random.Generator,
                      pitch_hz: tuple[float, float] | None = None) -> np.ndarray:
    """``text`` spoken by ``voice`` at a random speed and pitch, float32 16 kHz mono. ``engine``
    is ``espeak-ng``, ``flite`` or ``festival`` (a diphone voice name without ``_diphone``: kal,
    ked). flite and festival keep their voice's own pitch unless ``pitch_hz`` gives a range for
    its mean F0 (they have few voices; another pitch makes more speakers of them)."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "tts.wav"
        if engine == "espeak-ng":
            cmd = ["espeak-ng", "-v", voice, "-s", str(int(rng.uniform(120, 200))), "-p", str(int(rng.uniform(30, 80))),
                   "-w", str(out), text]
        elif engine == "festival":
            stretch = rng.uniform(0.8, 1.2)
            (Path(tmp) / "text.txt").write_text(text, encoding="utf-8")
            cmd = ["text2wave", "-eval", f"(voice_{voice}_diphone)", "-eval", f"(Parameter.set 'Duration_Stretch {stretch:.2f})",
                   "-o", str(out), str(Path(tmp) / "text.txt")]
            if pitch_hz is not None:
                f0 = rng.uniform(*pitch_hz)
                cmd[5:5] = ["-eval", f"(set! int_lr_params '((target_f0_mean {f0:.0f}) (target_f0_std {f0 * 0.15:.0f}) "
                                     "(model_f0_mean 170) (model_f0_std 34)))"]
        else:
            stretch = rng.uniform(0.8, 1.2)
            cmd = ["flite", "-voice", voice, "--setf", f"duration_stretch={stretch:.2f}", "-t", text, "-o", str(out)]
            if pitch_hz is not None:
                cmd[3:3] = ["--setf", f"int_f0_target_mean={rng.uniform(*pitch_hz):.0f}"]
        subprocess.run(cmd, check=True, capture_output=True)
        audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
    return _normalise(to_mono_16k(audio, rate))


def shout(speech: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shouted speech: faster and higher (resampled), soft-clipped."""
    factor = rng.uniform(1.05, 1.25)
    faster = signal.resample(speech, max(int(speech.size / factor), 1))
    return _normalise(np.tanh(rng.uniform(1.5, 4.0) * faster))
