"""The gateway's client of the inference service: one WebSocket per gateway process.

Every session's windows go over the same connection, multiplexed by request id, so the
inference micro-batcher sees all of a gateway's traffic. When the connection drops (an
inference restart), calls in flight fail at once with ``InferenceUnavailable`` and a
background task reconnects with exponential backoff and jitter; calls made meanwhile wait
for the new connection within their timeout.

Exceptions:

    InferenceError
    ├── InferenceRefused        the handshake was refused (spec_mismatch, unknown_model,
    │   │                       bad_hello): a configuration error, not retried by callers
    │   └── InferenceUnauthorized   the upgrade was refused (401): a missing or wrong token
    ├── InferenceUnavailable    not connected, connection lost mid-call, or client closed
    ├── InferenceTimeout        no answer within ``timeout`` (also a TimeoutError)
    └── InferenceRequestFailed  the service answered this request with an error; ``code`` is
                                ``overloaded`` (the service had no room for it, or shed
                                it for a connection with less queued), ``bad_request`` or
                                ``model_error``

The socket comes from a connection factory (``connect``: by default a ``websockets``
connection to ``url``), so unit tests drive the client over a fake ``InferenceSocket``.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import logging
import random
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import torch
from websockets.asyncio.client import connect as websockets_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from shared.features.spec import FeatureSpec
from shared.inference_wire import (
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

log = logging.getLogger(__name__)


class InferenceError(Exception):
    """Base of the inference client's errors."""


class InferenceRefused(InferenceError):
    """The inference service refused the handshake."""

    def __init__(self, code: InferenceErrorCode, message: str) -> None:
        super().__init__(f"inference refused the connection ({code.value}): {message}")
        self.code = code
        self.detail = message


class InferenceUnauthorized(InferenceRefused):
    """The inference service refused the connection's token (code ``unauthorized``)."""

    def __init__(self, message: str) -> None:
        super().__init__(InferenceErrorCode.UNAUTHORIZED, message)


class InferenceUnavailable(InferenceError):
    """No usable connection to the inference service."""


class InferenceTimeout(InferenceError, TimeoutError):
    """The inference service did not answer in time."""


class InferenceRequestFailed(InferenceError):
    """The inference service answered a request with an error."""

    def __init__(self, code: InferenceErrorCode, message: str) -> None:
        super().__init__(f"inference request failed ({code.value}): {message}")
        self.code = code


class InferenceSocket(Protocol):
    """The client's side of one connection to the inference service, after the HTTP upgrade
    (a ``websockets`` ``ClientConnection`` is one): ``send`` takes the hello and the window
    requests, ``recv`` gives the handshake answer, iteration the answers to requests.
    ``send``, ``recv`` and iteration raise ``websockets.exceptions.ConnectionClosed`` once the
    connection is gone; iteration ends when it closed normally. A unit test's fake socket
    answers as the service would (``tests/unit/test_inference_client.py``).
    """

    async def send(self, message: str | bytes) -> None: ...

    async def recv(self) -> str | bytes: ...

    async def close(self) -> None: ...

    def __aiter__(self) -> AsyncIterator[str | bytes]: ...


# Opens a new connection (at connect and every reconnect). Raising ``OSError`` or
# ``TimeoutError`` means the service is unreachable; websockets' ``InvalidStatus`` with 401
# or 403 that it refused the token.
ConnectionFactory = Callable[[], Awaitable[InferenceSocket]]


@dataclass(frozen=True)
class WindowResult:
    """Scores of one window: ``scores`` float32 [9] in taxonomy id order; ``tags`` the model's
    top tags (label, probability) best first, empty when it has none; ``queue_ms`` and
    ``compute_ms`` of the request the window was sent in."""

    scores: torch.Tensor
    tags: tuple[tuple[str, float], ...]
    queue_ms: float
    compute_ms: float


