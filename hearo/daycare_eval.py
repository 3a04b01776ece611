"""``hearo daycare-eval``: the child-safety rule tuned on composed daycare scenes and measured
on a held-apart set (docs/daycare.md).

Each scene (:mod:`hearo.data.daycare_scenes`) is streamed as ``hearo eval`` streams a clip
(:func:`hearo.evaluate.stream_clip`: the gateway's ``AudioPipeline``, 2 s windows every 0.5 s)
and judged by the default model; each window keeps the tags the inference service sends (its
top ``top_tags``) and the nine class scores, cached with the scene's audio under
``~/.cache/hearo/daycare``. Each run hears the cues in the audio afresh
(:class:`shared.daycare.acoustic.AcousticCues`, timed), then runs the rule as a daycare session
does (both sources, each cue at the higher) for every parameter set of a small grid on the
tuning scenes; the set chosen raises the most positive scenes while raising at most
``max_false_raise`` of every negative type (ties: the higher thresholds), and is measured once
on the held-apart scenes. Beside it: the share of each type's scenes in which each cue was heard
(held apart, chosen thresholds), and in which the nine-class detector fired anything (the home
profile's behaviour).
"""

from __future__ import annotations

import itertools
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import soxr
import typer
from rich.console import Console
from rich.table import Table

from hearo.data.daycare_scenes import SCENE_TYPES, SIDES, SR, SceneMaker, load_pools
from hearo.evaluate import load_model, predict_windows, stream_clip
from services.gateway.settings import GatewaySettings
from services.inference.training.calibration import household_files
from shared.daycare import AcousticCues, ChildSafetyRule, Cue, DaycarePolicy, window_levels
from shared.daycare.acoustic import AUDIO_RATE
from shared.detector import Detector, DetectorConfig

HOP_S = 0.5
GRID: dict[str, tuple[Any, ...]] = {
    "crying_threshold": (0.1, 0.2, 0.3, 0.5, 0.7),
    "shouting_threshold": (0.1, 0.2, 0.3, 0.5, 0.7),
    "impact_threshold": (0.1, 0.2, 0.3, 0.5, 0.7),
    "children_weight": (0.5, 1.0),
    "min_windows": (1, 2, 4),
}
# The cached scenes' layout; a new one when the composition or what is kept changes (2: the
# blows pool without characters' voice lines, and the scene's audio kept for the cues).
_CACHE_VERSION = 2


@dataclass(frozen=True)
class JudgedScene:
    """One scene as the gateway heard it: per window its end, class scores and served tags, and
    the scene's audio (16 kHz), from which the cues are heard."""

    scene: str
    end_s: list[float]
    scores: np.ndarray  # [windows, 9]
    tags: list[list[tuple[str, float]]]
    audio: Path


def judged_scenes(cache: Path, decoded: Path, side: str, per_type: int, console: Console) -> list[JudgedScene]:
    """The side's scenes, composed and judged once (cached), ``per_type`` of each type."""
    out = cache / f"{side}-{per_type}-v{_CACHE_VERSION}.json"
    folder = cache / "audio" / f"{side}-v{_CACHE_VERSION}"
    if out.is_file():
        return [JudgedScene(s["scene"], s["end_s"], np.array(s["scores"]), [[tuple(t) for t in w] for w in s["tags"]],
                            folder / s["audio"]) for s in json.loads(out.read_text())]  # fmt: skip
    _, entry, classifier = load_model("default")
    maker = SceneMaker(load_pools(decoded, side), side, cache / "tts")
    rng = np.random.default_rng(SIDES.index(side) + 17)
    scenes: list[JudgedScene] = []
    gateway = GatewaySettings()
    folder.mkdir(parents=True, exist_ok=True)
    for scene, i in itertools.product(SCENE_TYPES, range(per_type)):
        audio = maker.compose(scene, rng)
        path = folder / f"{scene}-{i:02d}-of-{per_type}.wav"
        sf.write(str(path), audio, SR, subtype="PCM_16")
        windows, _ = stream_clip(audio, SR, entry.spec, entry.spec.frames_for(HOP_S), 3, False, gateway.ring_buffer_s)
        scores, tags = predict_windows(classifier, windows)
        scenes.append(JudgedScene(scene, [w.end_s for w in windows], scores, tags, path))
        console.print(f"{side} {scene} {i}: {len(windows)} windows", highlight=False)
    out.write_text(json.dumps([{"scene": s.scene, "end_s": s.end_s, "scores": s.scores.round(4).tolist(),
                                "tags": s.tags, "audio": s.audio.name} for s in scenes]))  # fmt: skip
    return scenes


@dataclass(frozen=True)
class HeardScene:
    """A scene's windows as the rule takes them: ends, tags and the cues heard in the sound."""

    scene: str
    end_s: list[float]
    tags: list[dict[str, float]]
    acoustic: list[dict[Cue, float]]


