"""The inference service: one model, one micro-batcher, one WebSocket per gateway.

Routes: ``/healthz`` (200 once the model is loaded, 503 before and while stopping),
``/metrics`` (Prometheus), ``/v1/models`` (the served model, its spec and classes) and the
``/v1/windows`` WebSocket (protocol: ``shared/inference_wire.py``,
``docs/inference-protocol.md``), which needs ``Authorization: Bearer <token>``: without a
valid token the upgrade is answered 401 before anything is accepted, so a client without
one costs no handshake, no queue slot and no model time. Run with ``hearo serve inference`` or
``uvicorn --factory services.inference.app:create_app``.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import torch
from fastapi import FastAPI, WebSocket
from fastapi.responses import JSONResponse, Response
from starlette.websockets import WebSocketDisconnect

from services.inference.batch_tuning import BatchPlan, choose, measure
from services.inference.batcher import BatchedPrediction, BatcherClosed, MicroBatcher, Overloaded
from services.inference.metrics import InferenceMetrics
from services.inference.registry import ModelEntry, ModelRegistry, default_registry
from services.inference.settings import InferenceSettings
from shared.inference_wire import (
    HANDSHAKE_CLOSE_CODES,
    InferenceErrorCode,
    InferenceErrorMessage,
    Hello,
    Ready,
    ScoresResult,
    WindowsRequest,
    WireError,
    decode_control,
    encode_control,
)

log = logging.getLogger(__name__)

# A flood of refused upgrades must not flood the log: one warning per interval, with a count.
_REFUSAL_LOG_INTERVAL_S = 10.0

Outbox = asyncio.Queue[str | bytes]


class InferenceService:
    """The loaded model behind the routes: load on ``start``, drain on ``stop``."""

    def __init__(self, settings: InferenceSettings, entry: ModelEntry) -> None:
        self.settings = settings
        self.entry = entry
        self.metrics = InferenceMetrics()
        self.batcher: MicroBatcher | None = None
        self.ready: Ready | None = None
        self.batch_plan: BatchPlan | None = None
        # Resolved here, not per connection: in development this reads (or makes) the file once.
        self._tokens = [token.encode() for token in settings.accepted_tokens()]
        self._refusals_unlogged = 0
        self._refusal_logged_at = -_REFUSAL_LOG_INTERVAL_S

    async def start(self) -> None:
        classifier = self.entry.load(self.settings, self.settings.torch_device())
        self.batcher = MicroBatcher(
            classifier.predict,
            self.metrics,
            max_batch=self.settings.max_batch,
            max_wait_s=self.settings.max_wait_ms / 1000,
            queue_size=self.settings.queue_size,
            client_queue_size=self.settings.client_queue_size(),
            torch_threads=self.settings.torch_threads,
        )
        self.ready = Ready(
            model=self.entry.name,
            spec=self.entry.spec,
            classes=self.entry.classes,
            max_batch=self.settings.max_batch,
            tags=classifier.tag_labels,
            thresholds=classifier.thresholds,
            band_limit_hz=self.entry.band_limit_hz,
        )
        await self.batcher.start()
        plan = BatchPlan(self.settings.max_batch, self.settings.max_wait_ms / 1000)
        if self.settings.batch_tuning:
            window = (self.entry.spec.window_frames, self.entry.spec.n_mels)
            device, ceiling = self.settings.torch_device(), self.settings.max_batch
            timings = await self.batcher.in_model_thread(lambda: measure(classifier.predict, window, ceiling, device))
            plan = choose(timings, plan.max_wait_s)
        self.batcher.use(plan)
        self.batch_plan = plan
        self.metrics.batch_target.set(plan.target)
        self.metrics.batch_max_wait_seconds.set(plan.max_wait_s)
        log.info("batching: %s", plan.describe())
        log.info(
            "serving model %s (%s) on %s; stored thresholds: %s",
            self.entry.name, self.entry.spec.name, self.settings.torch_device(), classifier.thresholds or "none",
        )  # fmt: skip

    async def stop(self) -> None:
        if self.batcher is not None:
            await self.batcher.close()

    @property
    def is_ready(self) -> bool:
        return self.batcher is not None and self.batcher.running

    def authorized(self, authorization: str | None) -> bool:
        """True when ``authorization`` is ``Bearer <one of the accepted tokens>``."""
        scheme, _, token = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not token:
            return False
        presented = token.strip().encode()
        # Every token compared, in constant time each: the answer's timing tells nothing.
        return any([hmac.compare_digest(presented, accepted) for accepted in self._tokens])

    async def refuse_unauthorized(self, ws: WebSocket) -> None:
        """Answer the upgrade 401 without accepting it (a close before accept where the server
        cannot send an HTTP answer: a 403)."""
        self.metrics.unauthorized_total.inc()
        self._refusals_unlogged += 1
        now = time.monotonic()
        if now - self._refusal_logged_at >= _REFUSAL_LOG_INTERVAL_S:
            log.warning(
                "refused %d WebSocket upgrade(s) without a valid inference token (latest from %s)",
                self._refusals_unlogged, ws.client.host if ws.client else "unknown",
            )  # fmt: skip
            self._refusals_unlogged, self._refusal_logged_at = 0, now
        message = InferenceErrorMessage(
            InferenceErrorCode.UNAUTHORIZED,
            "missing or wrong inference token: send Authorization: Bearer <HEARO_INFERENCE_TOKEN>",
        )
        if "websocket.http.response" in ws.scope.get("extensions", {}):
            await ws.send_denial_response(JSONResponse(message.to_dict(), status_code=401))
        else:
            await ws.close(code=1008)

    async def serve_connection(self, ws: WebSocket) -> None:
        """One gateway connection: handshake, then windows requests until it disconnects."""
        if not self.authorized(ws.headers.get("authorization")):
            await self.refuse_unauthorized(ws)
            return
        await ws.accept()
        if not await self._handshake(ws):
            return
        outbox: Outbox = asyncio.Queue()
        pending: set[asyncio.Future[BatchedPrediction]] = set()
        connection = object()  # this connection's share of the batcher's queue
        writer = asyncio.create_task(self._write(ws, outbox))
        self.metrics.connections.inc()
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    return
                data = message.get("bytes")
                if data is None:
                    self._refuse_request(outbox, "after the handshake only binary windows frames are accepted")
                else:
                    self._accept_request(data, outbox, pending, connection)
        finally:
            self.metrics.connections.dec()
            # A gone gateway's queued windows are withdrawn; its batch-mates are unaffected.
            for future in pending:
                future.cancel()
            writer.cancel()

    async def _handshake(self, ws: WebSocket) -> bool:
        assert self.ready is not None
        try:
            async with asyncio.timeout(self.settings.hello_timeout_s):
                message = await ws.receive()
        except TimeoutError:
            await self._refuse(ws, InferenceErrorCode.BAD_HELLO, f"no hello within {self.settings.hello_timeout_s} s")
            return False
        if message["type"] == "websocket.disconnect":
            return False
        try:
            hello = decode_control(message.get("text") or "")
            if not isinstance(hello, Hello):
                raise WireError(f"expected a hello message, got {type(hello).__name__}")
        except WireError as exc:
            await self._refuse(ws, InferenceErrorCode.BAD_HELLO, str(exc))
            return False
        refusal = self._refusal(hello)
        if refusal is not None:
            await self._refuse(ws, *refusal)
            return False
        await ws.send_text(encode_control(self.ready))
        return True

    def _refusal(self, hello: Hello) -> tuple[InferenceErrorCode, str] | None:
        """Why this hello is refused, or None when its model and spec are the served ones (a
        hello without a spec takes the served model's)."""
        assert self.ready is not None
        served = self.ready
        if hello.model is not None and hello.model != served.model:
            return InferenceErrorCode.UNKNOWN_MODEL, f"model {hello.model!r} is not served here, {served.model!r} is"
        if hello.spec is not None and hello.spec != served.spec:
            gateway, ours = hello.spec.to_dict(), served.spec.to_dict()
            differing = [name for name in ours if gateway[name] != ours[name]]
            return InferenceErrorCode.SPEC_MISMATCH, (
                f"model {served.model!r} expects spec {served.spec.name!r}, the gateway sent {hello.spec.name!r}; "
                f"they differ in {', '.join(differing)}"
            )
        return None

    async def _refuse(self, ws: WebSocket, code: InferenceErrorCode, message: str) -> None:
        log.warning("refused a gateway: %s: %s", code.value, message)
        try:
            await ws.send_text(encode_control(InferenceErrorMessage(code, message)))
            await ws.close(code=HANDSHAKE_CLOSE_CODES[code], reason=code.value)
        except (WebSocketDisconnect, RuntimeError):
            pass  # the gateway left first; nothing to tell it

    def _accept_request(
        self, data: bytes, outbox: Outbox, pending: set[asyncio.Future[BatchedPrediction]], connection: object
    ) -> None:
        assert self.batcher is not None
        try:
            request = WindowsRequest.decode(data, self.entry.spec, self.settings.max_batch)
        except WireError as exc:
            self._refuse_request(outbox, str(exc), exc.request_id)
            return
        try:
            future = self.batcher.submit(torch.from_numpy(request.windows), client=connection)
        except (Overloaded, BatcherClosed) as exc:
            refusal = InferenceErrorMessage(InferenceErrorCode.OVERLOADED, str(exc), request.request_id)
            outbox.put_nowait(encode_control(refusal))
            return
        pending.add(future)
        future.add_done_callback(functools.partial(self._answer, request.request_id, outbox, pending))

    def _refuse_request(self, outbox: Outbox, message: str, request_id: int | None = None) -> None:
        self.metrics.bad_requests_total.inc()
        outbox.put_nowait(encode_control(InferenceErrorMessage(InferenceErrorCode.BAD_REQUEST, message, request_id)))

    def _answer(
        self,
        request_id: int,
        outbox: Outbox,
        pending: set[asyncio.Future[BatchedPrediction]],
        future: asyncio.Future[BatchedPrediction],
    ) -> None:
        pending.discard(future)
        if future.cancelled():
            return
        error = future.exception()
        if isinstance(error, Overloaded):  # shed for a lighter connection: counted by the batcher
            shed = InferenceErrorMessage(InferenceErrorCode.OVERLOADED, str(error), request_id)
            outbox.put_nowait(encode_control(shed))
            return
        if error is not None:
            log.error("model failed on request %d", request_id, exc_info=error)
            detail = f"{type(error).__name__}: {error}"
            message = InferenceErrorMessage(InferenceErrorCode.MODEL_ERROR, detail, request_id)
            outbox.put_nowait(encode_control(message))
            return
        outbox.put_nowait(self._encode_result(request_id, future.result()))

    def _encode_result(self, request_id: int, result: BatchedPrediction) -> bytes:
        prediction = result.prediction
        n = prediction.scores.shape[0]
        k = 0 if prediction.tags is None else min(self.settings.top_tags, prediction.tags.shape[1])
        if k and prediction.tags is not None:
            tag_scores, tag_ids = torch.topk(prediction.tags, k, dim=1)
        else:
            tag_scores, tag_ids = torch.zeros(n, 0), torch.zeros(n, 0, dtype=torch.int32)
        return ScoresResult(
            request_id=request_id,
            scores=prediction.scores.numpy(),
            tag_ids=tag_ids.numpy(),
            tag_scores=tag_scores.numpy(),
            queue_ms=result.queue_s * 1000,
            compute_ms=result.compute_s * 1000,
        ).encode()

    @staticmethod
    async def _write(ws: WebSocket, outbox: Outbox) -> None:
        # The only task that sends after the handshake, so frames never interleave.
        try:
            while True:
                message = await outbox.get()
                if isinstance(message, bytes):
                    await ws.send_bytes(message)
                else:
                    await ws.send_text(message)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the reader sees the disconnect and cleans up


def create_app(settings: InferenceSettings | None = None, registry: ModelRegistry | None = None) -> FastAPI:
    """Build the inference app for ``settings.model`` from ``registry`` (default: every known model).

    Raises UnknownModelError at once for an unregistered model; the model itself loads at
    startup (lifespan), which fails with ModelLoadError naming the setting to fix.
    """
    settings = settings or InferenceSettings()
    service = InferenceService(settings, (registry or default_registry()).get(settings.model))

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await service.start()
        try:
            yield
        finally:
            await service.stop()

    app = FastAPI(title="Hear-o inference", lifespan=lifespan)
    app.state.service = service

    @app.get("/healthz")
    async def healthz() -> JSONResponse:
        if service.is_ready:
            batching = None if service.batch_plan is None else service.batch_plan.describe()
            return JSONResponse({"status": "ready", "model": service.entry.name, "batching": batching})
        return JSONResponse({"status": "unavailable", "model": service.entry.name}, status_code=503)

    @app.get("/metrics")
    async def metrics() -> Response:
        body, content_type = service.metrics.render()
        return Response(body, media_type=content_type)

    @app.get("/v1/models")
    async def models() -> JSONResponse:
        if service.ready is None:
            return JSONResponse({"detail": "model not loaded"}, status_code=503)
        body = service.ready.to_dict()
        del body["type"]
        return JSONResponse(body)

    @app.websocket("/v1/windows")
    async def windows(ws: WebSocket) -> None:
        await service.serve_connection(ws)

    return app