class InferenceClient:
    """Classify feature windows over one shared, self-healing connection.

    >>> client = InferenceClient("ws://inference:8001/v1/windows", EFFICIENTAT_MEL, "efficientat")
    >>> await client.connect()                  # raises InferenceRefused on a spec mismatch
    >>> results = await client.classify(windows)  # [n, window_frames, n_mels] -> n results
    >>> await client.close()

    ``model`` None accepts whatever model the service serves; ``spec`` None takes its feature
    spec from the handshake (``ready.spec``), a given one must match the served model's.
    ``token`` is sent as ``Authorization: Bearer`` with every (re)connect; the service answers
    401 without it (``InferenceUnauthorized``).
    ``dtype`` float16 halves the bytes sent at ~1e-3 relative error in the features.
    ``on_ready`` (an argument, or the attribute set before ``connect``) is called with the
    handshake answer at every (re)connect, before the connection is used (the gateway's
    sessions take the model's feature spec and detector thresholds from it).
    ``connection_factory`` opens each connection; None opens a WebSocket to ``url``.
    """

    def __init__(
        self,
        url: str,
        spec: FeatureSpec | None = None,
        model: str | None = None,
        *,
        token: str | None = None,
        timeout: float = 5.0,
        dtype: PayloadDtype = PayloadDtype.FLOAT32,
        backoff_initial_s: float = 0.1,
        backoff_max_s: float = 5.0,
        on_ready: Callable[[Ready], None] | None = None,
        connection_factory: ConnectionFactory | None = None,
    ) -> None:
        self.url = url
        self.spec = spec
        self.model = model
        self._headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        self._connect_socket = connection_factory or self._websocket
        self.timeout = timeout
        self.dtype = dtype
        self._backoff = (backoff_initial_s, backoff_max_s)
        self.on_ready = on_ready
        self._ids = itertools.count(1)
        self._pending: dict[int, asyncio.Future[ScoresResult]] = {}
        self._ws: InferenceSocket | None = None
        self._ready: Ready | None = None
        # Set while connected, and for good once closed: waiters wake and re-check the state.
        self._state_changed = asyncio.Event()
        self._last_error: InferenceError | None = None
        self._runner: asyncio.Task[None] | None = None
        self._closed = False

    @property
    def ready(self) -> Ready | None:
        """The current connection's handshake answer (model, spec, classes, max_batch, tags)."""
        return self._ready

    @property
    def connected(self) -> bool:
        return self._ws is not None

    async def connect(self) -> Ready:
        """Open the connection and handshake once; later drops are healed in the background.

        Raises InferenceRefused when the service refuses this spec or model, and
        InferenceUnavailable when it cannot be reached.
        """
        if self._runner is not None:
            raise RuntimeError("already connected")
        ws, ready = await self._open()
        self._attach(ws, ready)
        self._runner = asyncio.create_task(self._run(ws), name="hearo-inference-client")
        return ready

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]:
        """Scores for ``windows`` [n, window_frames, n_mels] (float32, CPU), one result per window.

        Requests larger than the service's ``max_batch`` are split. Raises InferenceTimeout
        after ``timeout`` seconds, InferenceUnavailable when no connection came up in that
        time or the connection dropped mid-call, InferenceRequestFailed when the service
        answered with an error (``overloaded`` among them), ValueError for a wrong shape.
        """
        if windows.shape[0] == 0:
            return []
        try:
            async with asyncio.timeout(self.timeout):
                ws, ready = await self._connection()
                expected = (ready.spec.window_frames, ready.spec.n_mels)
                if windows.dim() != 3 or tuple(windows.shape[1:]) != expected:
                    raise ValueError(f"expected windows [n, {expected[0]}, {expected[1]}], got {tuple(windows.shape)}")
                parts = await asyncio.gather(
                    *(self._request(ws, ready, chunk) for chunk in windows.detach().cpu().split(ready.max_batch))
                )
        except TimeoutError:
            if self._ws is None:
                raise InferenceUnavailable(
                    f"no connection to inference at {self.url} within {self.timeout} s (last error: {self._last_error})"
                ) from None
            raise InferenceTimeout(f"inference did not answer within {self.timeout} s") from None
        return [result for part in parts for result in part]

    async def close(self) -> None:
        """Close the connection and stop reconnecting; calls in flight fail with InferenceUnavailable."""
        self._closed = True
        self._state_changed.set()
        if self._runner is not None:
            self._runner.cancel()
            try:
                await self._runner
            except asyncio.CancelledError:
                pass
        if self._ws is not None:
            await self._ws.close()
        self._detach(InferenceUnavailable("the inference client was closed"))

    async def _websocket(self) -> InferenceSocket:
        # Compression off: float features barely compress and deflate would cost CPU per frame.
        return await websockets_connect(
            self.url, compression=None, open_timeout=self.timeout, additional_headers=self._headers
        )

    async def _open(self) -> tuple[InferenceSocket, Ready]:
        try:
            ws = await self._connect_socket()
        except InvalidStatus as exc:
            if exc.response.status_code in (401, 403):
                raise InferenceUnauthorized(_refusal_detail(exc)) from None
            raise InferenceUnavailable(f"cannot connect to inference at {self.url}: {exc}") from exc
        except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
            raise InferenceUnavailable(f"cannot connect to inference at {self.url}: {exc}") from exc
        try:
            async with asyncio.timeout(self.timeout):
                await ws.send(encode_control(Hello(self.model, self.spec)))
                reply = decode_control(await ws.recv())
        except (ConnectionClosed, TimeoutError, WireError) as exc:
            await ws.close()
            raise InferenceUnavailable(f"handshake with inference at {self.url} failed: {exc!r}") from exc
        if isinstance(reply, InferenceErrorMessage):
            await ws.close()
            raise InferenceRefused(reply.code, reply.message)
        if not isinstance(reply, Ready) or (self.spec is not None and reply.spec != self.spec) or reply.classes != CLASS_KEYS:
            await ws.close()
            raise InferenceRefused(InferenceErrorCode.SPEC_MISMATCH, f"unexpected handshake answer {reply!r}")
        return ws, reply

    def _attach(self, ws: InferenceSocket, ready: Ready) -> None:
        # Told before any call can use the connection, so nothing classifies on stale settings.
        if self.on_ready is not None:
            self.on_ready(ready)
        self._ws, self._ready, self._last_error = ws, ready, None
        self._state_changed.set()

    def _detach(self, error: InferenceError) -> None:
        self._ws = None
        if not self._closed:
            self._state_changed.clear()
        for future in self._pending.values():
            if not future.done():
                future.set_exception(error)

    async def _connection(self) -> tuple[InferenceSocket, Ready]:
        while True:
            if self._closed:
                raise InferenceUnavailable("the inference client was closed")
            if self._ws is not None and self._ready is not None:
                return self._ws, self._ready
            if self._runner is None:
                raise InferenceUnavailable("not connected to inference; call connect() first")
            if isinstance(self._last_error, InferenceRefused):
                raise InferenceRefused(self._last_error.code, self._last_error.detail)
            await self._state_changed.wait()

    async def _request(self, ws: InferenceSocket, ready: Ready, windows: torch.Tensor) -> list[WindowResult]:
        request_id = next(self._ids)
        future: asyncio.Future[ScoresResult] = asyncio.get_running_loop().create_future()
        self._pending[request_id] = future
        try:
            try:
                await ws.send(WindowsRequest(request_id, windows.numpy()).encode(self.dtype))
            except ConnectionClosed as exc:
                raise InferenceUnavailable("the connection to inference was lost") from exc
            result = await future
        finally:
            self._pending.pop(request_id, None)
        scores = torch.from_numpy(result.scores.copy())
        labels = ready.tags or ()
        return [
            WindowResult(
                scores=scores[i],
                tags=tuple(
                    (labels[t], float(s)) for t, s in zip(result.tag_ids[i].tolist(), result.tag_scores[i].tolist())
                ),
                queue_ms=result.queue_ms,
                compute_ms=result.compute_ms,
            )
            for i in range(scores.shape[0])
        ]

    async def _run(self, ws: InferenceSocket) -> None:
        """Route answers to callers; on a drop, fail what is in flight and reconnect, until closed."""
        while True:
            try:
                async for message in ws:
                    self._dispatch(message)
            except ConnectionClosed:
                pass
            log.warning("lost the connection to inference at %s; reconnecting", self.url)
            self._detach(InferenceUnavailable("the connection to inference was lost"))
            ws = await self._reconnect()

    async def _reconnect(self) -> InferenceSocket:
        delay, most = self._backoff
        while True:
            await asyncio.sleep(delay * random.uniform(0.5, 1.0))
            try:
                ws, ready = await self._open()
            except InferenceError as exc:
                self._last_error = exc
                if isinstance(exc, InferenceRefused):
                    # Waiting callers fail now rather than at their timeout.
                    self._state_changed.set()
                    self._state_changed.clear()
                # A refusal (a wrong token, another model) needs an operator: an error, not a warning.
                log.log(logging.ERROR if isinstance(exc, InferenceRefused) else logging.WARNING,
                        "reconnect to inference failed: %s", exc)  # fmt: skip
                delay = min(delay * 2, most)
                continue
            self._attach(ws, ready)
            log.info("reconnected to inference at %s", self.url)
            return ws

    def _dispatch(self, message: str | bytes) -> None:
        try:
            if isinstance(message, bytes):
                result = ScoresResult.decode(message)
                future = self._pending.get(result.request_id)
                if future is not None and not future.done():
                    future.set_result(result)
                return
            control = decode_control(message)
        except WireError as exc:
            log.error("undecodable message from inference: %s", exc)
            return
        if isinstance(control, InferenceErrorMessage) and control.request_id is not None:
            future = self._pending.get(control.request_id)
            if future is not None and not future.done():
                future.set_exception(InferenceRequestFailed(control.code, control.message))
        else:
            log.error("unexpected control message from inference: %r", control)


def _refusal_detail(refused: InvalidStatus) -> str:
    """What the service said when it refused the upgrade, and what to check."""
    try:
        said = str(json.loads(refused.response.body or b"")["message"])
    except (ValueError, KeyError, TypeError):
        said = f"HTTP {refused.response.status_code}"
    return (
        f"{said} (the gateway's HEARO_GATEWAY_INFERENCE_TOKEN, or HEARO_INFERENCE_TOKEN, must be "
        "one the inference service accepts)"
    )
