"""The AI Hub "위급상황 음성/음향" (emergency voice/sound) data set as Hear-o training clips.

The data set ships WAV files ("원천" folders) and one JSON label file per WAV ("라벨"
folders), labelled with 16 mid-classes. ``AIHUB_CLASS_MAP`` is the one table mapping them
onto the nine Hear-o classes (reasons in ``docs/training.md``); the two natural-disaster
classes, 태풍-강풍 and 지진, are left out.

What the reader assumes about a label file (from third-party readers of the data set; the
official documentation is not available here), and how it tolerates variants:

- UTF-8 JSON (a BOM is fine), a dict with ``annotations``: a list of dicts (one dict is
  accepted too), each one labelled segment of the audio;
- the mid-class of a segment is ``annotations[i].categories.category_02``; when that key
  is missing or holds no known name, the other ``categories`` values are tried in key
  order, then ``annotations[i].category`` and a top-level ``category``. Names are compared
  on their Hangul letters only, so "태풍-강풍", "태풍/강풍" and "12.태풍-강풍" are one class;
- segment times are ``annotations[i].area.start`` / ``.end`` in SECONDS (numbers or
  numeric strings); without ``area`` the segment is the whole file;
- the audio is the file named by ``audio.fileName`` (or ``file_name`` / ``filename``),
  else the audio file with the label file's stem, found anywhere under the data root.

A label file that does not fit raises ``AIHubLabelError`` naming the file and what was
missing; AI Hub's own Training/Validation division is ignored (``split_by_source`` splits).
"""

from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.inference.training.labelled_clips import AUDIO_SUFFIXES, DatasetScan, LabelledClip

# The 16 mid-classes -> Hear-o class key, or None: left out of training.
AIHUB_CLASS_MAP: dict[str, str | None] = {
    "강제추행(성범죄)": "crime",  # sexual assault
    "강도범죄": "crime",  # robbery
    "절도범죄": "crime",  # theft, break-in
    "폭력범죄": "crime",  # violence
    "화재": "fire",
    "갇힘": "trapped",
    "응급의료": "medical",
    "전기사고": "electric",
    "가스사고": "gas",
    "낙상": "accident",  # fall
    "붕괴사고": "accident",  # structural collapse
    "태풍-강풍": None,  # typhoon / strong wind: no such class; wind is everyday noise indoors
    "지진": None,  # earthquake: no such class; rumble and rattling are not an accident by themselves
    "도움요청": "help",  # call for help
    "실내": "normal",  # ordinary indoor sound
    "실외": "normal",  # ordinary outdoor sound
}

_ALIASES = {"강제추행": "강제추행(성범죄)", "성범죄": "강제추행(성범죄)"}
_AUDIO_NAME_KEYS = ("fileName", "file_name", "filename")


class AIHubLabelError(ValueError):
    """An AI Hub label file this reader does not understand, or whose audio is missing."""


def _letters(name: str) -> str:
    return re.sub(r"[^가-힣]", "", name)


_BY_LETTERS = {_letters(name): name for name in AIHUB_CLASS_MAP} | {
    _letters(alias): name for alias, name in _ALIASES.items()
}


def aihub_category(name: object) -> str | None:
    """The canonical mid-class (a key of ``AIHUB_CLASS_MAP``) that ``name`` spells, or None."""
    return _BY_LETTERS.get(_letters(name)) if isinstance(name, str) else None


@dataclass(frozen=True)
class AIHubSegment:
    """One labelled segment of a label file: canonical mid-class, times in seconds (end None = file end)."""

    category: str
    start_s: float = 0.0
    end_s: float | None = None


