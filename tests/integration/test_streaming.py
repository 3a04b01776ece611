"""The whole streaming path with real servers: the inference service serving EfficientAT mn04
(the real weights from ../shared) and the gateway, each under uvicorn on loopback, a device
registered over REST, and audio streamed over the WebSocket by a ``websockets`` client and by
the CLI's ``run_stream``.

Detections open incidents here as everywhere, but no alerting worker runs: they stay
pending (``tests/integration/test_incident_flow.py`` follows them to the agency). So the
clients below leave after ``stopped`` or, for the CLI, the gateway stops waiting for the
outcome after ``incident_follow_s``.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile
import soxr
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hearo.stream_client import EXIT_AUTH, EXIT_CONNECTION, EXIT_OK, EXIT_PROTOCOL, run_stream
from services.gateway.app import create_app as create_gateway
from services.gateway.settings import GatewaySettings
from services.inference.app import create_app as create_inference
from services.inference.models.default import load_default_model
from services.inference.settings import DEFAULT_WEIGHTS, SHARED_MODELS_DIR, InferenceSettings
from shared.features.spec import EFFICIENTAT_MEL
from tests.gateway_support import ServerThread, free_port, pcm16, smoke_alarm

pytestmark = pytest.mark.slow

WEIGHTS = SHARED_MODELS_DIR / "efficientat_mn04_as" / "mn04_as_mAP_432.pt"
SPEECH = SHARED_MODELS_DIR / "yamnet" / "speech_test_16k_int16.bin"
MAX_SESSIONS = 3


@dataclass
class Gateway:
    url: str
    http: str
    token: str

    def wait_for_no_sessions(self) -> None:
        """Sessions whose client left are released when the gateway notices: within moments."""
        deadline = time.monotonic() + 5
        while httpx.get(f"{self.http}/healthz").json()["sessions"]:
            assert time.monotonic() < deadline, "sessions were not released"
            time.sleep(0.05)


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    if not WEIGHTS.is_file():
        pytest.skip(f"needs the EfficientAT mn04 weights at {WEIGHTS} (../shared/models beside the repo)")
    inference_port, gateway_port = free_port(), free_port()
    inference = ServerThread(
        create_inference(InferenceSettings(model="efficientat", device="cpu", max_wait_ms=2.0)), inference_port
    )
    database = tmp_path_factory.mktemp("gateway") / "hearo.db"
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{database}",
        migrate_on_start=True,
        inference_url=f"ws://127.0.0.1:{inference_port}/v1/windows",
        feature_spec="efficientat_mel",
        inference_timeout_s=20.0,
        max_sessions=MAX_SESSIONS,
        # One device opens every session here: its own cap (which replaces its oldest session)
        # must be above the gateway's, which the session limit test reaches.
        max_sessions_per_device=MAX_SESSIONS + 1,
        max_frame_bytes=32_768,
        start_timeout_s=1.0,
        # Fast enough that a 12 s file takes about a second; the limit itself is unit-tested.
        max_stream_speed=20.0,
        # No worker resolves the incidents: after ``stop`` a session waits this long for them.
        incident_follow_s=1.0,
    )
    server = ServerThread(create_gateway(settings), gateway_port, ws_max_size=1 << 20)
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        response = httpx.post(
            f"{base}/v1/devices",
            json={
                "profile": {"name": "Kim Young-ja", "birth_year": 1942},
                "consent_recording": True,
                "consent_location": False,
                "consent_share_profile": True,
            },
            timeout=10,
        )
        assert response.status_code == 201, response.text
        health = httpx.get(f"{base}/healthz", timeout=10).json()
        assert health["inference"] == {"connected": True, "model": "efficientat"}
        yield Gateway(f"ws://127.0.0.1:{gateway_port}/v1/stream", base, response.json()["token"])
    finally:
        server.stop()
        inference.stop()


def square_alarm(rate: int, seconds: float, hz: float = 520.0) -> np.ndarray:
    """The temporal-three rhythm on a band-limited 520 Hz square wave over quiet room noise."""
    t = np.arange(round(rate * seconds)) / rate
    square = sum(np.sin(2 * np.pi * k * hz * t) / k for k in range(1, 200, 2) if k * hz < rate / 2)
    phase = t % 4.0
    on = (phase < 2.5) & (phase % 1.0 < 0.5)
    noise = 0.01 * np.random.default_rng(3).standard_normal(len(t))
    return (0.3 * square / np.max(np.abs(square)) * on + noise).astype(np.float32)


def speech(seconds: float) -> np.ndarray:
    """The 16 kHz speech fixture, repeated to ``seconds``."""
    samples = np.fromfile(SPEECH, dtype="<i2").astype(np.float32) / 32768
    return np.tile(samples, int(np.ceil(seconds * 16000 / len(samples))))[: round(seconds * 16000)]


def start(token: str, **fields: Any) -> str:
    return json.dumps({"type": "start", "token": token, "encoding": "pcm_s16le", "sample_rate": 16000, "channels": 1, **fields})


async def read_until_close(ws: ClientConnection, leave_at_stopped: bool = False) -> list[dict[str, Any]]:
    """Every message until the gateway closes, or until ``stopped`` if ``leave_at_stopped``
    (then the client closes: it does not wait for the outcome of an incident)."""
    messages = []
    try:
        async with asyncio.timeout(60):
            async for raw in ws:
                messages.append(json.loads(raw))
                if leave_at_stopped and messages[-1]["type"] == "stopped":
                    await ws.close()
    except ConnectionClosed:
        pass
    return messages


async def open_session(gateway: Gateway, **fields: Any) -> ClientConnection:
    ws = await connect(gateway.url, compression=None)
    await ws.send(start(gateway.token, **fields))
    ready = json.loads(await ws.recv())
    assert ready["type"] == "ready", ready
    return ws


async def send_frames(ws: ClientConnection, pcm: bytes, rate: int, frame_ms: int = 100) -> None:
    """Mono PCM16 in ``frame_ms`` frames, as fast as the gateway takes them."""
    step = rate * 2 * frame_ms // 1000
    for i in range(0, len(pcm), step):
        await ws.send(pcm[i : i + step])


async def stream_file_fast(gateway: Gateway, pcm: bytes, rate: int) -> list[dict[str, Any]]:
    """Send all of ``pcm`` as fast as the gateway takes it, then stop; every message until close."""
    ws = await open_session(gateway, sample_rate=rate, frame_ms=100)
    reader = asyncio.create_task(read_until_close(ws, leave_at_stopped=True))
    await send_frames(ws, pcm, rate)
    await ws.send(json.dumps({"type": "stop"}))
    messages = await reader
    assert ws.close_code == 1000, (ws.close_code, messages[-3:])
    assert messages[-1]["type"] == "stopped"
    return messages


def detections(messages: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [m for m in messages if m["type"] == "detection"]


def max_score(messages: list[dict[str, Any]], key: str) -> float:
    return max((e["score"] for m in messages if m["type"] == "scores" for e in m["top"] if e["class"] == key), default=0.0)


async def test_smoke_alarm_gives_exactly_one_fire_detection(gateway: Gateway) -> None:
    messages = await stream_file_fast(gateway, pcm16(smoke_alarm(44100, 12.0)), 44100)
    found = detections(messages)
    assert [d["class"] for d in found] == ["fire"], (found, max_score(messages, "fire"))
    # The model heard it first; the pattern detector's matches (from 6.5 s) are the same event.
    assert found[0]["confidence"] >= 0.5 and "pattern" not in found[0]
    assert found[0]["incident_id"]
    assert found[0]["stream_time_s"] < 6.0  # within the first cycles, not at the end
    stopped = messages[-1]
    assert stopped["detections"] == 1 and stopped["windows"] == 23  # 20 over the audio, 3 over its end
    assert stopped["stream_time_s"] == pytest.approx(12.0)


async def test_low_square_wave_alarm_is_heard_by_its_rhythm(gateway: Gateway) -> None:
    """A 520 Hz square-wave temporal-three (the low-frequency sounder): mn04 does not call it
    fire, the alarm pattern detector does, once, through the same detector."""
    messages = await stream_file_fast(gateway, pcm16(square_alarm(16000, 14.0)), 16000)
    found = detections(messages)
    assert [(d["class"], d.get("pattern")) for d in found] == [("fire", "temporal3")], found
    assert max_score(messages, "fire") < 0.5  # the model alone misses it
    assert found[0]["stream_time_s"] == pytest.approx(6.5, abs=0.2)  # the end of the second group
    assert messages[-1]["detections"] == 1


async def test_conversation_gives_no_detection(gateway: Gateway) -> None:
    messages = await stream_file_fast(gateway, pcm16(speech(10.0)), 16000)
    assert detections(messages) == []  # its end's silence included
    assert messages[-1]["windows"] == 19
    # Well below every threshold, not just under it.
    assert max(max_score(messages, c) for c in ("crime", "help", "medical", "fire")) < 0.2


async def test_bad_token_is_refused_with_4001(gateway: Gateway) -> None:
    async with connect(gateway.url) as ws:
        await ws.send(start("not-a-token"))
        messages = await read_until_close(ws)
    assert messages == [
        {"type": "error", "code": "unauthorized", "message": messages[0]["message"], "fatal": True}
    ]
    assert ws.close_code == 4001


async def test_bearer_header_is_accepted(gateway: Gateway) -> None:
    async with connect(gateway.url, additional_headers={"Authorization": f"Bearer {gateway.token}"}) as ws:
        await ws.send(json.dumps({"type": "start", "encoding": "pcm_s16le", "sample_rate": 8000, "channels": 2}))
        assert json.loads(await ws.recv())["type"] == "ready"


@pytest.mark.parametrize(
    ("first", "then", "code", "close"),
    [
        (None, b"\x00\x01" * 100, "start_required", 4400),
        ("start", b"\x00" * 321, "misaligned_frame", 4400),
        ("start", b"\x00" * 40_000, "frame_too_large", 4413),
        ("start", "{this is not json", "invalid_json", None),
        ("start", '{"type": "teleport"}', "unknown_type", None),
        ("start:11025", None, "unsupported_format", 4400),
        ("silence", None, "start_timeout", 4408),
    ],
)
async def test_protocol_errors_leave_other_sessions_unaffected(
    gateway: Gateway, first: str | None, then: bytes | str | None, code: str, close: int | None
) -> None:
    healthy = await open_session(gateway)
    healthy_reader = asyncio.create_task(read_until_close(healthy))
    async with connect(gateway.url) as bad:
        if first == "start":
            await bad.send(start(gateway.token))
            assert json.loads(await bad.recv())["type"] == "ready"
        elif first == "start:11025":
            await bad.send(start(gateway.token, sample_rate=11025))
        if then is not None:
            await bad.send(then)
        await send_frames(healthy, pcm16(speech(1.5)), 16000)  # the other session streams meanwhile
        if close is None:
            reply = json.loads(await bad.recv())
            assert (reply["type"], reply["code"], reply["fatal"]) == ("error", code, False)
            await bad.send(json.dumps({"type": "stop"}))
            assert (await read_until_close(bad))[-1]["type"] == "stopped"
            assert bad.close_code == 1000
        else:
            messages = await read_until_close(bad)
            assert [(m["type"], m["code"], m["fatal"]) for m in messages] == [("error", code, True)]
            assert bad.close_code == close
    await send_frames(healthy, pcm16(speech(1.5)), 16000)
    await healthy.send(json.dumps({"type": "stop"}))
    messages = await healthy_reader
    assert messages[-1] == {"type": "stopped", "stream_time_s": 3.0, "windows": 5, "detections": 0}
    assert healthy.close_code == 1000


async def test_session_limit_is_enforced(gateway: Gateway, tmp_path: Path) -> None:
    await asyncio.to_thread(gateway.wait_for_no_sessions)
    sessions = [await open_session(gateway) for _ in range(MAX_SESSIONS)]
    async with connect(gateway.url) as extra:
        await extra.send(start(gateway.token))
        messages = await read_until_close(extra)
    assert [m["code"] for m in messages] == ["too_many_sessions"] and extra.close_code == 4429
    # The CLI says so and exits 3.
    path = tmp_path / "short.wav"
    soundfile.write(path, speech(0.5), 16000)
    assert await asyncio.to_thread(run_stream, path, False, gateway.url, gateway.token, True, True) == EXIT_PROTOCOL
    for ws in sessions:
        await ws.close()
    # Closed sessions give their slots back.
    await asyncio.to_thread(gateway.wait_for_no_sessions)
    ws = await open_session(gateway)
    await ws.close()


def test_hearo_stream_command_fast_json(gateway: Gateway, tmp_path: Path) -> None:
    """The console command end to end: `hearo stream FILE --fast --json` with HEARO_TOKEN."""
    path = tmp_path / "alarm.flac"
    soundfile.write(path, smoke_alarm(48000, 12.0, seed=1), 48000)
    result = subprocess.run(
        [sys.executable, "-m", "hearo", "stream", str(path), "--url", gateway.url, "--fast", "--json"],
        env={**os.environ, "HEARO_TOKEN": gateway.token},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == EXIT_OK, result.stderr
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert lines[0]["type"] == "ready" and lines[-1]["type"] == "stopped"
    assert [m["class"] for m in detections(lines)] == ["fire"]
    assert lines[-1]["stream_time_s"] == pytest.approx(12.0)


def test_cli_resamples_an_unaccepted_rate(gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "speech.wav"
    samples = speech(3.0)
    soundfile.write(path, soxr.resample(samples, 16000, 11025), 11025)
    code = run_stream(source=path, mic=False, url=gateway.url, token=gateway.token, fast=True, json_output=True)
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert code == EXIT_OK
    assert lines[-1]["stream_time_s"] == pytest.approx(3.0, abs=0.01)


def test_cli_exit_codes(gateway: Gateway, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "short.wav"
    soundfile.write(path, speech(0.5), 16000)
    assert run_stream(path, False, gateway.url, "wrong-token", True, True) == EXIT_AUTH
    assert "unauthorized" in capsys.readouterr().err
    assert run_stream(path, False, f"ws://127.0.0.1:{free_port()}/v1/stream", gateway.token, True, True) == EXIT_CONNECTION
    assert "cannot connect" in capsys.readouterr().err
    assert run_stream(path, False, gateway.url.replace("/v1/stream", "/v1/nowhere"), gateway.token, True, True) == EXIT_CONNECTION
    assert "HTTP 403" in capsys.readouterr().err


async def test_default_model_smoke_alarm_gives_one_fire_and_the_models_thresholds(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A fresh install: the inference service's and the gateway's defaults (the shipped
    ``default`` model; the gateway sets no spec and takes ``efficientat_mel`` from the
    handshake), no ../shared. One ``fire``; the gateway detects with the thresholds stored in
    the model file, which it was told at connect."""
    _, stored = load_default_model(DEFAULT_WEIGHTS)
    inference_port, gateway_port = free_port(), free_port()
    inference = ServerThread(create_inference(InferenceSettings(device="cpu", max_wait_ms=2.0)), inference_port)
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}",
        migrate_on_start=True,
        inference_url=f"ws://127.0.0.1:{inference_port}/v1/windows",
        inference_timeout_s=20.0,
        max_stream_speed=20.0,
        incident_follow_s=1.0,
    )
    app = create_gateway(settings)
    with caplog.at_level(logging.INFO, logger="services.gateway"):
        server = ServerThread(app, gateway_port, ws_max_size=1 << 20)
    try:
        base = f"http://127.0.0.1:{gateway_port}"
        assert httpx.get(f"{base}/healthz", timeout=10).json()["inference"] == {"connected": True, "model": "default"}
        assert app.state.sessions.spec == EFFICIENTAT_MEL
        in_force = app.state.sessions.detector_config.thresholds
        assert stored["thresholds"] and all(in_force[key] == value for key, value in stored["thresholds"].items())
        assert "detector thresholds for model default" in caplog.text
        response = httpx.post(
            f"{base}/v1/devices",
            json={"profile": {"name": "Kim Young-ja", "birth_year": 1942}, "consent_recording": True,
                  "consent_location": False, "consent_share_profile": True},
            timeout=10,
        )  # fmt: skip
        assert response.status_code == 201, response.text
        gateway = Gateway(f"ws://127.0.0.1:{gateway_port}/v1/stream", base, response.json()["token"])
        messages = await stream_file_fast(gateway, pcm16(smoke_alarm(44100, 16.0)), 44100)
    finally:
        server.stop()
        inference.stop()
    assert [d["class"] for d in detections(messages)] == ["fire"], detections(messages)
    assert messages[-1]["detections"] == 1
