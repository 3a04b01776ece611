"""F1 (issue 12): an authenticated client flooding the inference service cannot starve another.

A real uvicorn inference server on loopback with a small stand-in model whose batches take a
fixed time (so the service's capacity, not this box's CPU, is what the flood exceeds). Four
connections of a second client send 32-window requests as fast as the socket takes them;
a first client, the gateway's own InferenceClient, sends one window at a time at 5x real time.
Every request of the first client is answered with scores; the flood's excess is answered
``overloaded`` and counted in the service's metrics. Latency is not asserted here (see
bench/bench_inference_flood.py for figures).
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter
from collections.abc import Iterator

import httpx
import numpy as np
import pytest
import torch
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from services.gateway.inference_client import InferenceClient
from services.inference.app import create_app
from services.inference.models.base import Classifier, Prediction
from services.inference.registry import ModelEntry, ModelRegistry
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK
from shared.inference_wire import InferenceErrorMessage, Hello, PayloadDtype, Ready, WindowsRequest, decode_control, encode_control
from shared.taxonomy import NUM_CLASSES
from tests.gateway_support import ServerThread, free_port

SPEC = BEATS_FBANK
BATCH_S = 0.02  # the stand-in model's time per batch: at most 1,600 windows/s at batch 32
FLOOD_CONNECTIONS = 4
LIGHT_REQUESTS = 30
LIGHT_INTERVAL_S = 0.1  # a real-time stream sends one window per 0.5 s hop


class PacedModel:
    """Scores every class with the window's first value; each call takes ``BATCH_S``."""

    tag_labels = None
    thresholds = None

    def predict(self, windows: torch.Tensor) -> Prediction:
        time.sleep(BATCH_S)
        return Prediction(scores=windows[:, 0, 0, None].expand(-1, NUM_CLASSES).contiguous().clamp(0, 1))


@pytest.fixture
def service() -> Iterator[tuple[str, InferenceSettings]]:
    def load(settings: InferenceSettings, device: torch.device) -> Classifier:
        return PacedModel()

    settings = InferenceSettings(model="paced", max_wait_ms=2.0)
    port = free_port()
    server = ServerThread(create_app(settings, ModelRegistry([ModelEntry("paced", SPEC, load)])), port)
    yield f"127.0.0.1:{port}", settings
    server.stop()


async def flood(url: str, token: str, stop: asyncio.Event, answers: Counter[str]) -> None:
    """One connection sending 32-window requests as fast as the socket takes them."""
    frame = WindowsRequest(1, np.full((32, SPEC.window_frames, SPEC.n_mels), 0.5, np.float32)).encode(
        PayloadDtype.FLOAT16
    )
    async with connect(url, compression=None, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
        await ws.send(encode_control(Hello(None, SPEC)))
        assert isinstance(decode_control(await ws.recv()), Ready)
        reader = asyncio.create_task(count_answers(ws, answers))
        try:
            while not stop.is_set():
                await ws.send(frame)
                answers["sent"] += 1
        finally:
            reader.cancel()


async def count_answers(ws: ClientConnection, answers: Counter[str]) -> None:
    try:
        async for message in ws:
            if isinstance(message, bytes):
                answers["scores"] += 1
            else:
                control = decode_control(message)
                answers[control.code.value if isinstance(control, InferenceErrorMessage) else "other"] += 1
    except ConnectionClosed:
        pass


async def test_a_flooding_client_does_not_starve_a_real_time_one(service: tuple[str, InferenceSettings]) -> None:
    address, settings = service
    url = f"ws://{address}/v1/windows"
    token = settings.accepted_tokens()[0]
    light = InferenceClient(url, SPEC, "paced", token=token, timeout=10.0)
    await light.connect()
    stop = asyncio.Event()
    flood_answers: Counter[str] = Counter()
    flooders = [asyncio.create_task(flood(url, token, stop, flood_answers)) for _ in range(FLOOD_CONNECTIONS)]
    try:
        await asyncio.sleep(1.0)  # the flood fills the queue first
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            queued = gauge((await http.get("/metrics")).text, "hearo_inference_queue_windows")
        scores = []
        for i in range(LIGHT_REQUESTS):
            value = (i + 1) / (LIGHT_REQUESTS + 1)
            window = torch.full((1, SPEC.window_frames, SPEC.n_mels), value)
            # Raises InferenceRequestFailed on an ``overloaded`` answer: the test fails then.
            results = await light.classify(window)
            scores.append(round(float(results[0].scores[0]), 4))
            await asyncio.sleep(LIGHT_INTERVAL_S)
        async with httpx.AsyncClient(base_url=f"http://{address}") as http:
            metrics = (await http.get("/metrics")).text
    finally:
        stop.set()
        await asyncio.gather(*flooders, return_exceptions=True)
        await light.close()
    assert scores == [round((i + 1) / (LIGHT_REQUESTS + 1), 4) for i in range(LIGHT_REQUESTS)]
    # The flood was real: it held the queue, and what the service could not take was refused
    # or shed, each answered overloaded and counted by reason.
    assert queued >= settings.client_queue_size(), f"the flood queued only {queued} windows"
    assert flood_answers["overloaded"] > 0 and flood_answers["scores"] > 0
    refused = sum(counter(metrics, "hearo_inference_shed_windows_total", reason) for reason in
                  ("client_quota", "queue_full", "shed"))  # fmt: skip
    assert refused >= 32


def gauge(metrics: str, name: str) -> float:
    match = re.search(rf"^{name} (\S+)$", metrics, re.M)
    assert match, f"{name} not in /metrics"
    return float(match[1])


def counter(metrics: str, name: str, reason: str) -> float:
    match = re.search(rf'^{name}{{reason="{reason}"}} (\S+)$', metrics, re.M)
    assert match, f"{name}{{reason={reason}}} not in /metrics"
    return float(match[1])
