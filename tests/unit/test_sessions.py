"""Sessions over Starlette's in-process WebSocket client, with a fake classifier and token check
(``tests/gateway_support.py``): audio decides what the fake classifier hears."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from dataclasses import replace

import numpy as np
import pytest
from starlette.testclient import TestClient

from services.gateway import sessions
from services.gateway.metrics import GATEWAY_METRICS
from services.gateway.session_registry import SessionRegistry
from shared.protocol import CloseCode, ErrorCode
from shared.taxonomy import CLASS_KEYS, CLASSES, NUM_CLASSES
from tests.gateway_support import (
    DEVICE_TOKENS,
    FIRE,
    TOKEN,
    FakeClassifier,
    audio,
    fatal_error,
    make_client,
    send_audio,
    session,
    start,
    stop,
    temporal3_square,
)


@pytest.fixture
def classifier() -> FakeClassifier:
    return FakeClassifier()


@pytest.fixture
def client(classifier: FakeClassifier) -> Iterator[TestClient]:
    with make_client(classifier) as test_client:
        yield test_client


def test_ready_describes_the_session(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json(start())
        ready = ws.receive_json()
        assert ready["type"] == "ready"
        assert ready["window_s"] == pytest.approx(2.0) and ready["hop_s"] == pytest.approx(0.5)
        assert ready["model"] == "fake-model"
        assert [c["key"] for c in ready["classes"]] == list(CLASS_KEYS)
        assert ready["classes"][FIRE]["label_ko"] == CLASSES[FIRE].label_ko
        assert ready["max_frame_bytes"] == 65536
        assert len(ready["session_id"]) == 32
        assert stop(ws)[-1] == {"type": "stopped", "stream_time_s": 0.0, "windows": 0, "detections": 0}


def test_alarm_gives_one_detection_and_every_window_is_classified(client: TestClient) -> None:
    with session(client) as ws:
        send_audio(ws, audio(3.0) + audio(6.0, loud=True) + audio(3.0))
        messages = stop(ws)
    detections = [m for m in messages if m["type"] == "detection"]
    assert len(detections) == 1
    detection = detections[0]
    assert (detection["class"], detection["class_id"], detection["label_en"]) == ("fire", FIRE, CLASSES[FIRE].label_en)
    # Reported at onset: the first window whose 3-window mean reaches 0.5 is (0 + 0.9 + 0.9) / 3.
    assert detection["confidence"] == pytest.approx(0.6)
    # The tone starts at 3 s: the first loud window ends at 3.506 s, the second (onset) at 4.006 s.
    assert detection["stream_time_s"] == pytest.approx(4.006)
    assert detection["detected_at"].endswith("Z")
    stopped = messages[-1]
    # 12 s of EfficientAT audio: windows end at 2.006, 2.506, ... 11.506, then the silence that
    # ends the stream completes 12.006 (the first to reach its end), 12.506 and 13.006 -> 23 windows.
    assert stopped == {"type": "stopped", "stream_time_s": 12.0, "windows": 23, "detections": 1}


def test_a_recording_too_short_for_the_smoothing_is_judged_to_its_end(client: TestClient) -> None:
    """2.9 s of alarm give only two windows (2.006 and 2.506 s) before the stream stops: the
    silence that ends it completes three more, so the detector averages three and fires."""
    with session(client) as ws:
        send_audio(ws, audio(2.9, loud=True))
        messages = stop(ws)
    detections = [m for m in messages if m["type"] == "detection"]
    assert [d["class"] for d in detections] == ["fire"]
    # The onset is the first window with three before it: 3.006 s, past the audio's end.
    assert detections[0]["stream_time_s"] == pytest.approx(3.006)
    assert messages[-1] == {"type": "stopped", "stream_time_s": 2.9, "windows": 5, "detections": 1}


def test_a_recording_that_ends_in_silence_does_not_fire_from_its_end(client: TestClient) -> None:
    with session(client) as ws:
        send_audio(ws, audio(0.3, loud=True) + audio(3.7))  # the burst is in the first window only
        messages = stop(ws)
    assert messages[-1]["windows"] == 7 and messages[-1]["detections"] == 0


def test_a_client_leaving_has_its_end_judged_once(client: TestClient, caplog: pytest.LogCaptureFixture) -> None:
    for leave in ([], [{"type": "stop"}]):  # with no word, and just after ``stop``
        caplog.clear()
        with caplog.at_level(logging.INFO, logger="services.gateway.sessions"), session(client) as ws:
            send_audio(ws, audio(2.9, loud=True))
            for message in leave:
                ws.send_json(message)
            ws.close()  # the disconnect, while the session runs on (as under uvicorn)
            deadline = time.monotonic() + 5.0
            while not (closed := [r.getMessage() for r in caplog.records if " closed: " in r.getMessage()]):
                assert time.monotonic() < deadline, "the session did not end"
                time.sleep(0.01)
        # The audio's 2 windows and the end's 3, judged once: the alarm is detected.
        assert closed[0].endswith("closed: 5 windows classified, 1 detections"), (leave, closed)


@pytest.mark.parametrize(("setting", "detected"), [({}, 0), ({"fire": 0.5}, 1)])
def test_sessions_after_a_connect_use_the_models_thresholds_unless_set(
    classifier: FakeClassifier, setting: dict[str, float], detected: int
) -> None:
    """The fake model scores the tone 0.9 as fire: under the model's 0.95 nothing fires,
    unless the gateway's own setting says 0.5."""
    with make_client(classifier, detector_thresholds=setting, alarm_patterns=False) as client:
        manager: SessionRegistry = client.app.state.sessions  # type: ignore[attr-defined]
        assert classifier.ready is not None
        manager.use_model(replace(classifier.ready, thresholds={"fire": 0.95, "crime": 0.3}))
        assert manager.detector_config.thresholds["crime"] == 0.3
        with session(client) as ws:
            send_audio(ws, audio(3.0) + audio(6.0, loud=True) + audio(3.0))
            messages = stop(ws)
    assert messages[-1]["detections"] == detected


