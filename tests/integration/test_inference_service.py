"""The real inference app under uvicorn on loopback, driven by the gateway's InferenceClient."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
import torch
import uvicorn
from fastapi import FastAPI
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from services.gateway.inference_client import (
    InferenceClient,
    InferenceRefused,
    InferenceRequestFailed,
    InferenceUnauthorized,
    InferenceUnavailable,
)
from services.inference.app import create_app
from services.inference.models.base import Classifier, Prediction
from services.inference.registry import ModelEntry, ModelRegistry
from services.inference.settings import InferenceSettings
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL, FeatureSpec
from shared.inference_wire import (
    InferenceCloseCode,
    InferenceErrorCode,
    InferenceErrorMessage,
    Hello,
    Ready,
    ScoresResult,
    WindowsRequest,
    decode_control,
    encode_control,
)
from shared.taxonomy import NUM_CLASSES

SPEC = BEATS_FBANK
TOY_TAGS = ("loud", "quiet", "middle")
TOY_THRESHOLDS = {"fire": 0.7, "gas": 0.4}


class ToyClassifier:
    """A window filled with v in [0, 1] scores v for every class; tags (v, 1 - v, 0.5).
    Holds each call until ``gate`` is set, so a test can fill the queue."""

    tag_labels = TOY_TAGS
    thresholds = TOY_THRESHOLDS

    def __init__(self, gate: threading.Event) -> None:
        self.gate = gate

    def predict(self, windows: torch.Tensor) -> Prediction:
        assert self.gate.wait(10)
        v = windows[:, 0, 0]
        return Prediction(
            scores=v[:, None].expand(-1, NUM_CLASSES).contiguous(),
            tags=torch.stack([v, 1 - v, torch.full_like(v, 0.5)], dim=1),
        )


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """uvicorn serving ``app`` on 127.0.0.1:``port`` in a background thread."""

    def __init__(self, app: FastAPI, port: int) -> None:
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", loop="asyncio")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            assert self.thread.is_alive() and time.monotonic() < deadline, "inference app did not start"
            time.sleep(0.01)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(10)
        assert not self.thread.is_alive()


class ToyService:
    def __init__(self, **settings: object) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.port = free_port()
        self.settings = InferenceSettings(model="toy", max_wait_ms=2.0, **settings)  # type: ignore[arg-type]
        self.server = self.start()

    def start(self) -> ServerThread:
        gate = self.gate

        def load_toy(settings: InferenceSettings, device: torch.device) -> Classifier:
            return ToyClassifier(gate)

        registry = ModelRegistry([ModelEntry("toy", SPEC, load_toy)])
        return ServerThread(create_app(self.settings, registry), self.port)

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/v1/windows"

    @property
    def http(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client(
        self,
        spec: FeatureSpec = SPEC,
        model: str | None = "toy",
        timeout: float = 5.0,
        on_ready: Callable[[Ready], None] | None = None,
        token: str | None = None,
    ) -> InferenceClient:
        return InferenceClient(
            self.url, spec, model, token=token or self.token, timeout=timeout,
            backoff_initial_s=0.05, backoff_max_s=0.2, on_ready=on_ready,
        )  # fmt: skip

    @property
    def token(self) -> str:
        """The token the service accepts (in development: generated under the test's data folder)."""
        return self.settings.accepted_tokens()[0]

    def connect_raw(self, token: str | None = None) -> Any:
        """A bare WebSocket to /v1/windows, authenticated with the service's token by default."""
        return connect(self.url, compression=None, additional_headers={"Authorization": f"Bearer {token or self.token}"})


@pytest.fixture
def toy() -> Iterator[ToyService]:
    service = ToyService()
    yield service
    service.gate.set()
    service.server.stop()


def windows_of(*values: float, spec: FeatureSpec = SPEC) -> torch.Tensor:
    shape = (len(values), spec.window_frames, spec.n_mels)
    return torch.tensor(values, dtype=torch.float32)[:, None, None].expand(shape).contiguous()


async def test_concurrent_callers_share_one_connection_and_get_their_own_scores(toy: ToyService) -> None:
    client = toy.client()
    ready = await client.connect()
    assert (ready.model, ready.spec, ready.tags, ready.thresholds) == ("toy", SPEC, TOY_TAGS, TOY_THRESHOLDS)
    try:
        values = [[(i + 0.5) / 40, (i + 1.5) / 40][: 1 + i % 2] for i in range(30)]
        answers = await asyncio.gather(*(client.classify(windows_of(*v)) for v in values))
    finally:
        await client.close()
    for wanted, results in zip(values, answers):
        assert [round(float(r.scores[0]), 5) for r in results] == [round(v, 5) for v in wanted]
        assert all(r.scores.shape == (NUM_CLASSES,) for r in results)
        assert results[0].tags[0][0] == ("loud" if wanted[0] > 0.5 else "quiet")
        assert len(results[0].tags) == 3 and results[0].compute_ms >= 0
    async with httpx.AsyncClient(base_url=toy.http) as http:
        metrics = (await http.get("/metrics")).text
        models = (await http.get("/v1/models")).json()
        health = await http.get("/healthz")
    assert "hearo_inference_batch_windows_count" in metrics
    assert models["model"] == "toy" and models["spec"] == SPEC.to_dict() and len(models["classes"]) == NUM_CLASSES
    assert models["thresholds"] == TOY_THRESHOLDS
    assert health.status_code == 200 and health.json()["status"] == "ready"


async def test_requests_above_max_batch_are_split_by_the_client() -> None:
    service = ToyService(max_batch=2, queue_size=8)
    client = service.client()
    try:
        await client.connect()
        results = await client.classify(windows_of(0.1, 0.2, 0.3, 0.4, 0.5))
        assert [round(float(r.scores[0]), 5) for r in results] == [0.1, 0.2, 0.3, 0.4, 0.5]
    finally:
        await client.close()
        service.server.stop()


async def test_spec_mismatch_and_unknown_model_are_refused_at_connect(toy: ToyService) -> None:
    with pytest.raises(InferenceRefused) as info:
        await toy.client(spec=EFFICIENTAT_MEL).connect()
    assert info.value.code is InferenceErrorCode.SPEC_MISMATCH
    with pytest.raises(InferenceRefused) as info:
        await toy.client(model="beats").connect()
    assert info.value.code is InferenceErrorCode.UNKNOWN_MODEL
    # The documented close code follows the error message.
    async with toy.connect_raw() as ws:
        await ws.send(encode_control(Hello(None, EFFICIENTAT_MEL)))
        refusal = decode_control(await ws.recv())
        assert isinstance(refusal, InferenceErrorMessage) and refusal.code is InferenceErrorCode.SPEC_MISMATCH
        with pytest.raises(ConnectionClosed) as closed:
            await ws.recv()
        assert closed.value.rcvd is not None and closed.value.rcvd.code == InferenceCloseCode.SPEC_MISMATCH


async def test_flood_gets_overloaded_answers_and_nothing_hangs() -> None:
    service = ToyService(max_batch=2, queue_size=2)
    client = service.client(timeout=5.0)
    try:
        await client.connect()
        service.gate.clear()
        calls = [asyncio.create_task(client.classify(windows_of(0.25))) for _ in range(8)]
        await asyncio.sleep(0.3)  # the server reads all eight while the model holds a batch
        service.gate.set()
        outcomes = await asyncio.gather(*calls, return_exceptions=True)
    finally:
        await client.close()
        service.server.stop()
    refused = [o for o in outcomes if isinstance(o, InferenceRequestFailed)]
    served = [o for o in outcomes if isinstance(o, list)]
    assert len(refused) + len(served) == 8
    assert refused and all(o.code is InferenceErrorCode.OVERLOADED for o in refused)
    # At most one batch (2) in the model plus a full queue (2) got through.
    assert 3 <= len(served) <= 4


async def test_malformed_frames_get_errors_and_the_connection_keeps_working(toy: ToyService) -> None:
    async with toy.connect_raw() as ws:
        await ws.send(encode_control(Hello("toy", SPEC)))
        assert decode_control(await ws.recv()).to_dict()["type"] == "ready"

        await ws.send(b"garbage")
        error = decode_control(await ws.recv())
        assert isinstance(error, InferenceErrorMessage) and error.code is InferenceErrorCode.BAD_REQUEST and error.request_id is None

        wrong_shape = WindowsRequest(5, windows_of(0.5, spec=EFFICIENTAT_MEL).numpy()).encode()
        await ws.send(wrong_shape)
        error = decode_control(await ws.recv())
        assert isinstance(error, InferenceErrorMessage) and error.code is InferenceErrorCode.BAD_REQUEST and error.request_id == 5
        assert "does not match spec" in error.message

        await ws.send("a text frame")
        error = decode_control(await ws.recv())
        assert isinstance(error, InferenceErrorMessage) and error.code is InferenceErrorCode.BAD_REQUEST

        await ws.send(WindowsRequest(6, windows_of(0.75).numpy()).encode())
        frame = await ws.recv()
        assert isinstance(frame, bytes)
        result = ScoresResult.decode(frame)
        assert result.request_id == 6 and result.scores.shape == (1, NUM_CLASSES)
        assert result.scores[0, 0] == pytest.approx(0.75)
    async with httpx.AsyncClient(base_url=toy.http) as http:
        metrics = (await http.get("/metrics")).text
    assert "hearo_inference_bad_requests_total 3.0" in metrics


async def test_client_fails_in_flight_calls_and_reconnects_after_a_restart(toy: ToyService) -> None:
    handshakes: list[Ready] = []
    client = toy.client(timeout=3.0, on_ready=handshakes.append)
    await client.connect()
    assert [ready.thresholds for ready in handshakes] == [TOY_THRESHOLDS]
    try:
        toy.gate.clear()
        in_flight = asyncio.create_task(client.classify(windows_of(0.5)))
        await asyncio.sleep(0.2)
        stopping = asyncio.create_task(asyncio.to_thread(toy.server.stop))
        with pytest.raises(InferenceUnavailable, match="lost"):
            await in_flight
        toy.gate.set()
        await stopping

        toy.server = toy.start()
        results = await client.classify(windows_of(0.125))
        assert float(results[0].scores[0]) == pytest.approx(0.125)
        assert client.connected
        # The gateway hears of the model again at the reconnect (its detector thresholds).
        assert [ready.thresholds for ready in handshakes] == [TOY_THRESHOLDS] * 2
    finally:
        await client.close()


async def test_calls_while_inference_is_down_fail_clearly_within_the_timeout(toy: ToyService) -> None:
    client = toy.client(timeout=0.5)
    await client.connect()
    try:
        await asyncio.to_thread(toy.server.stop)
        started = time.monotonic()
        with pytest.raises(InferenceUnavailable, match="no connection to inference"):
            await client.classify(windows_of(0.5))
        assert time.monotonic() - started < 2
    finally:
        await client.close()
        toy.server = toy.start()  # for the fixture's teardown


async def test_health_is_unavailable_until_the_model_is_loaded() -> None:
    registry = ModelRegistry([ModelEntry("toy", SPEC, lambda s, d: ToyClassifier(threading.Event()))])
    app = create_app(InferenceSettings(model="toy"), registry)
    # ASGITransport does not run the lifespan: the app is up but the model is not loaded.
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://app") as http:
        assert (await http.get("/healthz")).status_code == 503
        assert (await http.get("/v1/models")).status_code == 503


async def test_real_efficientat_model_over_the_wire() -> None:
    settings = InferenceSettings(model="efficientat", max_wait_ms=2.0)
    if not settings.efficientat_weights.is_file():
        pytest.skip(f"EfficientAT mn04 weights not at {settings.efficientat_weights} (../shared/models beside the repo)")
    port = free_port()
    server = ServerThread(create_app(settings), port)
    client = InferenceClient(
        f"ws://127.0.0.1:{port}/v1/windows", EFFICIENTAT_MEL, "efficientat",
        token=settings.accepted_tokens()[0], timeout=10.0,
    )  # fmt: skip
    try:
        ready = await client.connect()
        assert ready.tags is not None and len(ready.tags) == 527
        assert ready.thresholds is None  # mn04 stores none
        silence = windows_of(-1.4025851, -1.4025851, spec=EFFICIENTAT_MEL)
        results = await client.classify(silence)
    finally:
        await client.close()
        server.stop()
    assert len(results) == 2
    for result in results:
        assert bool(((result.scores >= 0) & (result.scores <= 1)).all())
        assert result.tags[0][0] == "Silence"
        assert len(result.tags) == settings.top_tags


async def test_a_connection_without_the_token_is_refused_before_it_is_accepted(toy: ToyService) -> None:
    for headers in ({}, {"Authorization": "Bearer not-the-inference-token"}, {"Authorization": toy.token}):
        with pytest.raises(InvalidStatus) as refused:
            async with connect(toy.url, compression=None, additional_headers=headers):
                pass
        assert refused.value.response.status_code == 401
        assert json.loads(refused.value.response.body or b"")["code"] == "unauthorized"
    with pytest.raises(InferenceUnauthorized, match="HEARO_GATEWAY_INFERENCE_TOKEN"):
        await toy.client(token="a-wrong-token-of-enough-length").connect()
    async with toy.connect_raw() as ws:  # the right token, scheme in any case
        await ws.send(encode_control(Hello("toy", SPEC)))
        assert isinstance(decode_control(await ws.recv()), Ready)
    async with httpx.AsyncClient(base_url=toy.http) as http:
        metrics = (await http.get("/metrics")).text
    assert "hearo_inference_unauthorized_total 4.0" in metrics


async def test_previous_tokens_are_accepted_during_a_rotation() -> None:
    old, new = "the-old-inference-token", "the-new-inference-token"
    service = ToyService(token=new, previous_tokens=[old])
    try:
        for token in (new, old):
            client = service.client(token=token)
            await client.connect()
            assert float((await client.classify(windows_of(0.5)))[0].scores[0]) == pytest.approx(0.5)
            await client.close()
        with pytest.raises(InferenceUnauthorized):
            await service.client(token="yet-another-inference-token").connect()
    finally:
        service.server.stop()


async def test_a_gateway_whose_token_stops_working_fails_fast_says_why_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    service = ToyService(token="the-first-inference-token")
    client = service.client(timeout=3.0)
    try:
        await client.connect()
        await asyncio.to_thread(service.server.stop)
        # The service comes back with a new token the gateway was not given.
        service.settings = service.settings.model_copy(update={"token": "a-rotated-inference-token"})
        service.server = service.start()
        await asyncio.sleep(1.0)
        started = time.monotonic()
        with pytest.raises(InferenceRefused) as refused:
            await client.classify(windows_of(0.5))
        assert refused.value.code is InferenceErrorCode.UNAUTHORIZED
        assert time.monotonic() - started < 1.0  # told at once, not at the call's timeout
        async with httpx.AsyncClient(base_url=service.http) as http:
            metrics = (await http.get("/metrics")).text
        attempts = float(re.search(r"^hearo_inference_unauthorized_total (\S+)$", metrics, re.M)[1])  # type: ignore[index]
        # Backoff 0.05 s doubling to 0.2 s (half to full jitter): a handful of tries, not a hot loop.
        assert 1 <= attempts <= 15
    finally:
        await client.close()
        service.server.stop()
    errors = [r for r in caplog.records if r.levelname == "ERROR" and "unauthorized" in r.getMessage()]
    assert errors and "HEARO_INFERENCE_TOKEN" in errors[0].getMessage()
