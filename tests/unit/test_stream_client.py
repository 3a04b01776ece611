"""The CLI client's audio sources, its incident display, and its refusals before any connection
(servers: integration)."""

from __future__ import annotations

import asyncio
import io
import json
import sys
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest
import soundfile
from rich.console import Console

from hearo.audio_sources import FRAME_MS, FileSource, InputError
from hearo.incident_board import IncidentBoard, IncidentStatus, cancel_hint, http_base
from hearo.stream_client import EXIT_INPUT, _Session, run_stream
from hearo.stream_view import StreamView
from shared.incident_state import IncidentState
from shared.protocol import ClassScore, DetectionMessage, IncidentMessage, ScoresMessage, StoppedMessage


def tone(rate: int, seconds: float, channels: int) -> np.ndarray:
    t = np.arange(round(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * 1000 * t)
    return np.stack([mono * (c + 1) / channels for c in range(channels)], axis=1).astype(np.float32)


def collect(source: FileSource) -> list[bytes]:
    async def frames() -> list[bytes]:
        return [frame async for frame in source.frames()]

    return asyncio.run(frames())


def test_accepted_rate_and_stereo_are_sent_as_they_are(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    audio = tone(44100, 1.0, channels=2)
    soundfile.write(path, audio, 44100, subtype="PCM_16")
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (44100, 2)
    frames = collect(source)
    assert len(frames[0]) == 44100 * FRAME_MS // 1000 * 4  # 100 ms of interleaved int16 pairs
    pcm = np.frombuffer(b"".join(frames), dtype="<i2").reshape(-1, 2)
    expected = soundfile.read(path, dtype="int16")[0]
    np.testing.assert_array_equal(pcm, expected)


def test_other_rates_are_resampled_to_16k_mono(tmp_path: Path) -> None:
    path = tmp_path / "odd.flac"
    soundfile.write(path, tone(11025, 2.0, channels=2), 11025)
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (16000, 1)
    pcm = np.frombuffer(b"".join(collect(source)), dtype="<i2").astype(np.float32) / 32768
    assert len(pcm) == 32000
    spectrum = np.abs(np.fft.rfft(pcm[1000:-1000]))
    assert np.fft.rfftfreq(len(pcm) - 2000, 1 / 16000)[np.argmax(spectrum)] == pytest.approx(1000, abs=2)
    # Channels (0.25 and 0.5 amplitude) are averaged: 0.375.
    assert np.max(np.abs(pcm[1000:-1000])) == pytest.approx(0.375, abs=0.01)


def test_more_than_two_channels_are_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "surround.wav"
    soundfile.write(path, tone(48000, 0.5, channels=4), 48000)
    source = FileSource(path)
    assert (source.sample_rate, source.channels) == (48000, 1)
    assert len(b"".join(collect(source))) == 48000 * 2 // 2


def test_unreadable_file(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not audio")
    with pytest.raises(InputError, match="cannot read"):
        FileSource(path)
    assert run_stream(path, False, "ws://127.0.0.1:9/v1/stream", "token", True, True) == EXIT_INPUT


def test_mic_without_sounddevice_says_how_to_get_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setitem(sys.modules, "sounddevice", None)  # makes `import sounddevice` fail
    assert run_stream(None, True, "ws://127.0.0.1:9/v1/stream", "token", False, False) == EXIT_INPUT
    assert "hearo[mic]" in capsys.readouterr().err


def detection(**fields: object) -> DetectionMessage:
    return DetectionMessage(
        detection_id="d", class_="fire", class_id=5, label_en="Fire or smoke alarm", label_ko="화재, 화재경보",
        confidence=0.7, stream_time_s=4.0, detected_at=datetime(2026, 1, 1, tzinfo=UTC), **fields,  # type: ignore[arg-type]
    )  # fmt: skip


def test_the_countdown_uses_the_gateways_seconds_left_whatever_the_clocks() -> None:
    board = IncidentBoard()
    now = 1_000_000.0
    # The gateway's clock is 30 s ahead of ours: its deadline_at reads 30 s late here.
    deadline_at = datetime.fromtimestamp(now + 60 + 30, UTC)
    board.on_detection(detection(incident_id="a" * 32, deadline_at=deadline_at, seconds_left=60.0), now)
    (status,) = board.unresolved
    assert status.describe(now + 15) == (
        f"incident aaaaaaaa (fire): reporting in 45 s unless cancelled (hearo incident cancel {'a' * 32})"
    )
    # "Report now" moves the deadline to the gateway's now: due at once here too.
    board.on_incident(
        IncidentMessage(
            incident_id="a" * 32, state=IncidentState.PENDING, deadline_at=datetime.fromtimestamp(now + 20 + 30, UTC)
        ),
        now + 20,
    )
    assert status.describe(now + 20).startswith("incident aaaaaaaa (fire): reporting in 0 s")
    board.on_incident(
        IncidentMessage(
            incident_id="a" * 32, state=IncidentState.DISPATCHED, deadline_at=deadline_at, detail={"reached": ["119"]}
        ),
        now + 21,
    )
    assert board.unresolved == [] and status.describe(now + 21) == "incident aaaaaaaa (fire): REPORTED to 119"
    # The alarm heard again after the report: added to it, no countdown.
    board.on_detection(detection(incident_id="a" * 32), now + 50)
    board.on_incident(
        IncidentMessage(incident_id="a" * 32, state=IncidentState.DISPATCHED, deadline_at=deadline_at,
                        detail={"event": "evidence", "class": "fire", "detections": 2}),  # fmt: skip
        now + 50,
    )
    assert status.describe(now + 50) == (
        "incident aaaaaaaa (fire): already REPORTED; heard again (2 detections), not reported twice"
    )


def test_evidence_joins_the_incident_without_a_new_countdown() -> None:
    board = IncidentBoard()
    board.on_detection(detection(incident_id="b" * 32), 0.0)
    assert board.incidents == {}  # no deadline: known from its incident message only
    board.on_incident(
        IncidentMessage(incident_id="b" * 32, state=IncidentState.CANCELLED, deadline_at=datetime(2026, 1, 1, tzinfo=UTC),
                        detail={"event": "cancel", "reason": "toast"}),  # fmt: skip
        0.0,
    )
    assert board.incidents["b" * 32].describe(0.0) == "incident bbbbbbbb: cancelled, nothing reported (toast)"


def test_the_countdown_says_what_the_homes_other_devices_heard() -> None:
    board, deadline_at = IncidentBoard(), datetime.fromtimestamp(60.0, UTC)
    board.on_detection(detection(incident_id="c" * 32, deadline_at=deadline_at, seconds_left=60.0), 0.0)
    pending = IncidentState.PENDING
    alone = {"peers_listening": 1, "supporting": [], "only_this_device": True}
    board.on_incident(IncidentMessage(incident_id="c" * 32, state=pending, deadline_at=deadline_at, corroboration=alone,
                                      detail={"event": "corroboration"}), 5.0)  # fmt: skip
    assert board.incidents["c" * 32].describe(5.0).endswith("; only this device heard it")
    # A later update (no corroboration in it) keeps what was told.
    board.on_incident(IncidentMessage(incident_id="c" * 32, state=pending, deadline_at=deadline_at), 6.0)
    assert board.incidents["c" * 32].describe(6.0).endswith("; only this device heard it")
    heard = {"peers_listening": 2, "supporting": [{"room": "bedroom", "how": "same_class"}, {"room": "hall", "how": "loud"}]}
    board.on_incident(IncidentMessage(incident_id="c" * 32, state=pending, deadline_at=deadline_at, corroboration=heard), 7.0)
    assert board.incidents["c" * 32].describe(7.0).endswith("; also heard in: bedroom")


def test_leaving_prints_how_to_cancel() -> None:
    status = IncidentStatus("c" * 32, IncidentState.PENDING, deadline=1_000_000.0, class_key="fire")
    hint = cancel_hint(status, http_base("ws://10.0.0.5:8000/v1/stream"))
    assert "leaving did not cancel it" in hint
    assert f"hearo incident cancel {'c' * 32}" in hint
    assert (
        f"curl -X POST http://10.0.0.5:8000/v1/incidents/{'c' * 32}/cancel -H 'Authorization: Bearer $HEARO_TOKEN'"
        in hint
    )
    assert http_base("wss://hearo.example/v1/stream") == "https://hearo.example"


def test_ctrl_c_stops_the_audio_first_and_leaves_at_once_during_a_countdown() -> None:
    async def scenario() -> list[tuple[bool, bool]]:
        seen = []
        for pending in (False, True):
            view = StreamView("ws://x/v1/stream")
            if pending:
                view.board.incidents["d"] = IncidentStatus("d", IncidentState.PENDING, deadline=0.0)
            session = _Session(None, None, asyncio.Event(), view, json_output=True)  # type: ignore[arg-type]
            session.interrupt()
            seen.append((session.stop.is_set(), session.leave.is_set()))
            session.interrupt()
            seen.append((session.stop.is_set(), session.leave.is_set()))
        return seen

    assert asyncio.run(scenario()) == [(True, False), (True, True), (True, True), (True, True)]


class ScriptedSocket:
    """The gateway's side of a stream as a fixed list of text frames."""

    def __init__(self, frames: list[str]) -> None:
        self.frames = frames

    async def __aiter__(self):  # type: ignore[no-untyped-def]
        for frame in self.frames:
            yield frame


def receive(frames: list[str], json_output: bool) -> tuple[_Session, str]:
    err = io.StringIO()
    session = _Session(
        ScriptedSocket(frames), None, asyncio.Event(), StreamView("ws://x/v1/stream"), json_output,  # type: ignore[arg-type]
        err=Console(file=err, width=400),
    )  # fmt: skip
    asyncio.run(session._receive())
    return session, err.getvalue()


def test_messages_that_do_not_parse_are_reported_and_the_stream_goes_on(capsys: pytest.CaptureFixture[str]) -> None:
    scores = ScoresMessage(stream_time_s=1.0, top=[ClassScore(class_="fire", class_id=5, score=0.9)]).to_json()
    frames = [
        "not json",
        '{"type": "gossip", "about": "a newer gateway"}',
        scores,
        '{"type": "gossip"}',
        '{"type": "scores"}',
        StoppedMessage(stream_time_s=1.0, windows=2, detections=0).to_json(),
    ]
    session, err = receive(frames, json_output=True)
    assert session.view.scores is not None and session.stopped  # skipped, not fatal
    lines = capsys.readouterr().out.splitlines()
    # Each frame's own line, and after each one that does not parse, a warning line.
    assert lines[0] == "not json"
    warnings = [json.loads(line) for line in lines if line.startswith('{"type": "client_warning"')]
    assert [(w["code"], w["kind"]) for w in warnings] == [
        ("unreadable_message", "not JSON"), ("unreadable_message", "gossip"),
        ("unreadable_message", "gossip"), ("unreadable_message", "scores"),
    ]  # fmt: skip
    assert lines.index(json.dumps(warnings[0])) == 1
    assert "stream_time_s: Field required" in warnings[3]["message"]
    assert len(lines) == len(frames) + len(warnings)
    # On stderr once per kind.
    assert err.count("warning:") == 3
    assert "cannot read (gossip)" in err and "cannot read (not JSON)" in err and "cannot read (scores)" in err


def test_without_json_a_message_that_does_not_parse_is_reported_on_stderr_only(
    capsys: pytest.CaptureFixture[str],
) -> None:
    session, err = receive(['{"type": "gossip"}', '["not", "an", "object"]'], json_output=False)
    assert capsys.readouterr().out == ""
    assert "cannot read (gossip)" in err and "cannot read (no type)" in err
    assert not session.stopped