def read_aihub_label(path: Path) -> tuple[list[AIHubSegment], str | None]:
    """The segments of one label file and the audio file name it gives (or None).

    Raises AIHubLabelError when the file is not JSON, has no annotations, or an annotation
    has no recognisable mid-class or bad times.
    """
    try:
        data = json.loads(path.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise AIHubLabelError(f"{path}: not a readable JSON label file: {exc}") from exc
    if not isinstance(data, dict):
        raise AIHubLabelError(f"{path}: expected a JSON object with 'annotations'")
    annotations = data.get("annotations")
    if isinstance(annotations, dict):
        annotations = [annotations]
    if not isinstance(annotations, list) or not annotations:
        raise AIHubLabelError(f"{path}: no 'annotations' list (the labelled segments)")
    segments = []
    for i, annotation in enumerate(annotations):
        if not isinstance(annotation, dict):
            raise AIHubLabelError(f"{path}: annotations[{i}] is not an object")
        category = _category(annotation, data)
        if category is None:
            raise AIHubLabelError(
                f"{path}: annotations[{i}] has no known mid-class in categories.category_02 "
                f"(known: {', '.join(AIHUB_CLASS_MAP)})"
            )
        start, end = _times(annotation.get("area"), f"{path}: annotations[{i}].area")
        segment = AIHubSegment(category, start, end)
        if segment not in segments:
            segments.append(segment)
    return segments, _audio_name(data)


def _category(annotation: dict[str, Any], data: dict[str, Any]) -> str | None:
    categories = annotation.get("categories")
    candidates: list[object] = []
    if isinstance(categories, dict):
        candidates.append(categories.get("category_02"))
        candidates.extend(categories[k] for k in sorted(categories) if k != "category_02")
    candidates.extend([annotation.get("category"), data.get("category")])
    for candidate in candidates:
        if (category := aihub_category(candidate)) is not None:
            return category
    return None


def _times(area: object, where: str) -> tuple[float, float | None]:
    if area is None:
        return 0.0, None
    if not isinstance(area, dict):
        raise AIHubLabelError(f"{where}: expected an object with start/end seconds")
    try:
        start = float(area.get("start") or 0.0)
        end = None if area.get("end") in (None, "") else float(area["end"])
    except (TypeError, ValueError) as exc:
        raise AIHubLabelError(f"{where}: start/end are not numbers of seconds: {area}") from exc
    if start < 0 or (end is not None and end <= start):
        raise AIHubLabelError(f"{where}: bad segment start {start} s, end {end} s")
    return start, end


def _audio_name(data: dict[str, Any]) -> str | None:
    for holder in (data.get("audio"), data):
        if isinstance(holder, dict):
            for key in _AUDIO_NAME_KEYS:
                if isinstance(holder.get(key), str) and holder[key]:
                    return Path(holder[key].replace("\\", "/")).name
    return None


def scan_aihub(root: Path) -> DatasetScan:
    """Every labelled segment under ``root``, mapped by ``AIHUB_CLASS_MAP``.

    Segments of a left-out mid-class are counted in ``DatasetScan.skipped`` by mid-class
    name. Raises AIHubLabelError for a label file that does not fit or whose audio file is
    missing or ambiguous (two audio files with its name under ``root``).
    """
    audio_by_stem: dict[str, list[Path]] = defaultdict(list)
    for path in sorted(root.rglob("*")):
        if path.is_file() and path.suffix.lower() in AUDIO_SUFFIXES:
            audio_by_stem[path.stem].append(path)
    clips: list[LabelledClip] = []
    skipped: Counter[str] = Counter()
    for label_file in sorted(root.rglob("*.json")):
        segments, audio_name = read_aihub_label(label_file)
        stem = Path(audio_name).stem if audio_name else label_file.stem
        candidates = audio_by_stem.get(stem, [])
        if len(candidates) != 1:
            problem = "no audio file" if not candidates else f"{len(candidates)} audio files"
            raise AIHubLabelError(f"{label_file}: {problem} named {stem}.* under {root}")
        for segment in segments:
            class_key = AIHUB_CLASS_MAP[segment.category]
            if class_key is None:
                skipped[segment.category] += 1
            else:
                clips.append(LabelledClip(candidates[0], class_key, segment.start_s, segment.end_s))
    return DatasetScan(clips, "aihub", dict(skipped))