def hear(scenes: list[JudgedScene]) -> tuple[list[HeardScene], float]:
    """The cues heard in each scene's audio, window by window as a session hears them, and the
    CPU seconds that took per window."""
    heard, spent, windows = [], 0.0, 0
    for scene in scenes:
        audio = sf.read(str(scene.audio), dtype="float32")[0]
        cues = AcousticCues()
        started = time.process_time()
        acoustic = [cues.levels(end_s, audio, 0.0) for end_s in scene.end_s]
        spent += time.process_time() - started
        windows += len(scene.end_s)
        heard.append(HeardScene(scene.scene, scene.end_s, [dict(t) for t in scene.tags], acoustic))
    return heard, spent / max(windows, 1)


def rates(scenes: list[HeardScene], policy: DaycarePolicy) -> dict[str, float]:
    """The share of each scene type's scenes the rule raises."""
    return {t: float(np.mean([bool(raise_times(s, policy)) for s in scenes if s.scene == t])) for t in SCENE_TYPES}


def cues_heard(scenes: list[HeardScene], policy: DaycarePolicy) -> dict[str, dict[str, float]]:
    """Per scene type, the share of its scenes in which each cue was heard (its smoothed level
    reached its threshold in ``min_windows`` windows or more), as the rule hears them."""
    def heard(scene: HeardScene, cue: Cue) -> bool:
        levels = [window_levels(tags, acoustic, policy)[cue] for tags, acoustic in zip(scene.tags, scene.acoustic)]
        smoothed = np.convolve(levels, np.ones(policy.smoothing_windows) / policy.smoothing_windows, "valid")
        return int((smoothed >= policy.threshold(cue)).sum()) >= policy.min_windows

    return {t: {cue.value: float(np.mean([heard(s, cue) for s in scenes if s.scene == t])) for cue in Cue}
            for t in SCENE_TYPES}  # fmt: skip


def tune(scenes: list[HeardScene], max_false_raise: float, household: Sequence[HeardScene] = ()) -> DaycarePolicy:
    """The grid's best policy on ``scenes`` (module docstring) that raises nothing on the
    ``household`` audio either."""
    best: tuple[float, float, DaycarePolicy] | None = None
    for values in itertools.product(*GRID.values()):
        policy = DaycarePolicy(**dict(zip(GRID, values)))
        found = rates(scenes, policy)
        if max(found[t] for t in SCENE_TYPES if t != "positive") > max_false_raise:
            continue
        key = (found["positive"], policy.crying_threshold + policy.shouting_threshold + policy.impact_threshold)
        if best is not None and key <= best[:2]:
            continue
        if any(raise_times(heard, policy) for heard in household):
            continue
        best = (*key, policy)
    if best is None:
        raise RuntimeError(f"no parameter set of the grid keeps every negative type at or under {max_false_raise:.0%}"
                           + (" and raises nothing on the household audio" if household else ""))  # fmt: skip
    return best[2]


def class_detections(scenes: list[JudgedScene], config: DetectorConfig) -> dict[str, float]:
    """The share of each scene type's scenes in which the nine-class detector fired anything."""
    def fired(scene: JudgedScene) -> bool:
        detector = Detector(config)
        return any(detector.update(row, end_s) for row, end_s in zip(scene.scores, scene.end_s))

    return {t: float(np.mean([fired(s) for s in scenes if s.scene == t])) for t in SCENE_TYPES}


def hear_household(folder: Path) -> list[HeardScene]:
    """Hours of ordinary household audio (``hearo data household``: talk, TV, kitchens, children
    playing, a party) as a daycare device there would hear it, one "scene" per file."""
    _, entry, classifier = load_model("default")
    gateway = GatewaySettings()
    heard = []
    for path in household_files(folder):
        audio, rate = sf.read(str(path), dtype="float32", always_2d=True)
        mono = audio.mean(axis=1)
        windows, _ = stream_clip(mono, rate, entry.spec, entry.spec.frames_for(HOP_S), 3, False, gateway.ring_buffer_s)
        _, tags = predict_windows(classifier, windows)
        sound = mono if rate == AUDIO_RATE else soxr.resample(mono, rate, AUDIO_RATE)
        cues = AcousticCues()
        ends = [w.end_s for w in windows]
        heard.append(HeardScene(path.name, ends, [dict(t) for t in tags], [cues.levels(end, sound, 0.0) for end in ends]))
    return heard


def raise_times(scene: HeardScene, policy: DaycarePolicy) -> list[float]:
    """The stream times at which a daycare session hearing ``scene`` raises child safety."""
    rule = ChildSafetyRule(policy, HOP_S)
    return [end_s for end_s, tags, acoustic in zip(scene.end_s, scene.tags, scene.acoustic)
            if rule.update(end_s, tags, acoustic)]  # fmt: skip


