"""The household audio bench/bench_anomaly.py judges: pools of streamed windows, composed days, events.

Every window is what a live session hands :class:`services.gateway.session_anomaly.SessionAnomaly`:
the gateway's ``AudioPipeline`` makes the window (the served model's log-mel spec, 2 s every
0.5 s), :func:`shared.anomaly.window_features` describes it, and the default model gives its
nine class scores (run once here, in batches, as the inference service would). What is cached
(under ``~/.cache/hearo/anomaly/``) is that raw material per file; the anomaly vector
(:class:`shared.anomaly.WindowDescriber`) is made from it per file, in stream order, so its
"moment" context is the file's own preceding audio.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import torch

from hearo.data.build import Source
from hearo.data.household import SCENES, _at_level, _compose, _part, scene_pools
from hearo.data.labels import BACKGROUND, NEGATIVE
from hearo.data.synth import glass_break, knocking
from services.gateway.audio import AudioPipeline, Window
from services.inference.models.base import Classifier
from shared.anomaly import WindowDescriber, window_features
from shared.features.spec import EFFICIENTAT_MEL

SR = 16_000
HOP_S = 0.5
DAY_WINDOWS = int(86400 / HOP_S)
CACHE = Path.home() / ".cache" / "hearo" / "anomaly"
QUIET = "quiet"
# The daily rhythm: (from hour, scenes to draw from) in order; a block lasts until the next.
RHYTHM = [
    (0, [QUIET]), (7, ["alarm_morning"]), (7.5, ["kitchen", "conversation"]), (9, [QUIET, QUIET, "street"]),
    (12, ["kitchen", "conversation"]), (13, [QUIET, "street"]), (17, ["kitchen", "children"]),
    (19, ["tv_radio", "tv_radio", "conversation"]), (22.5, [QUIET]),
]
VISITORS = ["doorbell", "party", "conversation"]  # an evening with visitors, some days
EVENT_KINDS = ("glass", "door", "fall")
HOME_SOURCES = {"ambience": 6, "music": 10, "speech": 16, "events": 30}
ONSET_S = 8.0  # where an event starts in its 20 s of audio
T = TypeVar("T")


@dataclass
class Heard:
    """One file's windows as a session sees them: ``spectral`` [N, 33], ``scores`` [N, 9], ``levels`` [N]."""

    spectral: np.ndarray
    scores: np.ndarray
    levels: np.ndarray

    def vectors(self) -> np.ndarray:
        """The anomaly vectors [N, D], made in stream order as a session makes them."""
        describer = WindowDescriber()
        return np.stack([describer.describe(s, c) for s, c in zip(self.spectral, self.scores)])


def windows_of(audio: np.ndarray) -> list[Window]:
    """The gateway's windows of ``audio`` (16 kHz float), as a live session makes them."""
    pipeline = AudioPipeline(SR, 1, EFFICIENTAT_MEL, EFFICIENTAT_MEL.frames_for(HOP_S), 30.0)
    pcm = (np.clip(audio, -1, 1) * 32767).astype("<i2").tobytes()
    heard = []
    step = SR // 10 * 2  # 100 ms frames
    for i in range(0, len(pcm), step):
        heard += pipeline.hear(pcm[i: i + step])
    return [w for w in heard if isinstance(w, Window)]


def hear(audio: np.ndarray, classifier: Classifier) -> Heard:
    wins = windows_of(audio)
    with torch.inference_mode():
        scores = torch.cat([classifier.predict(torch.stack([w.features for w in wins[lo: lo + 64]])).scores
                            for lo in range(0, len(wins), 64)]).numpy()  # fmt: skip
    return Heard(np.stack([window_features(w.features.numpy(), w.level_dbfs) for w in wins]), scores,
                 np.array([w.level_dbfs for w in wins]))  # fmt: skip


def quiet_room(sources: list[Source], home_seed: int) -> tuple[np.ndarray, float]:
    """A home's one quiet room: its room tone and level (not a new one every minute)."""
    home = np.random.default_rng([home_seed, 7])
    return scene_pools(sources).pick("ambience", home, set()), float(home.uniform(-62, -52))


def background(sources: list[Source], validation: set[str], part: str, home_seed: int) -> list[Source]:
    """One home's everyday sounds from ``part`` of the split: a few rooms' tones, its voices,
    its music and TV, its household clatter (:data:`HOME_SOURCES`), not every recording there
    is: a real home's later days are made of the sounds its learning days had."""
    mine = [s for s in sources if s.label in (BACKGROUND, NEGATIVE) and _part(s, validation) == part]
    pools, rng = scene_pools(mine), np.random.default_rng([home_seed, 11])
    home: list[Source] = []
    for kind, n in HOME_SOURCES.items():
        pool: list[Source] = getattr(pools, kind)
        home += [pool[i] for i in rng.choice(len(pool), size=min(n, len(pool)), replace=False)]
    return home


def cached(name: str, make: Callable[[], T]) -> T:
    path = CACHE / f"{name}.pkl"
    if path.exists():
        return pickle.loads(path.read_bytes())  # type: ignore[no-any-return]
    value = make()
    CACHE.mkdir(parents=True, exist_ok=True)
    path.write_bytes(pickle.dumps(value))
    return value


