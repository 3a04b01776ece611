from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL
from shared.inference_wire import (
    SCORES_HEADER,
    WINDOWS_HEADER,
    InferenceErrorCode,
    InferenceErrorMessage,
    Hello,
    PayloadDtype,
    Ready,
    ScoresResult,
    WindowsRequest,
    WireError,
    decode_control,
    encode_control,
)
from shared.taxonomy import CLASS_KEYS

SPEC = EFFICIENTAT_MEL


def windows(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, SPEC.window_frames, SPEC.n_mels)).astype(np.float32)


def test_windows_round_trip_float32_is_exact() -> None:
    request = WindowsRequest(2**64 - 1, windows(3))
    data = request.encode()
    assert len(data) == WINDOWS_HEADER.size + 3 * 200 * 128 * 4
    decoded = WindowsRequest.decode(data, SPEC, max_windows=32)
    assert decoded.request_id == 2**64 - 1
    assert decoded.windows.dtype == np.float32
    assert decoded.windows.flags.writeable
    np.testing.assert_array_equal(decoded.windows, request.windows)


def test_windows_round_trip_float16_halves_payload_within_tolerance() -> None:
    request = WindowsRequest(7, windows(2))
    data = request.encode(PayloadDtype.FLOAT16)
    assert len(data) == WINDOWS_HEADER.size + 2 * 200 * 128 * 2
    decoded = WindowsRequest.decode(data, SPEC, max_windows=32)
    assert decoded.windows.dtype == np.float32
    np.testing.assert_allclose(decoded.windows, request.windows, rtol=1e-3, atol=1e-3)


def test_bad_magic_is_refused_without_request_id() -> None:
    data = b"XX" + WindowsRequest(5, windows(1)).encode()[2:]
    with pytest.raises(WireError, match="bad magic") as info:
        WindowsRequest.decode(data, SPEC, max_windows=32)
    assert info.value.request_id is None


def test_truncated_header_is_refused() -> None:
    with pytest.raises(WireError, match="truncated header"):
        WindowsRequest.decode(b"HW\x01", SPEC, max_windows=32)


def test_truncated_payload_is_refused_with_request_id() -> None:
    data = WindowsRequest(9, windows(2)).encode()[:-4]
    with pytest.raises(WireError, match="header says") as info:
        WindowsRequest.decode(data, SPEC, max_windows=32)
    assert info.value.request_id == 9


def test_wrong_window_shape_for_spec_is_refused() -> None:
    beats_shaped = np.zeros((1, BEATS_FBANK.window_frames, BEATS_FBANK.n_mels), np.float32)
    with pytest.raises(WireError, match=r"\[198, 128\] does not match spec efficientat_mel") as info:
        WindowsRequest.decode(WindowsRequest(3, beats_shaped).encode(), SPEC, max_windows=32)
    assert info.value.request_id == 3


def test_too_many_windows_and_unknown_dtype_and_version_are_refused() -> None:
    with pytest.raises(WireError, match="allowed 1..2"):
        WindowsRequest.decode(WindowsRequest(1, windows(3)).encode(), SPEC, max_windows=2)
    data = bytearray(WindowsRequest(1, windows(1)).encode())
    data[3] = 9
    with pytest.raises(WireError, match="unknown payload dtype 9"):
        WindowsRequest.decode(bytes(data), SPEC, max_windows=2)
    data[2] = 2
    with pytest.raises(WireError, match="version 2 unsupported"):
        WindowsRequest.decode(bytes(data), SPEC, max_windows=2)


def test_non_finite_windows_are_refused() -> None:
    bad = windows(1)
    bad[0, 10, 3] = np.nan
    with pytest.raises(WireError, match="NaN"):
        WindowsRequest.decode(WindowsRequest(1, bad).encode(), SPEC, max_windows=2)


def test_header_layout_is_little_endian_and_fixed() -> None:
    data = WindowsRequest(0x0102030405060708, windows(1)).encode(PayloadDtype.FLOAT16)
    assert data[:WINDOWS_HEADER.size] == b"HW\x01\x01" + struct.pack("<Q", 0x0102030405060708) + bytes(
        [1, 0, 200, 0, 128, 0]
    )


