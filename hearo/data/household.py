"""``hearo data household``: hours of composed household audio with no emergency in it.

Detection must be judged where people live: a minute of a home holds 117 windows, an hour
7,200, and a family turns Hear-o off after a few false alarms. This composes one- to ten-minute
files of eight kinds of household scene from the data build's normal material (backgrounds and
hard negatives of the allow-listed packages, negative TTS speech, synthesised beeps, rings and
doorbells):

- ``conversation``: turns of speech in several languages over room tone, now and then a phone;
- ``tv_radio``: programmes of music and speech through a small speaker, with excited speech;
- ``kitchen``: running machines and water, beeps, steps, doors, talk;
- ``doorbell``: a quiet home, a doorbell, the door, voices;
- ``alarm_morning``: an alarm clock beeping for tens of seconds, then radio and talk;
- ``street``: traffic, wind or rain through an open window, horns, passers-by;
- ``children``: shouting and laughing speech, cheers, music;
- ``party``: loud music, overlapping voices, cheers and laughter.

Each part draws on its own sources. ``--part training`` uses the training side of the data
build's split (``split_groups`` with the same packages and seed): household scenes the trainer
mixes into its normal examples. The validation side is halved by source group:
``--part calibration`` (what the trainer sets the operating point on) and ``--part evaluation``
(the long-normal track ``hearo eval --household`` reports false alarms per hour on). No
training source and no calibration source is in the evaluation track. ``index.csv`` lists each
file's scene and sources.
"""

from __future__ import annotations

import csv
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import soundfile as sf
from rich.progress import Progress
from scipy import signal

from hearo.data.build import BuildConfig, BuildSummary, Source, collect_sources, split_groups
from hearo.data.labels import BACKGROUND, NEGATIVE
from hearo.data.packages import SAMPLE_RATE
from hearo.data.synth import beeps, phone_ring, shout
from services.inference.training.manifest import is_calibration_group
from shared.augment import band_limit, room_impulse

__all__ = ["PARTS", "SCENES", "HouseholdConfig", "HouseholdFile", "ScenePools", "build_household", "part_sources", "scene_pools"]

SR = SAMPLE_RATE
PARTS = ("training", "calibration", "evaluation")


@dataclass(frozen=True)
class HouseholdConfig:
    part: str = "evaluation"
    minutes: float = 180.0
    seed: int = 0  # the composition's; the split follows ``build.seed``
    build: BuildConfig = BuildConfig()

    def __post_init__(self) -> None:
        if self.part not in PARTS:
            raise ValueError(f"part must be one of {PARTS}, got {self.part!r}")
        if self.minutes <= 0:
            raise ValueError("minutes must be positive")


@dataclass
class ScenePools:
    speech: list[Source] = field(default_factory=list)
    music: list[Source] = field(default_factory=list)
    ambience: list[Source] = field(default_factory=list)
    events: list[Source] = field(default_factory=list)

    def pick(self, kind: str, rng: np.random.Generator, used: set[str]) -> np.ndarray:
        pool: list[Source] = getattr(self, kind)
        source = pool[int(rng.integers(len(pool)))]
        used.add(f"{source.package}:{source.path}")
        return source.audio.astype(np.float64)


_MUSIC_MARKS = ("music", "Music", "tunes", "Musics")
_SPEECH_MARKS = ("voice", "speech", "coms/", "announcer", "comments", "asterisk")


def scene_pools(sources: list[Source]) -> ScenePools:
    """``sources`` sorted into what a scene draws on: speech, music, ambience and events."""
    pools = ScenePools()
    for source in sources:
        where = f"{source.package}:{source.path}"
        if source.label == NEGATIVE:
            (pools.speech if source.recipe == "tts" else pools.events).append(source)
        elif any(mark in where for mark in _MUSIC_MARKS):
            pools.music.append(source)
        elif any(mark in where for mark in _SPEECH_MARKS):
            pools.speech.append(source)
        else:
            pools.ambience.append(source)
    return pools


def doorbell(rng: np.random.Generator) -> np.ndarray:
    """A two-tone chime (ding-dong), struck bars decaying over about a second each."""
    t = np.arange(int(1.2 * SR)) / SR
    high = rng.uniform(600, 900)
    low = high * rng.uniform(0.75, 0.85)
    bar = lambda f: (np.sin(2 * np.pi * f * t) + 0.3 * np.sin(2 * np.pi * 2.76 * f * t)) * np.exp(-t / rng.uniform(0.3, 0.7))  # noqa: E731
    return np.concatenate([bar(high)[: int(0.5 * SR)], bar(low)]) * 0.8