def build_pool(mine: list[Source], minutes_per_scene: float, seed: int, home_seed: int,
               classifier: Classifier) -> dict[str, list[Heard]]:  # fmt: skip
    """Each scene's files (one a minute) of ``mine``'s sounds, heard."""
    pools = scene_pools(mine)
    tone, tone_db = quiet_room(mine, home_seed)
    pool: dict[str, list[Heard]] = {}
    for k, scene in enumerate((*SCENES, QUIET)):
        files = []
        for j in range(int(minutes_per_scene)):
            rng = np.random.default_rng([seed, k, j])
            if scene == QUIET:  # the room tone alone
                start = int(rng.integers(0, max(1, tone.size - 60 * SR)))
                audio = _at_level(np.resize(tone[start:], 60 * SR), tone_db + rng.uniform(-1, 1)).astype(np.float32)
            else:
                audio, _ = _compose(scene, 60.0, pools, rng)
            files.append(hear(audio, classifier))
        pool[scene] = files
    return pool


def compose_days(pool: dict[str, list[np.ndarray]], days: int, rng: np.random.Generator) -> np.ndarray:
    """``days`` of window vectors [days * DAY_WINDOWS, D] with the daily rhythm, each block
    filled with runs of consecutive windows of its scene's files."""
    out = []
    for _ in range(days):
        visitors = rng.random() < 0.4
        for b, (start_h, scenes) in enumerate(RHYTHM):
            end_h = RHYTHM[b + 1][0] if b + 1 < len(RHYTHM) else 24
            if visitors and start_h == 19:
                scenes = VISITORS
            need = int((end_h - start_h) * 3600 / HOP_S)
            while need > 0:
                files = pool[scenes[int(rng.integers(len(scenes)))]]
                f = files[int(rng.integers(len(files)))]
                start = int(rng.integers(0, max(1, len(f) - 20)))
                run = f[start: start + need]
                out.append(run)
                need -= len(run)
    return np.concatenate(out)


def hours_a_week(scene: str) -> float:
    """How many hours of a week :func:`compose_days` gives ``scene`` on average."""
    hours = 0.0
    for b, (start_h, scenes) in enumerate(RHYTHM):
        length = (RHYTHM[b + 1][0] if b + 1 < len(RHYTHM) else 24) - start_h
        usual = scenes.count(scene) / len(scenes)
        hours += length * (0.6 * usual + 0.4 * VISITORS.count(scene) / len(VISITORS)) if start_h == 19 \
            else length * usual
    return 7 * hours


@dataclass
class Event:
    kind: str
    scene: str
    heard: Heard


def event_sources(sources: list[Source], validation: set[str]) -> dict[str, list[Source]]:
    """Real glass, door and fall sounds the default model was not trained on (the held-out
    sides of the split): it must not have learned the very clips it is asked about."""
    held_out = [s for s in sources if _part(s, validation) != "training"]
    return {
        "glass": [s for s in held_out if "glass" in s.path.lower() or "crash" in s.path.lower()],
        "door": [s for s in held_out if s.label == "trapped" and s.recipe == "real"],
        "fall": [s for s in held_out if s.label == "accident" and s.recipe == "real"],
    }


def injected_events(sources: list[Source], validation: set[str], part: str, n: int, seed: int, home_seed: int,
                    classifier: Classifier) -> list[Event]:  # fmt: skip
    """``n`` unusual events (glass, door, fall in turn) mixed at -24 to -12 dBFS at
    :data:`ONSET_S` into 20 s of ``part``'s audio of a scene drawn from the daily rhythm."""
    rng = np.random.default_rng([seed, 31])
    kinds = event_sources(sources, validation)
    mine = background(sources, validation, part, home_seed)
    pools = scene_pools(mine)
    tone, tone_db = quiet_room(mine, home_seed)
    out = []
    for i in range(n):
        kind = EVENT_KINDS[i % 3]
        real = kinds[kind]
        if kind == "glass" and (rng.random() < 0.5 or not real):
            audio = glass_break(rng)
        elif kind == "door" and (rng.random() < 0.3 or not real):
            audio = knocking(rng)
        else:
            audio = real[int(rng.integers(len(real)))].audio
        hour = float(rng.uniform(0, 24))
        scenes = next(s for h, s in reversed(RHYTHM) if h <= hour)
        scene = scenes[int(rng.integers(len(scenes)))]
        if scene == QUIET:
            start = int(rng.integers(0, max(1, tone.size - 20 * SR)))
            base = _at_level(np.resize(tone[start:], 20 * SR), tone_db).astype(np.float64)
        else:
            base = _compose(scene, 20.0, pools, np.random.default_rng([seed, 99, i]))[0].astype(np.float64)
        piece = _at_level(np.asarray(audio, dtype=np.float64)[: 6 * SR], float(rng.uniform(-24, -12)))
        piece = piece[: len(base) - int(ONSET_S * SR)]
        base[int(ONSET_S * SR): int(ONSET_S * SR) + len(piece)] += piece
        out.append(Event(kind, scene, hear(base, classifier)))
    return out


def counts(events: Iterable[Event]) -> dict[str, int]:
    tally: dict[str, int] = {}
    for event in events:
        tally[event.kind] = tally.get(event.kind, 0) + 1
    return tally