def test_scores_round_trip_with_and_without_tags() -> None:
    scores = np.random.default_rng(1).random((2, 9), dtype=np.float32)
    tagged = ScoresResult(
        42, scores, np.array([[0, 500], [3, 4]], np.uint16), np.array([[0.9, 0.1], [0.5, 0.4]], np.float32), 1.5, 7.25
    )
    decoded = ScoresResult.decode(tagged.encode())
    assert (decoded.request_id, decoded.queue_ms, decoded.compute_ms) == (42, 1.5, 7.25)
    np.testing.assert_array_equal(decoded.scores, scores)
    np.testing.assert_array_equal(decoded.tag_ids, tagged.tag_ids)
    np.testing.assert_array_equal(decoded.tag_scores, tagged.tag_scores)

    untagged = ScoresResult(43, scores, np.zeros((2, 0), np.uint16), np.zeros((2, 0), np.float32), 0.0, 1.0)
    data = untagged.encode()
    assert len(data) == SCORES_HEADER.size + 2 * 9 * 4
    assert ScoresResult.decode(data).tag_ids.shape == (2, 0)


def test_scores_decode_refuses_truncated_and_bad_magic() -> None:
    no_tags = np.zeros((1, 0), np.float32)
    data = ScoresResult(1, np.zeros((1, 9), np.float32), no_tags.astype(np.uint16), no_tags, 0, 0).encode()
    with pytest.raises(WireError, match="header says"):
        ScoresResult.decode(data[:-1])
    with pytest.raises(WireError, match="bad magic"):
        ScoresResult.decode(b"HW" + data[2:])


def test_control_messages_round_trip() -> None:
    hello = Hello("efficientat", SPEC)
    ready = Ready("efficientat", SPEC, CLASS_KEYS, 32, ("Speech", "Music"))
    tuned = Ready("default", BEATS_FBANK, CLASS_KEYS, 32, None, {"fire": 0.85, "help": 0.2}, band_limit_hz=7600.0)
    refused = InferenceErrorMessage(InferenceErrorCode.SPEC_MISMATCH, "expects efficientat_mel")
    failed = InferenceErrorMessage(InferenceErrorCode.OVERLOADED, "queue full", request_id=2**63)
    for message in (hello, Hello(None, BEATS_FBANK), Hello(None, None), ready, tuned, refused, failed):
        assert decode_control(encode_control(message)) == message
    assert '"type":"hello"' in encode_control(hello)


@pytest.mark.parametrize(
    "text",
    [
        "not json",
        "[1, 2]",
        '{"type": "hello"}',
        '{"type": "hello", "model": 3, "spec": {}}',
        '{"type": "error", "code": "no_such_code"}',
        '{"type": "launch"}',
    ],
)
def test_malformed_control_messages_raise_wire_error(text: str) -> None:
    with pytest.raises(WireError):
        decode_control(text)


def test_ready_without_thresholds_advertises_none() -> None:
    """A replica from before thresholds were advertised omits the field: the same as none."""
    data = Ready("efficientat", SPEC, CLASS_KEYS, 32, None).to_dict()
    del data["thresholds"]
    ready = decode_control(json.dumps(data))
    assert isinstance(ready, Ready) and ready.thresholds is None


def test_ready_band_limit_is_optional_and_positive() -> None:
    """A replica from before band limits were advertised omits the field: the whole band."""
    data = Ready("efficientat", SPEC, CLASS_KEYS, 32, None).to_dict()
    del data["band_limit_hz"]
    ready = decode_control(json.dumps(data))
    assert isinstance(ready, Ready) and ready.band_limit_hz is None
    with pytest.raises(WireError, match="band_limit_hz"):
        decode_control(json.dumps({**data, "band_limit_hz": 0}))


@pytest.mark.parametrize(
    ("thresholds", "why"),
    [({"normal": 0.5}, "never fires"), ({"earthquake": 0.5}, "unknown class"), ({"fire": 0.0}, "must be in")],
)
def test_ready_with_bad_thresholds_is_refused(thresholds: dict[str, float], why: str) -> None:
    data = {**Ready("default", BEATS_FBANK, CLASS_KEYS, 32, None).to_dict(), "thresholds": thresholds}
    with pytest.raises(WireError, match=why):
        decode_control(json.dumps(data))