def test_scores_are_ranked_with_tags(client: TestClient) -> None:
    with session(client) as ws:
        send_audio(ws, audio(2.5, loud=True))
        messages = stop(ws)
    scores = [m for m in messages if m["type"] == "scores"]
    assert scores
    top = scores[0]["top"]
    assert [entry["class"] for entry in top][0] == "fire" and len(top) == NUM_CLASSES
    assert top[0]["score"] == pytest.approx(0.9)
    assert scores[0]["tags"] == [{"label": "Smoke detector, smoke alarm", "score": 0.8}]


def test_scores_can_be_switched_off(classifier: FakeClassifier) -> None:
    with make_client(classifier, scores_per_second=0) as client, session(client) as ws:
        send_audio(ws, audio(3.0))
        assert [m["type"] for m in stop(ws)] == ["stopped"]


def test_a_client_may_ask_for_fewer_scores_never_more(classifier: FakeClassifier) -> None:
    with make_client(classifier, scores_per_second=1000.0) as client:
        with session(client, scores_per_second=0) as ws:
            send_audio(ws, audio(3.0))
            assert [m["type"] for m in stop(ws)] == ["stopped"]
    with make_client(classifier, scores_per_second=0) as client, session(client, scores_per_second=5) as ws:
        send_audio(ws, audio(3.0))
        assert [m["type"] for m in stop(ws)] == ["stopped"]


def test_stereo_44k1_is_accepted(client: TestClient) -> None:
    mono = np.frombuffer(audio(3.0, rate=44100, loud=True), dtype="<i2")
    with session(client, sample_rate=44100, channels=2) as ws:
        send_audio(ws, np.repeat(mono, 2).astype("<i2").tobytes(), frame_bytes=4 * 882)
        messages = stop(ws)
    assert messages[-1]["stream_time_s"] == pytest.approx(3.0)
    assert messages[-1]["windows"] == 5  # 2.006 and 2.506, then the end's 3.006, 3.506 and 4.006


