"""The AI Hub "위급상황 음성/음향" reader and its 16 -> 9 class map, on tiny generated files."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from services.inference.training import (
    AIHUB_CLASS_MAP,
    AIHubLabelError,
    read_aihub_label,
    scan_aihub,
    scan_dataset,
)
from shared.taxonomy import CLASS_KEYS
from tests.beats_support import tone, write_audio


def annotation(category: str, start: float | str | None = None, end: float | str | None = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "audio_id": 1,
        "categories": {"category_01": "위급상황", "category_02": category, "category_03": "비명"},
        "audioType": "음성",
    }
    if start is not None:
        item["area"] = {"start": start, "end": end}
    return item


def write_pair(root: Path, folder: str, stem: str, annotations: list[dict[str, Any]], **extra: Any) -> Path:
    """A label file in ``[라벨]folder`` and its WAV (4 s at 44.1 kHz) in ``[원천]folder_1``."""
    write_audio(root / "Training" / f"[원천]{folder}_1" / f"{stem}.wav", tone(4.0, 500, rate=44_100), 44_100)
    label = root / "Training" / f"[라벨]{folder}" / f"{stem}.json"
    label.parent.mkdir(parents=True, exist_ok=True)
    label.write_text(json.dumps({"audio": {"duration": 4.0}, "annotations": annotations, **extra}, ensure_ascii=False))
    return label


def test_the_map_covers_all_16_mid_classes_with_taxonomy_keys() -> None:
    assert len(AIHUB_CLASS_MAP) == 16
    assert {v for v in AIHUB_CLASS_MAP.values() if v is not None} <= set(CLASS_KEYS)
    assert AIHUB_CLASS_MAP["태풍-강풍"] is None and AIHUB_CLASS_MAP["지진"] is None
    assert AIHUB_CLASS_MAP["실내"] == AIHUB_CLASS_MAP["실외"] == "normal"


def test_segments_map_to_our_classes_and_disasters_are_left_out(tmp_path: Path) -> None:
    write_pair(tmp_path, "1.강제추행(성범죄)", "A_001", [annotation("강제추행(성범죄)", 0.5, 2.5)])
    write_pair(
        tmp_path, "14.도움요청", "B_002",
        [annotation("도움요청", "1.0", "3.0"), annotation("도움요청", 1.0, 3.0), annotation("실내", 3.0, 4.0)],
    )
    write_pair(tmp_path, "12.태풍-강풍", "C_003", [annotation("12.태풍/강풍")])
    write_pair(tmp_path, "13.지진", "D_004", [annotation("지진", 0.0, 4.0)])
    write_pair(tmp_path, "11.붕괴사고", "E_005", [annotation("붕괴사고")])

    scan = scan_dataset(tmp_path)
    assert scan.layout == "aihub"
    got = sorted((c.path.name, c.class_key, c.start_s, c.end_s or 99.0) for c in scan.clips)
    assert got == [
        ("A_001.wav", "crime", 0.5, 2.5),
        ("B_002.wav", "help", 1.0, 3.0),  # the duplicate annotation is read once
        ("B_002.wav", "normal", 3.0, 4.0),
        ("E_005.wav", "accident", 0.0, 99.0),  # no area: the whole file (end None)
    ]
    assert scan.skipped == {"태풍-강풍": 1, "지진": 1}


def test_category_falls_back_to_other_keys_and_audio_to_the_named_file(tmp_path: Path) -> None:
    write_audio(tmp_path / "wav" / "recording_7.wav", tone(1.0, 300, rate=16_000), 16_000)
    label = tmp_path / "labels" / "label_7.json"
    label.parent.mkdir()
    label.write_text(json.dumps({
        "audio": {"fileName": "C:\\data\\recording_7.wav"},
        "annotations": {"categories": {"category_01": "위급상황", "category_03": "가스사고"}},
    }, ensure_ascii=False), encoding="utf-8-sig")
    segments, audio_name = read_aihub_label(label)
    assert [(s.category, s.start_s, s.end_s) for s in segments] == [("가스사고", 0.0, None)]
    assert audio_name == "recording_7.wav"
    [clip] = scan_aihub(tmp_path).clips
    assert clip.path.name == "recording_7.wav" and clip.class_key == "gas"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not a readable JSON label file"),
        ("[1, 2]", "expected a JSON object"),
        ('{"audio": {}}', "no 'annotations' list"),
        ('{"annotations": [{"categories": {"category_02": "홍수"}}]}', "no known mid-class in categories.category_02"),
        ('{"annotations": [{"categories": {"category_02": "화재"}, "area": {"start": "x"}}]}', "not numbers of seconds"),
        ('{"annotations": [{"categories": {"category_02": "화재"}, "area": {"start": 3, "end": 1}}]}', "bad segment"),
    ],
)
def test_unrecognised_label_files_raise_naming_the_file(tmp_path: Path, content: str, message: str) -> None:
    label = tmp_path / "bad.json"
    label.write_text(content, encoding="utf-8")
    with pytest.raises(AIHubLabelError, match=message) as info:
        read_aihub_label(label)
    assert str(label) in str(info.value)


def test_missing_or_ambiguous_audio_is_refused(tmp_path: Path) -> None:
    label = write_pair(tmp_path, "5.화재", "F_006", [annotation("화재")])
    (tmp_path / "Training" / "[원천]5.화재_1" / "F_006.wav").unlink()
    with pytest.raises(AIHubLabelError, match="no audio file named F_006"):
        scan_aihub(tmp_path)
    write_audio(tmp_path / "a" / "F_006.wav", tone(0.5, 300), 16_000)
    write_audio(tmp_path / "b" / "F_006.wav", tone(0.5, 300), 16_000)
    with pytest.raises(AIHubLabelError, match="2 audio files named F_006") as info:
        scan_aihub(tmp_path)
    assert str(label) in str(info.value)
