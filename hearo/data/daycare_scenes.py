"""Composed daycare scenes for the child-safety rule's tuning and evaluation (docs/daycare.md).

Six scene types, 20 s each, over a daycare bed (room tone, distant speech or music):
``positive`` (a child crying, an adult shouting and blows, all within about 10 s),
``crying`` (crying alone), ``play`` (children shouting and laughing, an adult calling over
them), ``shouting`` (an adult shouting alone), ``blows`` (hammering and dropped things alone)
and ``ordinary`` (calm speech, music, a laugh, a toy dropped).

Material: only the allow-listed packages' decoded clips (``hearo data build``'s cache) and
speech synthesis. The allow-listed packages hold no real crying (none of their files is a cry,
a sob or a baby), so the crying is synthesised (``child_cry``: a 300-600 Hz voiced wail with
harmonics, vibrato, a falling contour and breathy gasps between bursts): the figures say how the
rule does on that stand-in, not on real children. Adult shouting is English TTS (espeak-ng
and flite, adult voices) through :func:`hearo.data.synth.shout`; children's shouting is
espeak-ng at a child's pitch through the same processing, with the packages' laughs.

Every source file, phrase and voice belongs to one side only: ``tuning`` or ``held_apart``
(``side_of``), so the held-apart figures come from sound the parameters never met.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
from scipy import signal

from hearo.data.packages import SAMPLE_RATE, to_mono_16k
from hearo.data.synth import shout
from shared.augment import room_impulse

SR = SAMPLE_RATE
SCENE_S = 20.0
SCENE_TYPES = ("positive", "crying", "play", "shouting", "blows", "ordinary")
SIDES = ("tuning", "held_apart")

_ANGRY = ("Stop it right now!", "What did I tell you?", "Shut up and sit down!", "I said be quiet!",
          "Get over here now!", "Stop crying or else!", "Do you hear me?", "Enough! Stop it!")  # fmt: skip
_CALLS = ("Lunch time, everybody!", "Line up at the door!", "Shoes on, we're going out!", "Clean up time!")
_KIDS = ("My turn! My turn!", "Catch me!", "Yay!", "You're it!", "Again! Again!", "Look at me!")
_CALM = ("Let's read a story together.", "Who wants some water?", "Put the blocks in the box, please.",
         "Good job, well done.", "Time for a nap now.", "Wash your hands, please.")  # fmt: skip
_ADULT_VOICES = (("espeak-ng", "en+m3"), ("flite", "kal"), ("espeak-ng", "en-us+f3"), ("flite", "awb"),
                 ("espeak-ng", "en-gb+m5"), ("flite", "slt"), ("espeak-ng", "en+klatt"), ("flite", "rms"))  # fmt: skip


# Blows and hits: the packages' punches, slaps, swings that land and bodies hitting things.
_BLOWS = ("slap", "punch", "fist", "thwack", "swing_then_hit", "baseballbat", "bodyimpact", "bump")


def side_of(name: str) -> str:
    """Which side a source (file, phrase, voice) belongs to, by a hash of its name."""
    return SIDES[hashlib.sha1(name.encode()).digest()[0] % 2]


@dataclass
class Pools:
    """Decoded source clips per role, each with its name (for the side split)."""

    blows: list[Path]
    hammering: list[Path]
    laughs: list[Path]
    bed: list[Path]
    speech: list[Path]


def load_pools(decoded: Path, side: str) -> Pools:
    """The allow-listed clips (``hearo data build``'s decode cache) of one side, per role."""
    roles: dict[str, list[Path]] = {"blows": [], "hammering": [], "laughs": [], "bed": [], "speech": []}
    for index in sorted(decoded.glob("*/index.json")):
        for clip in json.loads(index.read_text())["clips"]:
            member, name = clip["member"], clip["member"].rsplit("/", 1)[-1].lower()
            role = (
                # A character's voice line ("Firepunch!") is speech, not a blow.
                "blows" if any(m in name for m in _BLOWS) and "/voices/" not in member.lower()
                else "hammering" if any(m in name for m in ("hammer", "thud", "box_hitting", "hitground"))
                else "laughs" if "laugh" in name
                else "bed" if clip["label"] == "background" and "ambien" in member.lower()
                else "speech" if "asterisk" in clip["package"] and clip["seconds"] > 1.0
                else None
            )  # fmt: skip
            if role is not None and side_of(f"{clip['package']}/{member}") == side:
                roles[role].append(index.parent / clip["wav"])
    return Pools(**roles)


def child_cry(rng: np.random.Generator, seconds: float) -> np.ndarray:
    """Synthetic crying: voiced bursts of 0.6-1.6 s (F0 300-600 Hz, falling, with vibrato and
    jitter, a formant-like tilt) separated by short gasps of breath noise."""
    out: list[np.ndarray] = []
    while sum(x.size for x in out) < seconds * SR:
        n = int(rng.uniform(0.6, 1.6) * SR)
        t = np.arange(n) / SR
        f0 = rng.uniform(380, 600) * (1 - rng.uniform(0.1, 0.35) * t / t[-1])
        f0 *= 1 + 0.03 * np.sin(2 * np.pi * rng.uniform(5, 9) * t) + 0.01 * rng.standard_normal(n).cumsum() / np.sqrt(n)
        phase = 2 * np.pi * np.cumsum(f0) / SR
        voiced = sum(np.sin(k * phase) / k ** rng.uniform(0.8, 1.4) for k in range(1, 9))
        envelope = np.minimum(1, t / 0.08) * np.minimum(1, (t[-1] - t) / 0.15)
        burst = voiced * envelope + 0.05 * rng.standard_normal(n) * envelope
        sos = signal.butter(2, [rng.uniform(700, 1100), rng.uniform(2500, 4000)], btype="band", fs=SR, output="sos")
        burst = burst + 0.8 * signal.sosfilt(sos, burst)
        gasp = 0.08 * rng.standard_normal(int(rng.uniform(0.15, 0.45) * SR))
        out += [burst / np.max(np.abs(burst)), gasp]
    return np.concatenate(out)[: int(seconds * SR)].astype(np.float32)


def tts(engine: str, voice: str, text: str, pitch: int, cache: Path) -> np.ndarray:
    """``text`` spoken by ``voice`` (cached by its arguments), float 16 kHz mono."""
    key = hashlib.sha1(f"{engine}|{voice}|{text}|{pitch}".encode()).hexdigest()[:16]
    path = cache / f"{key}.wav"
    if not path.is_file():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "tts.wav"
            cmd = (["espeak-ng", "-v", voice, "-p", str(pitch), "-s", "170", "-w", str(out), text] if engine == "espeak-ng"
                   else ["flite", "-voice", voice, "-t", text, "-o", str(out)])  # fmt: skip
            subprocess.run(cmd, check=True, capture_output=True)
            audio, rate = sf.read(str(out), dtype="float32", always_2d=True)
        sf.write(str(path), to_mono_16k(audio, rate), SR, subtype="PCM_16")
    return sf.read(str(path), dtype="float32")[0]


class SceneMaker:
    """Composes the scenes of one side from its own sources."""

    def __init__(self, pools: Pools, side: str, tts_cache: Path) -> None:
        self.pools = pools
        self.tts_cache = tts_cache
        self.voices = [v for v in _ADULT_VOICES if side_of("|".join(v)) == side] or list(_ADULT_VOICES[:1])
        self.angry = [p for p in _ANGRY if side_of(p) == side]
        self.calls = [p for p in _CALLS if side_of(p) == side] or list(_CALLS[:1])
        self.kids = [p for p in _KIDS if side_of(p) == side] or list(_KIDS[:1])
        self.calm = [p for p in _CALM if side_of(p) == side] or list(_CALM[:1])

    def _clip(self, pool: list[Path], rng: np.random.Generator) -> np.ndarray:
        return sf.read(str(pool[int(rng.integers(len(pool)))]), dtype="float32")[0]

    def _adult(self, phrases: list[str], rng: np.random.Generator, shouted: bool) -> np.ndarray:
        engine, voice = self.voices[int(rng.integers(len(self.voices)))]
        speech = tts(engine, voice, phrases[int(rng.integers(len(phrases)))], 50, self.tts_cache)
        return shout(speech, rng) if shouted else speech

    def _child(self, rng: np.random.Generator) -> np.ndarray:
        voice = ("en+f5", "en-us+f4")[int(rng.integers(2))]
        return shout(tts("espeak-ng", voice, self.kids[int(rng.integers(len(self.kids)))], 99, self.tts_cache), rng)

    def compose(self, scene: str, rng: np.random.Generator) -> np.ndarray:
        """One ``scene`` of :data:`SCENE_TYPES`, float32 16 kHz mono, peak at most 0.9."""
        mix = np.zeros(int(SCENE_S * SR))

        def place(audio: np.ndarray, at_s: float, level_db: float) -> None:
            lo = int(at_s * SR)
            piece = audio[: max(mix.size - lo, 0)]
            rms = float(np.sqrt(np.mean(piece**2))) if piece.size else 0.0
            if rms > 0:
                mix[lo: lo + piece.size] += piece / rms * 10 ** (level_db / 20)

        def scatter(draw: Callable[[], np.ndarray], count: int, start: float, end: float, level: tuple[float, float]) -> None:
            for _ in range(count):
                place(draw(), rng.uniform(start, end), rng.uniform(*level))

        bed = self._clip(self.pools.bed, rng)
        place(np.tile(bed, int(mix.size / max(bed.size, 1)) + 1)[: mix.size], 0.0, rng.uniform(-50, -40))
        scatter(lambda: self._clip(self.pools.speech, rng), 3, 0, 18, (-42, -34))  # distant voices
        onset = rng.uniform(2, 6)
        if scene in ("positive", "crying"):
            place(child_cry(rng, rng.uniform(8, 12)), onset, rng.uniform(-26, -18))
        if scene in ("positive", "shouting"):
            scatter(lambda: self._adult(self.angry, rng, shouted=True), int(rng.integers(2, 5)), onset, onset + 8, (-24, -16))
        if scene in ("positive", "blows"):
            scatter(lambda: self._clip(self.pools.blows, rng), int(rng.integers(3, 7)), onset, onset + 8, (-22, -14))
        if scene == "blows":
            scatter(lambda: self._clip(self.pools.hammering, rng), int(rng.integers(4, 9)), 1, 18, (-24, -14))
        if scene == "play":
            scatter(lambda: self._child(rng), int(rng.integers(4, 8)), 1, 18, (-26, -16))
            scatter(lambda: self._clip(self.pools.laughs, rng), int(rng.integers(2, 5)), 1, 18, (-28, -18))
            scatter(lambda: self._adult(self.calls, rng, shouted=True), 1, 4, 14, (-24, -18))
        if scene == "ordinary":
            scatter(lambda: self._adult(self.calm, rng, shouted=False), int(rng.integers(2, 5)), 1, 17, (-30, -22))
            scatter(lambda: self._clip(self.pools.laughs, rng), 1, 1, 17, (-32, -24))
            scatter(lambda: self._clip(self.pools.hammering, rng), 1, 1, 17, (-34, -26))
        if rng.random() < 0.6:
            mix = signal.fftconvolve(mix, room_impulse(rng, rng.uniform(0.2, 0.6), rng.uniform(0.5, 0.9)))[: mix.size]
        peak = float(np.max(np.abs(mix))) or 1.0
        return (mix * min(1.0, 0.9 / peak)).astype(np.float32)