def household_raises(household: list[HeardScene], folder: Path, policy: DaycarePolicy) -> dict[str, Any]:
    """Every raise on the household audio (all false), and how many an hour."""
    raised = [{"file": heard.scene, "time_s": round(t, 1)} for heard in household for t in raise_times(heard, policy)]
    hours = sum(heard.end_s[-1] for heard in household if heard.end_s) / 3600
    return {"folder": str(folder), "hours": round(hours, 3), "raises": raised, "per_hour": round(len(raised) / max(hours, 1e-9), 3)}


def daycare_eval(
    cache: Path, decoded: Path, per_type: int, max_false_raise: float, console: Console,
    household_tune: Path | None = None, household: Path | None = None,
) -> dict[str, Any]:
    """Tune on one side (and ``household_tune`` audio, where no raise is allowed), measure on the
    other (and on ``household`` audio, when given); print and return the figures."""
    judged_tuning = judged_scenes(cache, decoded, "tuning", per_type, console)
    judged_held = judged_scenes(cache, decoded, "held_apart", per_type, console)
    tuning, cost_tuning = hear(judged_tuning)
    held, cost_held = hear(judged_held)
    policy = tune(tuning, max_false_raise, hear_household(household_tune) if household_tune is not None else [])
    _, _, classifier = load_model("default")
    config = DetectorConfig.build(0.5, model_thresholds=getattr(classifier, "thresholds", None), hop_s=HOP_S)
    report: dict[str, Any] = {
        "policy": policy.model_dump(), "scenes_per_type": per_type, "max_false_raise": max_false_raise,
        "household_tune": None if household_tune is None else str(household_tune),
        "tuning": rates(tuning, policy), "held_apart": rates(held, policy),
        "cues_heard_held_apart": cues_heard(held, policy),
        "class_detector_held_apart": class_detections(judged_held, config),
        "acoustic_cpu_ms_per_window": round(1000 * (cost_tuning + cost_held) / 2, 3),
    }  # fmt: skip
    table = Table(title=f"child safety raised, {per_type} scenes per type (policy chosen on tuning)")
    columns = ("scene", "tuning", "held apart", *(f"{cue.value} heard" for cue in Cue), "any class fired")
    for column in columns:
        table.add_column(column, justify="left" if column == "scene" else "right")
    for t in SCENE_TYPES:
        heard = report["cues_heard_held_apart"][t]
        table.add_row(t, f"{report['tuning'][t]:.0%}", f"{report['held_apart'][t]:.0%}",
                      *(f"{heard[cue.value]:.0%}" for cue in Cue), f"{report['class_detector_held_apart'][t]:.0%}")  # fmt: skip
    console.print(table)
    console.print("(cues heard and classes fired: held apart)", highlight=False)
    console.print(f"policy: {json.dumps(report['policy'])}", highlight=False)
    console.print(f"the cues heard in the sound: {report['acoustic_cpu_ms_per_window']} ms of CPU a window", highlight=False)
    if household is not None:
        found = report["household"] = household_raises(hear_household(household), household, policy)
        console.print(f"household audio ({household}): {len(found['raises'])} raises in {found['hours']:.2f} h "
                      f"({found['per_hour']:.2f} an hour)", highlight=False)  # fmt: skip
        for raise_ in found["raises"][:10]:
            console.print(f"  {raise_['file']} at {raise_['time_s']} s", highlight=False)
    (cache / "report.json").write_text(json.dumps(report, indent=2))
    return report


def daycare_eval_command(
    per_type: int = typer.Option(10, min=1, help="Scenes of each type on each side."),
    max_false_raise: float = typer.Option(0.1, min=0.0, max=1.0, help="The most of any negative type the tuning may raise."),
    cache: Path = typer.Option(Path.home() / ".cache" / "hearo" / "daycare", help="Scenes, scores and the report."),
    decoded: Path = typer.Option(Path.home() / ".cache" / "hearo" / "data-cache" / "decoded",
                                 help="hearo data build's decoded allow-listed clips."),
    household_tune: Path | None = typer.Option(
        None, help="Household audio (hearo data household --part calibration) the chosen policy must not raise on."),
    household: Path | None = typer.Option(
        None, help="Household audio (hearo data household) to count false raises an hour on."),
) -> None:
    """Tune the daycare rule on composed scenes and print its raise rates on a held-apart set."""
    if not any(decoded.glob("*/index.json")):
        raise typer.BadParameter(f"no decoded clips under {decoded}: run hearo data build first")
    try:
        daycare_eval(cache, decoded, per_type, max_false_raise, Console(), household_tune, household)
    except (RuntimeError, ValueError) as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
