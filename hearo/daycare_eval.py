"""``hearo daycare-eval``: the child-safety rule tuned on composed daycare scenes and measured
on a held-apart set (docs/daycare.md).

Each scene (:mod:`hearo.data.daycare_scenes`) is streamed as ``hearo eval`` streams a clip
(:func:`hearo.evaluate.stream_clip`: the gateway's ``AudioPipeline``, 2 s windows every 0.5 s)
and judged by the default model; each window keeps the tags the inference service sends (its
top ``top_tags``) and the nine class scores, cached under ``~/.cache/hearo/daycare``. The rule
then runs as a daycare session runs it (:class:`services.gateway.session_profile.SessionProfile`)
for every parameter set of a small grid on the tuning scenes; the set chosen raises the most
positive scenes while raising at most ``max_false_raise`` of every negative type (ties: the
higher thresholds), and is measured once on the held-apart scenes. Beside it, the share of
scenes in which the nine-class detector fired anything (the home profile's behaviour).
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import typer
from rich.console import Console
from rich.table import Table

from hearo.data.daycare_scenes import SCENE_TYPES, SIDES, SR, SceneMaker, load_pools
from hearo.evaluate import load_model, stream_clip
from services.gateway.session_profile import SessionProfile
from services.gateway.settings import GatewaySettings
from services.inference.settings import InferenceSettings
from shared.daycare import DaycarePolicy
from shared.detector import Detector, DetectorConfig
from shared.device_modes import DeviceProfile

HOP_S = 0.5
GRID: dict[str, tuple[Any, ...]] = {
    "crying_threshold": (0.02, 0.05, 0.1, 0.2, 0.3),
    "shouting_threshold": (0.02, 0.05, 0.1, 0.2, 0.3),
    "impact_threshold": (0.02, 0.05, 0.1, 0.2, 0.3),
    "children_weight": (0.5, 1.0),
    "min_windows": (1, 2, 4),
}


@dataclass(frozen=True)
class JudgedScene:
    """One scene as the gateway heard it: per window its end, class scores and served tags."""

    scene: str
    end_s: list[float]
    scores: np.ndarray  # [windows, 9]
    tags: list[list[tuple[str, float]]]


def judged_scenes(cache: Path, decoded: Path, side: str, per_type: int, console: Console) -> list[JudgedScene]:
    """The side's scenes, composed and judged once (cached), ``per_type`` of each type."""
    out = cache / f"{side}-{per_type}.json"
    if out.is_file():
        return [JudgedScene(s["scene"], s["end_s"], np.array(s["scores"]), [[tuple(t) for t in w] for w in s["tags"]])
                for s in json.loads(out.read_text())]  # fmt: skip
    label, entry, classifier = load_model("default")
    labels, top = classifier.tag_labels or (), InferenceSettings().top_tags
    maker = SceneMaker(load_pools(decoded, side), side, cache / "tts")
    rng = np.random.default_rng(SIDES.index(side) + 17)
    scenes: list[JudgedScene] = []
    gateway = GatewaySettings()
    for scene, i in itertools.product(SCENE_TYPES, range(per_type)):
        audio = maker.compose(scene, rng)
        (cache / "audio" / side).mkdir(parents=True, exist_ok=True)
        sf.write(str(cache / "audio" / side / f"{scene}-{i:02d}.wav"), audio, SR, subtype="PCM_16")
        windows, _ = stream_clip(audio, SR, entry.spec, entry.spec.frames_for(HOP_S), 3, False, gateway.ring_buffer_s)
        prediction = classifier.predict(torch.stack([w.features for w in windows]))
        assert prediction.tags is not None, f"{label} has no tags"
        values, ids = torch.topk(prediction.tags, top, dim=1)
        tags = [[(labels[int(j)], round(float(v), 4)) for v, j in zip(vs, js)] for vs, js in zip(values, ids)]
        scenes.append(JudgedScene(scene, [w.end_s for w in windows], prediction.scores.numpy(), tags))
        console.print(f"{side} {scene} {i}: {len(windows)} windows", highlight=False)
    out.write_text(json.dumps([{"scene": s.scene, "end_s": s.end_s, "scores": s.scores.round(4).tolist(),
                                "tags": s.tags} for s in scenes]))  # fmt: skip
    return scenes