class _Track:
    """One file being composed: a bed plus events placed at times, mixed at relative levels."""

    def __init__(self, seconds: float, rng: np.random.Generator) -> None:
        self.n = int(seconds * SR)
        self.mix = np.zeros(self.n)
        self.rng = rng

    def bed(self, audio: np.ndarray, level_db: float) -> None:
        reps = self.n // max(audio.size, 1) + 1
        looped = np.tile(audio, reps)[: self.n] if audio.size < self.n else audio[
            int(self.rng.integers(0, audio.size - self.n + 1)):][: self.n]
        self.mix += _at_level(looped, level_db)

    def place(self, audio: np.ndarray, at_s: float, level_db: float) -> float:
        """Place ``audio`` at ``at_s``; returns where it ends (s)."""
        lo = int(at_s * SR)
        if lo >= self.n:
            return at_s
        piece = audio[: self.n - lo]
        self.mix[lo: lo + piece.size] += _at_level(piece, level_db)
        return (lo + piece.size) / SR

    def sequence(self, draw: Callable[[], np.ndarray], level_db: tuple[float, float], gap_s: tuple[float, float],
                 start_s: float = 0.0, until_s: float | None = None) -> None:
        """Back-to-back pieces from ``draw`` with gaps, from ``start_s`` to ``until_s``."""
        at, end = start_s, self.n / SR if until_s is None else until_s
        while at < end:
            at = self.place(draw(), at, self.rng.uniform(*level_db)) + self.rng.uniform(*gap_s)

    def scatter(self, draw: Callable[[], np.ndarray], per_minute: float, level_db: tuple[float, float]) -> None:
        for _ in range(self.rng.poisson(per_minute * self.n / SR / 60)):
            self.place(draw(), self.rng.uniform(0, self.n / SR), self.rng.uniform(*level_db))


