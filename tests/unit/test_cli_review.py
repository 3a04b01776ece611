"""``hearo review`` on a SQLite deployment: the queue driven by keys on stdin (confirm, a class,
normal, unclear, skip, back, quit, a wrong key), the player and the preloaded next segment,
the export and the report, and clear errors for bad input."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import pytest
import soundfile as sf
from typer.testing import CliRunner

from hearo.cli import app
from hearo.review_queue import ReviewQueue
from shared.db import Database, upgrade_database
from shared.review import get_segment, list_segments, read_review_manifest, review_history
from tests.review_support import Incidents, clip_store, make_incidents

runner = CliRunner()


@pytest.fixture
def deployment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[str, Incidents]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}"
    upgrade_database(url)
    monkeypatch.setenv("HEARO_CLIPS_DIR", str(tmp_path / "clips"))

    async def make() -> Incidents:
        db = Database(url)
        try:
            return await make_incidents(db, clip_store(tmp_path))
        finally:
            await db.dispose()

    return url, asyncio.run(make())


def _labels(url: str, *incidents: object) -> list[list[str]]:
    async def read() -> list[list[str]]:
        db = Database(url)
        try:
            return [[r.label for r in await review_history(db, i)] for i in incidents]  # type: ignore[arg-type]
        finally:
            await db.dispose()

    return asyncio.run(read())


def test_the_queue_takes_one_key_per_segment(deployment: tuple[str, Incidents]) -> None:
    url, made = deployment
    # donated fire: x (not a key), c (confirm); reported crime: s; donated gas: b (back to
    # the crime), n (normal); gas again: u (unclear); the queue ends.
    result = runner.invoke(app, ["review", "--url", url, "--reviewer", "kim"], input="x c s b n\nu")
    assert result.exit_code == 0, result.output
    assert "'x' is not a key" in result.output
    assert "decision: emergency · fire (0.81) · cancelled (false_alarm) · donated for training" in result.output
    assert "decision: emergency · crime (0.81) · dispatched · report: precision only, not exported" in result.output
    assert "fire      avg 0.71  ▅▇" in result.output and "audio: " in result.output
    assert "labelled 3, skipped 1" in result.output
    assert _labels(url, made.donated, made.reported, made.donated_gas) == [["fire"], ["normal"], ["unclear"]]
    # Nothing pending now; --redo shows them again and q quits at once.
    assert "nothing to review" in runner.invoke(app, ["review", "--url", url]).output
    redo = runner.invoke(app, ["review", "--url", url, "--redo", "--reviewer", "lee"], input="5q")
    assert redo.exit_code == 0 and "last label: fire by kim (1 in all)" in redo.output
    assert _labels(url, made.donated) == [["fire", "fire"]]


def test_export_and_report(deployment: tuple[str, Incidents], tmp_path: Path) -> None:
    url, made = deployment
    assert runner.invoke(app, ["review", "--url", url, "--reviewer", "kim"], input="n c 4").exit_code == 0
    out = tmp_path / "reviewed"
    result = runner.invoke(app, ["review", "export", "--url", url, "--out", str(out), "--reviewer", "kim"])
    assert result.exit_code == 0, result.output
    assert "exported 2 segments" in result.output
    clips = {c.incident: c for c in read_review_manifest(out / "manifest.csv")}
    assert clips[str(made.donated)].class_key == "normal" and clips[str(made.donated_gas)].class_key == "gas"
    assert str(made.reported) not in clips  # a report: reviewed, never exported
    report = json.loads(runner.invoke(app, ["review", "report", "--url", url, "--json"]).output)
    assert [(r["class"], r["confirmed"], r["judged"]) for r in report["classes"]] == [("crime", 1, 1), ("fire", 0, 1), ("gas", 1, 1)]
    table = runner.invoke(app, ["review", "report", "--url", url]).output
    assert "fire" in table and "normal 1" in table and "66.7%" in table


def test_bad_input_is_a_clear_error(deployment: tuple[str, Incidents], tmp_path: Path) -> None:
    url, _ = deployment
    result = runner.invoke(app, ["review", "report", "--url", url, "--kind", "burglary"])
    assert result.exit_code == 2 and "unknown kind 'burglary'" in result.output
    result = runner.invoke(app, ["review", "--url", url, "--reviewer", "x" * 65])
    assert result.exit_code == 2 and "--reviewer must be 1 to 64 characters" in result.output
    result = runner.invoke(app, ["data", "build", "--out", str(tmp_path / "none"), "--extra", str(tmp_path / "m.csv"), "--extra-only"])
    assert result.exit_code == 2 and "no manifest.csv" in result.output


async def test_the_player_gets_each_wav_and_the_next_segment_is_preloaded(sqlite_db: Database, tmp_path: Path) -> None:
    store = clip_store(tmp_path)
    made = await make_incidents(sqlite_db, store)
    played = tmp_path / "played"
    played.mkdir()
    audio_dir = tmp_path / "audio"
    audio_dir.mkdir()
    segments = await list_segments(sqlite_db)
    seen: list[set[str]] = []

    def keys() -> str:
        # Asked for the first key: the first segment plays, the second is being fetched meanwhile.
        deadline = time.monotonic() + 10
        while len(list(played.iterdir())) < len(seen) + 1 or len(list(audio_dir.iterdir())) < len(seen) + 2:
            assert time.monotonic() < deadline, (list(played.iterdir()), list(audio_dir.iterdir()))
            time.sleep(0.05)
        seen.append({p.name for p in audio_dir.iterdir()})
        return "s" if len(seen) < 2 else "q"

    queue = ReviewQueue(sqlite_db, store, segments, reviewer="kim", audio_dir=audio_dir, keys=keys, say=lambda _: None,
                        play_with=f"cp -t {played}")
    summary = await queue.run()
    assert summary.skipped == 1
    assert seen[0] == {f"{made.donated}.wav", f"{made.reported}.wav"}
    assert {p.name for p in played.iterdir()} == {f"{made.donated}.wav", f"{made.reported}.wav"}
    audio, rate = sf.read(str(played / f"{made.donated}.wav"))
    assert rate == 16_000 and audio.shape[0] == 30 * 16_000
    assert (await get_segment(sqlite_db, made.donated)).review is None