def test_token_in_authorization_header(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream", headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        ws.send_json(start(token=None))
        assert ws.receive_json()["type"] == "ready"


@pytest.mark.parametrize("token", ["wrong", None])
def test_bad_or_missing_token_is_4001(client: TestClient, token: str | None) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json(start(token=token))
        fatal_error(ws, ErrorCode.UNAUTHORIZED, CloseCode.UNAUTHORIZED)


def test_binary_before_start_is_4400(client: TestClient) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_bytes(audio(0.1))
        fatal_error(ws, ErrorCode.START_REQUIRED, CloseCode.BAD_REQUEST)


@pytest.mark.parametrize(
    ("first", "code"),
    [
        ("{not json", ErrorCode.INVALID_JSON),
        ('{"type": "hello"}', ErrorCode.UNKNOWN_TYPE),
        ('{"type": "stop"}', ErrorCode.START_REQUIRED),
        (json.dumps(start(sample_rate=11025)), ErrorCode.UNSUPPORTED_FORMAT),
        (json.dumps(start(channels=6)), ErrorCode.UNSUPPORTED_FORMAT),
        (json.dumps(start(frame_ms=1000, sample_rate=48000, channels=2)), ErrorCode.INVALID_MESSAGE),
    ],
)
def test_bad_first_message_is_4400(client: TestClient, first: str, code: ErrorCode) -> None:
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_text(first)
        fatal_error(ws, code, CloseCode.BAD_REQUEST)


def test_start_timeout_is_4408(classifier: FakeClassifier) -> None:
    with make_client(classifier, start_timeout_s=0.2) as client, client.websocket_connect("/v1/stream") as ws:
        fatal_error(ws, ErrorCode.START_TIMEOUT, CloseCode.START_TIMEOUT)


def test_misaligned_frame_is_4400(client: TestClient) -> None:
    with session(client) as ws:
        ws.send_bytes(b"\x00" * 101)
        fatal_error(ws, ErrorCode.MISALIGNED_FRAME, CloseCode.BAD_REQUEST)


def test_stereo_frame_must_be_whole_sample_pairs(client: TestClient) -> None:
    with session(client, channels=2) as ws:
        ws.send_bytes(b"\x00" * 6)
        fatal_error(ws, ErrorCode.MISALIGNED_FRAME, CloseCode.BAD_REQUEST)


def test_oversized_frame_is_4413(classifier: FakeClassifier) -> None:
    with make_client(classifier, max_frame_bytes=4096) as client, session(client) as ws:
        ws.send_bytes(b"\x00" * 4098)
        fatal_error(ws, ErrorCode.FRAME_TOO_LARGE, CloseCode.FRAME_TOO_LARGE)


def test_bad_control_messages_after_start_are_answered_and_the_session_goes_on(client: TestClient) -> None:
    with session(client) as ws:
        send_audio(ws, audio(1.0))
        for text, code in [
            ("{oops", ErrorCode.INVALID_JSON),
            ('{"type": "dance"}', ErrorCode.UNKNOWN_TYPE),
            ('{"type": "location", "lat": 100, "lon": 0}', ErrorCode.INVALID_MESSAGE),
            (json.dumps(start()), ErrorCode.UNEXPECTED_MESSAGE),
            ('{"type": "cancel", "incident_id": "i-1", "reason": "false alarm"}', ErrorCode.UNKNOWN_INCIDENT),
            ('{"type": "confirm", "incident_id": "i-1"}', ErrorCode.UNKNOWN_INCIDENT),
        ]:
            ws.send_text(text)
            reply = ws.receive_json()
            assert (reply["type"], reply["code"], reply["fatal"]) == ("error", code.value, False)
        ws.send_json({"type": "location", "lat": 37.5, "lon": 127.0, "accuracy_m": 20})
        send_audio(ws, audio(2.0))
        assert stop(ws)[-1]["windows"] == 5


def test_control_flood_is_4429(client: TestClient) -> None:
    with session(client) as ws:
        for _ in range(sessions.CONTROL_BURST + 5):
            ws.send_json({"type": "location", "lat": 1.0, "lon": 2.0})
        fatal_error(ws, ErrorCode.FLOOD, CloseCode.TOO_MANY_REQUESTS)


def test_session_limit_is_4429_and_frees_on_close(classifier: FakeClassifier) -> None:
    with make_client(classifier, max_sessions=1) as client:
        with session(client) as first:
            with client.websocket_connect("/v1/stream") as second:
                second.send_json(start())
                fatal_error(second, ErrorCode.TOO_MANY_SESSIONS, CloseCode.TOO_MANY_REQUESTS)
            stop(first)
        with session(client) as third:
            stop(third)


def test_a_failing_session_leaves_another_untouched(client: TestClient) -> None:
    with session(client) as healthy:
        send_audio(healthy, audio(1.0))
        with session(client) as broken:
            broken.send_bytes(b"\x01" * 3)
            fatal_error(broken, ErrorCode.MISALIGNED_FRAME, CloseCode.BAD_REQUEST)
        send_audio(healthy, audio(3.0, loud=True))
        messages = stop(healthy)
    # 4 s: windows end at 2.006, 2.506, 3.006 and 3.506 s, all holding the tone, then the end's
    # 4.006, 4.506 and 5.006 s.
    assert messages[-1]["windows"] == 7 and messages[-1]["detections"] == 1


def test_inference_down_at_start_is_4503(classifier: FakeClassifier, client: TestClient) -> None:
    classifier.connected = False
    with client.websocket_connect("/v1/stream") as ws:
        ws.send_json(start())
        fatal_error(ws, ErrorCode.INFERENCE_UNAVAILABLE, CloseCode.INFERENCE_UNAVAILABLE)


def test_inference_failure_mid_session_is_a_warning_once(classifier: FakeClassifier, client: TestClient) -> None:
    classifier.fail = True
    with session(client) as ws:
        send_audio(ws, audio(4.0))
        messages = stop(ws)
    warnings = [m for m in messages if m["type"] == "error"]
    assert [(w["code"], w["fatal"]) for w in warnings] == [("inference_unavailable", False)]
    assert messages[-1]["windows"] == 0


def test_live_client_that_inference_cannot_keep_up_with_loses_the_oldest_windows(
    classifier: FakeClassifier, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Count every client as live (no audio is "ahead of real time") to test the live policy fast.
    monkeypatch.setattr(sessions, "AHEAD_SLACK_S", 1e9)
    with make_client(classifier, window_queue_size=2) as client, session(client) as ws:
        classifier.gate = asyncio.Event()  # created here, awaited on the app's loop only
        send_audio(ws, audio(6.0))  # 9 windows: one in flight, two queued, the rest dropped
        warning = ws.receive_json()
        assert (warning["code"], warning["fatal"]) == ("behind", False)
        gate = classifier.gate
        client.portal.call(gate.set)  # type: ignore[union-attr]
        messages = stop(ws)
    assert not [m for m in messages if m["type"] == "error"]  # told once
    assert messages[-1]["windows"] < 9


def test_recorded_audio_faster_than_inference_is_slowed_not_dropped(classifier: FakeClassifier) -> None:
    classifier.delay_s = 0.02
    held = GATEWAY_METRICS.registry.get_sample_value("hearo_gateway_held_windows_total") or 0.0
    with make_client(classifier, window_queue_size=2) as client, session(client) as ws:
        send_audio(ws, audio(8.0), frame_bytes=16000)
        messages = stop(ws)
    assert not [m for m in messages if m["type"] == "error"]
    assert messages[-1]["windows"] == 15  # 12 over the audio, 3 over its end
    # Each judged: by the model, or held back by the novelty gate (steady sound called normal).
    held = (GATEWAY_METRICS.registry.get_sample_value("hearo_gateway_held_windows_total") or 0.0) - held
    assert sum(classifier.calls) + held == 15


def test_speed_limit_throttles_a_fast_client(classifier: FakeClassifier) -> None:
    with make_client(classifier, max_stream_speed=4.0) as client, session(client) as ws:
        began = time.monotonic()
        send_audio(ws, audio(4.0), frame_bytes=16000)
        messages = stop(ws)
        elapsed = time.monotonic() - began
    # 4 s of audio with a 2 s burst allowance at 4x real time: at least (4 - 2) / 4 = 0.5 s.
    assert elapsed >= 0.45
    assert messages[-1]["windows"] == 7


def test_client_leaving_mid_stream_frees_its_slot(classifier: FakeClassifier) -> None:
    with make_client(classifier, max_sessions=1) as client:
        with session(client) as ws:
            send_audio(ws, audio(1.0))
        manager: SessionRegistry = client.app.state.sessions  # type: ignore[attr-defined]
        deadline = time.monotonic() + 2.0
        while manager.active and time.monotonic() < deadline:
            time.sleep(0.01)
        assert manager.active == 0
        with session(client) as again:
            stop(again)



def test_alarm_pattern_the_model_misses_gives_one_fire_detection(classifier: FakeClassifier, client: TestClient) -> None:
    classifier.deaf = True
    with session(client) as ws:
        send_audio(ws, temporal3_square(14.0))
        messages = stop(ws)
    found = [m for m in messages if m["type"] == "detection"]
    assert [(d["class"], d["pattern"]) for d in found] == [("fire", "temporal3")], found
    # Two full groups are needed: the second ends at 4 + 2.5 = 6.5 s.
    assert found[0]["stream_time_s"] == pytest.approx(6.5, abs=0.1)
    assert 0.4 <= found[0]["confidence"] <= 1.0
    assert messages[-1]["detections"] == 1


def test_model_and_pattern_hearing_one_alarm_make_one_detection(client: TestClient) -> None:
    with session(client) as ws:
        send_audio(ws, temporal3_square(14.0))  # loud enough for the fake model too
        messages = stop(ws)
    found = [m for m in messages if m["type"] == "detection"]
    assert len(found) == 1 and "pattern" not in found[0]  # the model heard it first
    assert found[0]["stream_time_s"] < 6.0


def test_alarm_patterns_are_heard_while_inference_is_down(classifier: FakeClassifier, client: TestClient) -> None:
    classifier.fail = True
    with session(client) as ws:
        send_audio(ws, temporal3_square(10.0))
        messages = stop(ws)
    assert [(m["class"], m["pattern"]) for m in messages if m["type"] == "detection"] == [("fire", "temporal3")]


def test_alarm_patterns_can_be_switched_off(classifier: FakeClassifier) -> None:
    classifier.deaf = True
    with make_client(classifier, alarm_patterns=False) as client, session(client) as ws:
        send_audio(ws, temporal3_square(10.0))
        assert stop(ws)[-1]["detections"] == 0


def test_location_without_consent_is_refused_once(client: TestClient) -> None:
    with session(client, location={"lat": 37.5, "lon": 127.0}) as ws:  # the fake device did not consent
        warning = ws.receive_json()
        assert (warning["code"], warning["fatal"]) == ("location_not_consented", False)
        ws.send_json({"type": "location", "lat": 37.6, "lon": 127.1})
        messages = stop(ws)
    assert [m["type"] for m in messages] == ["stopped"]


# --- fair sessions and revocation (issue 12) ---------------------------------------------------


def test_a_device_over_its_cap_replaces_its_oldest_session_and_others_are_untouched(
    classifier: FakeClassifier,
) -> None:
    with make_client(classifier, max_sessions_per_device=2) as client:
        manager: SessionRegistry = client.app.state.sessions  # type: ignore[attr-defined]
        with session(client, token="token-b") as other, session(client, token="token-a") as first:
            with session(client, token="token-a") as second, session(client, token="token-a") as third:
                error = fatal_error(first, ErrorCode.SESSION_REPLACED, CloseCode.SESSION_REPLACED)
                assert "oldest" in error["message"]
                assert manager.active == 3 and len(manager.sessions_of(DEVICE_TOKENS["token-a"])) == 2
                for ws in (second, third, other):
                    send_audio(ws, audio(3.0, loud=True))
                    assert stop(ws)[-1]["detections"] == 1
        assert manager.active == 0


def test_replacing_frees_a_slot_even_when_the_gateway_is_full(classifier: FakeClassifier) -> None:
    with make_client(classifier, max_sessions=2, max_sessions_per_device=2) as client:
        with session(client, token="token-a") as first, session(client, token="token-a") as second:
            with client.websocket_connect("/v1/stream") as other_device:
                other_device.send_json(start(token="token-b"))
                fatal_error(other_device, ErrorCode.TOO_MANY_SESSIONS, CloseCode.TOO_MANY_REQUESTS)
            with session(client, token="token-a") as third:
                fatal_error(first, ErrorCode.SESSION_REPLACED, CloseCode.SESSION_REPLACED)
                stop(third)
            stop(second)


def test_a_session_that_sends_no_audio_is_closed_4408(classifier: FakeClassifier) -> None:
    with make_client(classifier, idle_timeout_s=0.3) as client:
        with session(client) as silent:
            silent.send_json({"type": "location", "lat": 1.0, "lon": 2.0})  # not audio: still idle
            error = fatal_error(silent, ErrorCode.IDLE_TIMEOUT, CloseCode.IDLE_TIMEOUT)
            assert "no audio for 0.3 s" in error["message"]
        with session(client) as talking:
            for _ in range(8):  # 0.8 s of audio, in frames 0.1 s apart: never idle
                send_audio(talking, audio(0.1))
                time.sleep(0.1)
            stop(talking)


def test_revoking_a_device_closes_its_stale_sessions_4001(classifier: FakeClassifier) -> None:
    with make_client(classifier) as client:
        manager: SessionRegistry = client.app.state.sessions  # type: ignore[attr-defined]
        device = DEVICE_TOKENS["token-a"]
        with session(client, token="token-a") as revoked, session(client, token="token-b") as other:
            # The device's token is now another one: this session's token is stale.
            assert client.portal.call(manager.revoke, device, "hash-of-the-new-token") == 1  # type: ignore[union-attr]
            error = fatal_error(revoked, ErrorCode.TOKEN_REVOKED, CloseCode.UNAUTHORIZED)
            assert "rotated" in error["message"]
            stop(other)
        # A session that authenticated with the old token before the revocation was heard.
        with client.websocket_connect("/v1/stream") as late:
            late.send_json(start(token="token-a"))
            fatal_error(late, ErrorCode.TOKEN_REVOKED, CloseCode.UNAUTHORIZED)
        assert manager.active == 0
