"""A recording is judged to its end, and alike by ``hearo stream`` and ``hearo eval`` (issue 19):
short files that stop before the detector has the windows its smoothing averages still fire.

The gateway runs under uvicorn on loopback with the fake classifier of
``tests/gateway_support.py`` and no incidents; ``hearo eval`` gets the same fake as its model.
So the two agree exactly when they judge the same windows, the end's included.
"""

from __future__ import annotations

import io
import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile
import torch
from fastapi import FastAPI, WebSocket
from rich.console import Console

from hearo import evaluate as hearo_eval
from hearo.stream_client import EXIT_OK, run_stream
from services.gateway.session_registry import SessionRegistry
from services.gateway.sessions import serve_stream
from services.gateway.settings import GatewaySettings
from shared.db import Device
from shared.features.spec import EFFICIENTAT_MEL
from tests.gateway_support import FIRE, TOKEN, FakeClassifier, ServerThread, fake_scores, free_port

RATE = 16_000


class FakeModel:
    """What ``hearo eval`` needs of a model, scoring windows as the gateway's fake classifier does."""

    thresholds = None
    tag_labels = None  # no AudioSet tags, as a nine-class-only model

    def predict(self, windows: torch.Tensor) -> SimpleNamespace:
        return SimpleNamespace(scores=fake_scores(windows), tags=None)


@pytest.fixture(scope="module")
def gateway_url() -> Iterator[str]:
    async def authenticate(token: str) -> Device | None:
        return Device(id=uuid.uuid4()) if token == TOKEN else None

    # The settings ``hearo eval`` reads too: the same detector.
    manager = SessionRegistry(GatewaySettings(), FakeClassifier(), authenticate, EFFICIENTAT_MEL)
    app = FastAPI()

    @app.websocket("/v1/stream")
    async def stream(websocket: WebSocket) -> None:
        await serve_stream(manager, websocket)

    port = free_port()
    server = ServerThread(app, port)
    try:
        yield f"ws://127.0.0.1:{port}/v1/stream"
    finally:
        server.stop()


def room(seconds: float, seed: int) -> np.ndarray:
    return 0.002 * np.random.default_rng(seed).standard_normal(round(seconds * RATE))


def scream(seconds: float) -> np.ndarray:
    """A rising, wavering voice with harmonics from 0.2 s to 0.2 s before the end, over a quiet room."""
    t = np.arange(round(seconds * RATE)) / RATE
    pitch = 900 + 300 * t / seconds + 40 * np.sin(2 * np.pi * 6 * t)
    phase = 2 * np.pi * np.cumsum(pitch) / RATE
    voice = sum(np.sin(k * phase) / k for k in (1, 2, 3, 4))
    envelope = np.clip(np.minimum(t - 0.2, seconds - 0.2 - t) / 0.05, 0, 1)
    return (0.3 * voice * envelope + room(seconds, 1)).astype(np.float32)


def gunshots(seconds: float, at: tuple[float, ...]) -> np.ndarray:
    """Sharp noise bursts decaying within about 0.1 s, over a quiet room."""
    out = room(seconds, 2)
    rng = np.random.default_rng(3)
    for start_s in at:
        n = round(0.15 * RATE)
        burst = rng.standard_normal(n) * np.exp(-np.arange(n) / (0.03 * RATE))
        start = round(start_s * RATE)
        out[start : start + n] += 0.9 * burst / np.max(np.abs(burst))
    return np.clip(out, -1, 1).astype(np.float32)


def streamed_decision(path: Path, url: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, dict[str, object]]:
    """``hearo stream FILE --fast --json``: the class of the first detection (0: none) and ``stopped``."""
    capsys.readouterr()
    assert run_stream(path, False, url, TOKEN, fast=True, json_output=True) == EXIT_OK
    messages = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    detections = [m["class_id"] for m in messages if m["type"] == "detection"]
    return (detections[0] if detections else 0), messages[-1]


def test_hearo_stream_judges_a_short_file_to_its_end_as_hearo_eval_does(
    gateway_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    clips = {
        # Shorter than a window: no window is cut before the end, so it is padded centred.
        "scream.wav": scream(2.0),
        # Two windows from the audio (2.006 and 2.506 s, both hear a shot), three from its end.
        "gunshots.wav": gunshots(2.5, at=(0.3, 0.8)),
        # One shot at the start, then the room: only the first window hears it, and the
        # silence that ends the stream adds nothing to fire on.
        "ends_in_silence.wav": gunshots(4.0, at=(0.1,)),
    }
    for name, samples in clips.items():
        soundfile.write(tmp_path / name, samples, RATE, subtype="PCM_16")
    manifest = tmp_path / "clips.csv"
    manifest.write_text("file,class_id\n" + "".join(f"{name},0\n" for name in clips))
    monkeypatch.setattr(
        hearo_eval, "load_model", lambda model: ("fake", SimpleNamespace(spec=EFFICIENTAT_MEL), FakeModel())
    )
    report = hearo_eval.evaluate(manifest, "fake", json_out=tmp_path / "eval.json", console=Console(file=io.StringIO()))
    evaluated = [clip["predicted"] for clip in report.clips]

    streamed = []
    for name, samples in clips.items():
        decision, stopped = streamed_decision(tmp_path / name, gateway_url, capsys)
        streamed.append(decision)
        assert stopped["type"] == "stopped" and stopped["stream_time_s"] == pytest.approx(samples.size / RATE)
    assert streamed == evaluated == [FIRE, FIRE, 0]