def raises(scene: JudgedScene, policy: DaycarePolicy) -> bool:
    """Whether a daycare session hearing ``scene`` raises child safety."""
    profile = SessionProfile(DeviceProfile.DAYCARE, policy, HOP_S)
    return any(profile.heard(end_s, tags) for end_s, tags in zip(scene.end_s, scene.tags))


def rates(scenes: list[JudgedScene], policy: DaycarePolicy) -> dict[str, float]:
    """The share of each scene type's scenes the rule raises."""
    return {t: float(np.mean([raises(s, policy) for s in scenes if s.scene == t])) for t in SCENE_TYPES}


def tune(scenes: list[JudgedScene], max_false_raise: float) -> DaycarePolicy:
    """The grid's best policy on ``scenes`` (module docstring)."""
    best: tuple[float, float, DaycarePolicy] | None = None
    for values in itertools.product(*GRID.values()):
        policy = DaycarePolicy(**dict(zip(GRID, values)))
        found = rates(scenes, policy)
        if max(found[t] for t in SCENE_TYPES if t != "positive") > max_false_raise:
            continue
        key = (found["positive"], policy.crying_threshold + policy.shouting_threshold + policy.impact_threshold)
        if best is None or key > best[:2]:
            best = (*key, policy)
    if best is None:
        raise RuntimeError(f"no parameter set of the grid keeps every negative type at or under {max_false_raise:.0%}")
    return best[2]


def class_detections(scenes: list[JudgedScene], config: DetectorConfig) -> dict[str, float]:
    """The share of each scene type's scenes in which the nine-class detector fired anything."""
    def fired(scene: JudgedScene) -> bool:
        detector = Detector(config)
        return any(detector.update(row, end_s) for row, end_s in zip(scene.scores, scene.end_s))

    return {t: float(np.mean([fired(s) for s in scenes if s.scene == t])) for t in SCENE_TYPES}


def daycare_eval(cache: Path, decoded: Path, per_type: int, max_false_raise: float, console: Console) -> dict[str, Any]:
    """Tune on one side, measure on the other; print and return the figures."""
    tuning = judged_scenes(cache, decoded, "tuning", per_type, console)
    held = judged_scenes(cache, decoded, "held_apart", per_type, console)
    policy = tune(tuning, max_false_raise)
    _, _, classifier = load_model("default")
    config = DetectorConfig.build(0.5, model_thresholds=getattr(classifier, "thresholds", None), hop_s=HOP_S)
    report: dict[str, Any] = {
        "policy": policy.model_dump(), "scenes_per_type": per_type, "max_false_raise": max_false_raise,
        "tuning": rates(tuning, policy), "held_apart": rates(held, policy),
        "class_detector_held_apart": class_detections(held, config),
    }  # fmt: skip
    table = Table(title=f"child safety raised, {per_type} scenes per type (policy chosen on tuning)")
    for column in ("scene", "tuning", "held apart", "any class fired (held apart)"):
        table.add_column(column, justify="left" if column == "scene" else "right")
    for t in SCENE_TYPES:
        table.add_row(t, f"{report['tuning'][t]:.0%}", f"{report['held_apart'][t]:.0%}",
                      f"{report['class_detector_held_apart'][t]:.0%}")  # fmt: skip
    console.print(table)
    console.print(f"policy: {json.dumps(report['policy'])}", highlight=False)
    (cache / "report.json").write_text(json.dumps(report, indent=2))
    return report


def daycare_eval_command(
    per_type: int = typer.Option(10, min=1, help="Scenes of each type on each side."),
    max_false_raise: float = typer.Option(0.1, min=0.0, max=1.0, help="The most of any negative type the tuning may raise."),
    cache: Path = typer.Option(Path.home() / ".cache" / "hearo" / "daycare", help="Scenes, scores and the report."),
    decoded: Path = typer.Option(Path.home() / ".cache" / "hearo" / "data-cache" / "decoded",
                                 help="hearo data build's decoded allow-listed clips."),
) -> None:
    """Tune the daycare rule on composed scenes and print its raise rates on a held-apart set."""
    if not any(decoded.glob("*/index.json")):
        raise typer.BadParameter(f"no decoded clips under {decoded}: run hearo data build first")
    try:
        daycare_eval(cache, decoded, per_type, max_false_raise, Console())
    except RuntimeError as error:
        typer.echo(str(error), err=True)
        raise typer.Exit(1) from None
