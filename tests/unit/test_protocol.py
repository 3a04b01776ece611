from __future__ import annotations

import json
from datetime import datetime, timezone

import pytest

from shared.incident_state import IncidentState
from shared.protocol import (
    CLOSE_CODES,
    CancelMessage,
    ClassScore,
    CloseCode,
    ConfirmMessage,
    DetectionMessage,
    ErrorCode,
    ErrorMessage,
    IncidentMessage,
    LocationMessage,
    ProtocolError,
    ReadyMessage,
    ScoresMessage,
    StartMessage,
    StopMessage,
    StoppedMessage,
    parse_client_message,
    parse_server_message,
)


def start(**fields: object) -> str:
    return json.dumps({"type": "start", "encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1, **fields})


def error_code(text: str) -> ErrorCode:
    with pytest.raises(ProtocolError) as info:
        parse_client_message(text)
    return info.value.code


def test_start_with_token_location_and_frame_ms() -> None:
    message = parse_client_message(
        start(token="abc", sample_rate=44100, channels=2, frame_ms=20, location={"lat": 37.56, "lon": 126.97, "accuracy_m": 12})
    )
    assert isinstance(message, StartMessage)
    assert (message.token, message.sample_rate, message.channels, message.frame_ms) == ("abc", 44100, 2, 20)
    assert message.location is not None and message.location.lat == pytest.approx(37.56)
    assert message.bytes_per_frame == 4


@pytest.mark.parametrize("rate", [8000, 16000, 22050, 44100, 48000])
def test_every_accepted_rate(rate: int) -> None:
    message = parse_client_message(start(sample_rate=rate))
    assert isinstance(message, StartMessage) and message.sample_rate == rate


@pytest.mark.parametrize(
    "fields",
    [{"sample_rate": 11025}, {"sample_rate": 96000}, {"channels": 3}, {"channels": 0}, {"encoding": "opus"}],
)
def test_unsupported_audio_format(fields: dict[str, object]) -> None:
    assert error_code(start(**fields)) is ErrorCode.UNSUPPORTED_FORMAT


def test_unsupported_rate_message_names_the_accepted_rates() -> None:
    with pytest.raises(ProtocolError, match="11025; accepted: 8000, 16000, 22050, 44100, 48000"):
        parse_client_message(start(sample_rate=11025))


@pytest.mark.parametrize(
    "text",
    [
        json.dumps({"type": "start", "sample_rate": 16000, "channels": 1}),  # encoding missing
        start(sample_rate="fast"),
        start(frame_ms=5),
        start(frame_ms=5000),
        start(location={"lat": 91, "lon": 0}),
        json.dumps({"type": "location", "lat": 10}),
        json.dumps({"type": "location", "lat": 10, "lon": 200}),
        json.dumps({"type": "location", "lat": 10, "lon": 20, "accuracy_m": -1}),
        json.dumps({"type": "cancel"}),
        json.dumps({"type": "cancel", "incident_id": ""}),
        json.dumps({"type": "confirm", "incident_id": 5}),
    ],
)
def test_invalid_fields(text: str) -> None:
    assert error_code(text) is ErrorCode.INVALID_MESSAGE


@pytest.mark.parametrize("text", ["{", "not json", "", "[1, 2]", '"start"', "null", b"\xff\xfe"])
def test_invalid_json(text: str | bytes) -> None:
    assert error_code(text) is ErrorCode.INVALID_JSON  # type: ignore[arg-type]


@pytest.mark.parametrize("text", ['{"type": "hello"}', "{}", '{"type": 3}', '{"type": "ready"}'])
def test_unknown_type(text: str) -> None:
    assert error_code(text) is ErrorCode.UNKNOWN_TYPE


def test_control_messages() -> None:
    assert parse_client_message('{"type": "stop"}') == StopMessage()
    location = parse_client_message('{"type": "location", "lat": 1.5, "lon": -2, "accuracy_m": 30}')
    assert location == LocationMessage(lat=1.5, lon=-2.0, accuracy_m=30.0)
    assert parse_client_message('{"type": "cancel", "incident_id": "i1", "reason": "dropped a pan"}') == CancelMessage(
        incident_id="i1", reason="dropped a pan"
    )
    assert parse_client_message('{"type": "confirm", "incident_id": "i1"}') == ConfirmMessage(incident_id="i1")


def test_unknown_fields_are_ignored() -> None:
    assert parse_client_message('{"type": "stop", "flush": true}') == StopMessage()


def test_server_messages_round_trip_with_class_alias() -> None:
    detection = DetectionMessage(
        detection_id="d1",
        class_="fire",
        class_id=5,
        label_en="Fire or smoke alarm",
        label_ko="화재, 화재경보",
        confidence=0.81,
        stream_time_s=6.5,
        detected_at=datetime(2025, 1, 2, 3, 4, 5, tzinfo=timezone.utc),
    )
    wire = json.loads(detection.to_json())
    assert wire["class"] == "fire" and "class_" not in wire
    assert wire["label_ko"] == "화재, 화재경보"
    assert parse_server_message(detection.to_json()) == detection
    assert "incident_id" not in wire and "pattern" not in wire  # absent fields are left out

    counting = detection.model_copy(
        update={"incident_id": "7c0e", "deadline_at": datetime(2025, 1, 2, 3, 5, 5, tzinfo=timezone.utc),
                "seconds_left": 59.98, "pattern": "temporal3"}
    )  # fmt: skip
    wire = json.loads(counting.to_json())
    assert (wire["incident_id"], wire["seconds_left"], wire["pattern"]) == ("7c0e", 59.98, "temporal3")
    assert wire["deadline_at"] == "2025-01-02T03:05:05Z"
    assert parse_server_message(counting.to_json()) == counting

    scores = ScoresMessage(stream_time_s=2.0, top=[ClassScore(class_="fire", class_id=5, score=0.5)])
    assert json.loads(scores.to_json()) == {
        "type": "scores",
        "stream_time_s": 2.0,
        "top": [{"class": "fire", "class_id": 5, "score": 0.5}],
    }
    for message in (
        ReadyMessage(session_id="s", window_s=2.0, hop_s=0.5, model="m", classes=[], max_frame_bytes=65536),
        StoppedMessage(stream_time_s=3.0, windows=3, detections=0),
        ErrorMessage(code=ErrorCode.BEHIND, message="dropped 2 windows"),
        IncidentMessage(
            incident_id="7c0e", state=IncidentState.CANCELLED,
            deadline_at=datetime(2025, 1, 2, 3, 5, 5, tzinfo=timezone.utc),
            detail={"outcome": "cancelled", "reason": "dropped a pan"},
        ),
    ):
        assert parse_server_message(message.to_json()) == message


def test_every_error_code_has_a_close_code_or_is_a_warning() -> None:
    warnings = {
        ErrorCode.BEHIND, ErrorCode.UNKNOWN_INCIDENT, ErrorCode.INCIDENT_UNAVAILABLE, ErrorCode.LOCATION_NOT_CONSENTED
    }
    assert set(CLOSE_CODES) | warnings == set(ErrorCode)
    assert CLOSE_CODES[ErrorCode.UNAUTHORIZED] is CloseCode.UNAUTHORIZED
    assert CLOSE_CODES[ErrorCode.FRAME_TOO_LARGE] == 4413
    assert CLOSE_CODES[ErrorCode.TOO_MANY_SESSIONS] == 4429
    # Issue 12: the closes a session gets from the gateway's own decisions, as documented.
    assert CLOSE_CODES[ErrorCode.SESSION_REPLACED] == 4409
    assert CLOSE_CODES[ErrorCode.IDLE_TIMEOUT] == 4408
    assert CLOSE_CODES[ErrorCode.TOKEN_REVOKED] == 4001


def test_incident_message_states_are_the_incident_states() -> None:
    deadline = datetime(2025, 1, 2, 3, 5, 5, tzinfo=timezone.utc)
    for state in IncidentState:
        message = IncidentMessage(incident_id="i", state=state, deadline_at=deadline)
        assert json.loads(message.to_json())["state"] == state.value
        assert parse_server_message(message.to_json()) == message
    with pytest.raises(ValueError):
        parse_server_message('{"type": "incident", "incident_id": "i", "state": "lost", "deadline_at": "2025-01-02T03:05:05Z"}')


def test_json_nested_too_deeply_is_invalid_json_not_a_crash() -> None:
    # Found by tests/integration/test_ws_fuzz.py: json.loads recursed into a RecursionError.
    for text in ("[" * 30_000 + "]" * 30_000, '{"a":' * 5_000 + "1" + "}" * 5_000, "[" * 30_000):
        with pytest.raises(ProtocolError) as refused:
            parse_client_message(text)
        assert refused.value.code is ErrorCode.INVALID_JSON


def test_a_cancel_reason_with_nul_is_invalid() -> None:
    # Found by tests/integration/test_ws_fuzz.py: PostgreSQL cannot store NUL, the cancel failed.
    with pytest.raises(ProtocolError) as refused:
        parse_client_message(json.dumps({"type": "cancel", "incident_id": "x", "reason": "toast\u0000"}))
    assert refused.value.code is ErrorCode.INVALID_MESSAGE
