"""The inference client over a fake socket (its connection factory): handshake, multiplexed
requests, per-request errors, a refused handshake, a drop and the reconnect after it.

The real service is exercised in tests/integration/test_inference_service.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import numpy as np
import pytest
import torch
from websockets.exceptions import ConnectionClosed

from services.gateway.inference_client import (
    InferenceClient,
    InferenceRefused,
    InferenceRequestFailed,
    InferenceUnavailable,
)
from shared.features.spec import EFFICIENTAT_MEL
from shared.inference_wire import (
    Hello,
    InferenceErrorCode,
    InferenceErrorMessage,
    Ready,
    ScoresResult,
    WindowsRequest,
    decode_control,
    encode_control,
)
from shared.taxonomy import CLASS_KEYS, NUM_CLASSES

SPEC = EFFICIENTAT_MEL
READY = Ready("fake-model", SPEC, CLASS_KEYS, 4, None)


class FakeSocket:
    """Answers as the inference service would: ``READY`` to the hello, then each window's
    scores (its first feature value in every class) or ``fail_with`` for every request."""

    def __init__(self, reply: Ready | InferenceErrorMessage = READY) -> None:
        self.reply = reply
        self.hello: Hello | None = None
        self.requests: list[WindowsRequest] = []
        self.fail_with: InferenceErrorCode | None = None
        self.lose_requests = False
        self.closed = False
        self._answers: asyncio.Queue[str | bytes | None] = asyncio.Queue()

    async def send(self, message: str | bytes) -> None:
        if self.closed:
            raise ConnectionClosed(None, None)
        if isinstance(message, str):
            hello = decode_control(message)
            assert isinstance(hello, Hello)
            self.hello = hello
            return
        request = WindowsRequest.decode(message, SPEC, READY.max_batch)
        self.requests.append(request)
        if self.lose_requests:
            return
        if self.fail_with is not None:
            await self._answers.put(encode_control(InferenceErrorMessage(self.fail_with, "no", request.request_id)))
            return
        n = request.windows.shape[0]
        scores = np.repeat(request.windows[:, :1, 0], NUM_CLASSES, axis=1).astype(np.float32)
        empty = np.zeros((n, 0))
        await self._answers.put(ScoresResult(request.request_id, scores, empty, empty, 1.0, 2.0).encode())

    async def recv(self) -> str | bytes:
        return encode_control(self.reply)

    async def close(self) -> None:
        self.closed = True
        await self._answers.put(None)

    def drop(self) -> None:
        """The service went away: what is in flight is lost."""
        self.closed = True
        self._answers.put_nowait(None)

    async def __aiter__(self) -> AsyncIterator[str | bytes]:
        while (answer := await self._answers.get()) is not None:
            yield answer


class FakeService:
    """The connection factory: a new ``FakeSocket`` per connect, or ``OSError`` while down."""

    def __init__(self) -> None:
        self.sockets: list[FakeSocket] = []
        self.down = False
        self.reply: Ready | InferenceErrorMessage = READY

    async def connect(self) -> FakeSocket:
        if self.down:
            raise OSError("connection refused")
        socket = FakeSocket(self.reply)
        self.sockets.append(socket)
        return socket


def windows(*firsts: float) -> torch.Tensor:
    batch = torch.zeros(len(firsts), SPEC.window_frames, SPEC.n_mels)
    for i, value in enumerate(firsts):
        batch[i, 0, 0] = value
    return batch


def client_of(service: FakeService, on_ready: Callable[[Ready], None] | None = None) -> InferenceClient:
    return InferenceClient(
        "ws://fake", SPEC, "fake-model", timeout=1.0, backoff_initial_s=0.01,
        on_ready=on_ready, connection_factory=service.connect,
    )  # fmt: skip


async def test_classifies_over_the_factory_socket_splitting_at_max_batch() -> None:
    service = FakeService()
    heard: list[Ready] = []
    client = client_of(service, on_ready=heard.append)
    assert await client.connect() == READY and heard == [READY] and client.connected
    hello = service.sockets[0].hello
    assert hello is not None and hello.model == "fake-model" and hello.spec == SPEC

    values = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]
    results = await client.classify(windows(*values))

    assert [round(float(r.scores[0]), 3) for r in results] == values
    assert [len(r.windows) for r in service.sockets[0].requests] == [4, 2]  # READY.max_batch is 4
    await client.close()
    assert service.sockets[0].closed and not client.connected


async def test_a_request_error_fails_that_call_only() -> None:
    service = FakeService()
    client = client_of(service)
    await client.connect()
    service.sockets[0].fail_with = InferenceErrorCode.OVERLOADED
    with pytest.raises(InferenceRequestFailed) as failed:
        await client.classify(windows(0.1))
    assert failed.value.code is InferenceErrorCode.OVERLOADED
    service.sockets[0].fail_with = None
    assert len(await client.classify(windows(0.2))) == 1
    await client.close()


async def test_a_refused_handshake_is_inference_refused() -> None:
    service = FakeService()
    service.reply = InferenceErrorMessage(InferenceErrorCode.SPEC_MISMATCH, "expects beats_fbank")
    client = client_of(service)
    with pytest.raises(InferenceRefused) as refused:
        await client.connect()
    assert refused.value.code is InferenceErrorCode.SPEC_MISMATCH and service.sockets[0].closed


async def test_an_unreachable_service_is_inference_unavailable() -> None:
    service = FakeService()
    service.down = True
    with pytest.raises(InferenceUnavailable):
        await client_of(service).connect()


async def test_a_drop_fails_calls_in_flight_then_reconnects() -> None:
    service = FakeService()
    heard: list[Ready] = []
    client = client_of(service, on_ready=heard.append)
    await client.connect()
    first = service.sockets[0]
    first.lose_requests = True  # the request is lost with the connection
    call = asyncio.create_task(client.classify(windows(0.1)))
    await asyncio.sleep(0.01)
    service.down = True
    first.drop()
    with pytest.raises(InferenceUnavailable):
        await call

    service.down = False
    results = await client.classify(windows(0.7))  # waits for the reconnect within its timeout
    assert round(float(results[0].scores[0]), 3) == 0.7
    assert len(service.sockets) == 2 and heard == [READY, READY]
    await client.close()