def _at_level(x: np.ndarray, level_db: float) -> np.ndarray:
    """``x`` scaled so its RMS over the louder half of its 10 ms frames is ``level_db`` dBFS."""
    frames = x[: x.size // 160 * 160].reshape(-1, 160) if x.size >= 160 else x.reshape(1, -1)
    energy = np.sort(np.mean(frames**2, axis=1))
    rms = float(np.sqrt(np.mean(energy[energy.size // 2:]))) if energy.size else 0.0
    return x * (10 ** (level_db / 20) / rms) if rms > 1e-9 else x


def _speaker(x: np.ndarray) -> np.ndarray:
    """A small TV or radio speaker: 150 Hz - 6 kHz."""
    return signal.sosfilt(signal.butter(2, [150, 6000], btype="band", fs=SR, output="sos"), x)


def _compose(scene: str, seconds: float, pools: ScenePools, rng: np.random.Generator) -> tuple[np.ndarray, set[str]]:
    used: set[str] = set()
    track = _Track(seconds, rng)
    speech = lambda: pools.pick("speech", rng, used)  # noqa: E731
    shouted = lambda: shout(pools.pick("speech", rng, used), rng)  # noqa: E731
    music = lambda: pools.pick("music", rng, used)  # noqa: E731
    event = lambda: pools.pick("events", rng, used)  # noqa: E731
    track.bed(pools.pick("ambience", rng, used), rng.uniform(-62, -48))  # room tone
    if scene == "conversation":
        track.sequence(speech, (-30, -20), (0.2, 2.0))
        track.scatter(lambda: phone_ring(rng), 0.3, (-30, -22))
        track.scatter(event, 1.0, (-40, -26))
    elif scene == "tv_radio":
        track.sequence(lambda: _speaker(music() if rng.random() < 0.5 else speech()), (-32, -22), (0.0, 0.5))
        track.scatter(lambda: _speaker(shouted()), 2.0, (-28, -20))
        track.scatter(speech, 1.0, (-30, -22))
    elif scene == "kitchen":
        track.bed(pools.pick("ambience", rng, used), rng.uniform(-40, -30))
        track.scatter(lambda: beeps(rng), 1.5, (-32, -20))
        track.scatter(event, 4.0, (-36, -20))
        track.sequence(speech, (-32, -22), (2.0, 12.0), start_s=rng.uniform(0, 20))
    elif scene == "doorbell":
        track.scatter(lambda: doorbell(rng), 1.0, (-26, -16))
        track.scatter(event, 1.5, (-36, -22))
        track.sequence(speech, (-32, -22), (3.0, 20.0), start_s=rng.uniform(5, 30))
    elif scene == "alarm_morning":
        ring = np.concatenate([beeps(rng) for _ in range(int(rng.integers(6, 20)))])
        wake = track.place(ring, rng.uniform(0, 10), rng.uniform(-26, -14))
        track.sequence(lambda: _speaker(music() if rng.random() < 0.4 else speech()), (-34, -24), (0.0, 1.0), start_s=wake)
        track.sequence(speech, (-30, -22), (2.0, 10.0), start_s=wake + 5)
    elif scene == "street":
        track.bed(pools.pick("ambience", rng, used), rng.uniform(-34, -24))
        track.scatter(event, 2.0, (-36, -22))
        track.scatter(speech, 1.5, (-40, -28))
    elif scene == "children":
        track.sequence(lambda: shouted() if rng.random() < 0.6 else speech(), (-28, -16), (0.1, 1.5))
        track.scatter(event, 2.0, (-34, -22))
        track.sequence(music, (-38, -28), (0.0, 5.0))
    elif scene == "party":
        track.sequence(music, (-26, -18), (0.0, 0.3))
        for _ in range(3):
            track.sequence(lambda: shouted() if rng.random() < 0.3 else speech(), (-32, -22), (0.1, 1.0),
                           start_s=rng.uniform(0, 5))
        track.scatter(event, 2.0, (-32, -22))
    else:
        raise ValueError(f"unknown scene {scene!r}")
    mix = track.mix
    if rng.random() < 0.7:
        mix = signal.fftconvolve(mix, room_impulse(rng, rng.uniform(0.2, 0.7), rng.uniform(0.4, 0.9)))[: track.n]
    if rng.random() < 0.3:
        mix = band_limit(mix, rng)
    peak = float(np.max(np.abs(mix))) or 1.0
    return (mix / peak * min(0.9, peak)).astype(np.float32), used


SCENES = ("conversation", "tv_radio", "kitchen", "doorbell", "alarm_morning", "street", "children", "party")


@dataclass(frozen=True)
class HouseholdFile:
    """One composed file, as ``index.csv`` lists it."""

    file: str
    scene: str
    seconds: float
    sources: str  # "package:member; ..." of every source heard in it
    part: str  # of the split: what the file may be used for (training, calibration, evaluation)


def build_household(out: Path, cache: Path, config: HouseholdConfig = HouseholdConfig()) -> list[HouseholdFile]:
    """Compose ``config.minutes`` of household audio into ``out`` (see the module docstring);
    returns the index rows. Needs the data build's cache (``hearo data build --cache``)."""
    pools = scene_pools(part_sources(cache, config.part, config.build))
    empty = [kind for kind in ("speech", "music", "ambience", "events") if not getattr(pools, kind)]
    if empty:
        raise ValueError(f"no {', '.join(empty)} sources on the {config.part} side; add packages to the build")
    out.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([config.seed, PARTS.index(config.part)])
    rows: list[HouseholdFile] = []
    total_s, i = 0.0, 0
    while total_s < config.minutes * 60:
        scene = SCENES[i % len(SCENES)]
        seconds = min(float(rng.choice([60, 60, 120, 180, 300, 600])), config.minutes * 60 - total_s)
        seconds = max(seconds, 60.0)
        audio, used = _compose(scene, seconds, pools, np.random.default_rng([config.seed, PARTS.index(config.part), i]))
        path = out / f"{scene}-{i:03d}.wav"
        sf.write(str(path), audio, SR, subtype="PCM_16")
        rows.append(HouseholdFile(path.name, scene, round(seconds, 1), "; ".join(sorted(used)), config.part))
        total_s += seconds
        i += 1
    with open(out / "index.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["file", "scene", "seconds", "sources", "part"])
        writer.writeheader()
        writer.writerows(asdict(row) for row in rows)
    return rows


def part_sources(cache: Path, part: str, build: BuildConfig = BuildConfig()) -> list[Source]:
    """The normal sources (backgrounds and hard negatives) on ``part``'s side of the data build's
    split: what household audio, and the keyword network's training, may draw on."""
    with Progress() as progress:
        sources = collect_sources(build, cache, progress, BuildSummary(manifest=cache / "unused.csv"))
    validation = split_groups(sources, build.val_fraction, build.seed)
    return [s for s in sources if s.label in (BACKGROUND, NEGATIVE) and _part(s, validation) == part]


def _part(source: Source, validation: set[str]) -> str:
    if source.group not in validation:
        return "training"
    return "calibration" if is_calibration_group(_manifest_group(source)) else "evaluation"


def _manifest_group(source: Source) -> str:
    """The source's group as ``services.inference.training.manifest.source_group`` reads it back
    from a manifest row (TTS: the phrase, without the language)."""
    return "tts:" + source.group.split(":", 2)[2] if source.recipe == "tts" else source.group
