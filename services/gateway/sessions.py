"""Streaming sessions on ``/v1/stream``: handshake, audio pipeline, classification, bounds.

One ``StreamSession`` per WebSocket, two tasks per session:

* the reader takes frames off the socket: binary audio goes through the ``AudioPipeline``
  into a bounded queue of windows, control messages are answered;
* the classifier takes windows off that queue in batches, sends them to the shared
  inference client, feeds the scores to the session's ``Detector`` and sends ``scores`` and
  ``detection`` messages.

Bounds (docs/protocol.md): frame size; sessions per gateway; the window queue; audio speed
(``max_stream_speed`` times real time); control messages per second. When the queue is full
the reader's choice depends on whether the client is ahead of real time: a client sending a
file faster than real time is made to wait (the socket is not read, so TCP slows the
sender and nothing is lost), while a live client, whose audio cannot wait, loses the
oldest windows and is told once (``behind``). A session's failure never touches another:
every error ends in an ``error`` message and a close code, or is answered and ignored.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import torch
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.gateway.audio import AudioPipeline, Window
from services.gateway.detector import Detector, DetectorConfig
from services.gateway.inference_client import InferenceError, WindowResult
from services.gateway.settings import GatewaySettings
from shared.db import Device
from shared.features.spec import FeatureSpec
from shared.inference_wire import Ready
from shared.protocol import (
    CLOSE_CODES,
    CancelMessage,
    ClassInfo,
    ClassScore,
    ClientMessage,
    CloseCode,
    ConfirmMessage,
    DetectionMessage,
    ErrorCode,
    ErrorMessage,
    Location,
    LocationMessage,
    Message,
    ProtocolError,
    ReadyMessage,
    ScoresMessage,
    StartMessage,
    StopMessage,
    StoppedMessage,
    TagScore,
    parse_client_message,
)
from shared.taxonomy import CLASSES

log = logging.getLogger(__name__)

# A client more than this far ahead of real time is sending recorded audio: it can wait.
AHEAD_SLACK_S = 1.0
# Audio a client may send at once before the speed limit applies (a pre-buffered burst).
SPEED_BURST_S = 2.0
# Control messages: a burst of this many, then this many per second.
CONTROL_BURST = 20
CONTROL_PER_SECOND = 5.0

Authenticate = Callable[[str], Awaitable[Device | None]]


class Classifier(Protocol):
    """What a session needs of the inference client (``InferenceClient`` is one)."""

    @property
    def ready(self) -> Ready | None: ...

    @property
    def connected(self) -> bool: ...

    async def classify(self, windows: torch.Tensor) -> list[WindowResult]: ...


class _Fatal(Exception):
    """Ends the session with an ``error`` (fatal) and the code's close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Disconnected(Exception):
    """The client closed the socket or went away."""


_END = None  # queued after the last window at ``stop``


class SessionManager:
    """All streaming sessions of one gateway: the shared pieces and the session limit.

    >>> manager = SessionManager(settings, inference_client, authenticate, EFFICIENTAT_MEL)
    >>> @app.websocket("/v1/stream")
    ... async def stream(websocket: WebSocket) -> None:
    ...     await manager.serve(websocket)
    """

    def __init__(
        self, settings: GatewaySettings, classifier: Classifier, authenticate: Authenticate, spec: FeatureSpec
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.authenticate = authenticate
        self.spec = spec
        self.hop_frames = spec.frames_for(settings.hop_s)
        # Built once so a bad threshold mapping stops the gateway at startup, not a session.
        self.detector_config = DetectorConfig.build(
            settings.detector_default_threshold,
            settings.detector_thresholds,
            release_ratio=settings.detector_release_ratio,
            smoothing_windows=settings.detector_smoothing_windows,
            refractory_s=settings.detector_refractory_s,
            hop_s=self.hop_frames * spec.frame_shift / spec.sample_rate,
        )
        self.active = 0

    def try_acquire(self) -> bool:
        """Take a session slot; False when the gateway is at ``max_sessions``."""
        if self.active >= self.settings.max_sessions:
            return False
        self.active += 1
        return True

    def release(self) -> None:
        self.active -= 1

    async def serve(self, websocket: WebSocket) -> None:
        """Run one client's session to its end; never raises for anything the client does."""
        await websocket.accept()
        await StreamSession(self, websocket).run()


@dataclass
class _TokenBucket:
    """``capacity`` events at once, refilled at ``per_second``."""

    capacity: float
    per_second: float
    tokens: float
    updated: float

    def take(self, now: float) -> bool:
        self.tokens = min(self.capacity, self.tokens + (now - self.updated) * self.per_second)
        self.updated = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class StreamSession:
    """One WebSocket client from ``start`` to close. Create with ``SessionManager.serve``."""

    def __init__(self, manager: SessionManager, websocket: WebSocket) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.websocket = websocket
        self.session_id = uuid.uuid4().hex
        self._closed = False  # close sent, or the client left
        self.device: Device | None = None
        self.start: StartMessage | None = None
        self.location: Location | None = None
        self.detector = Detector(manager.detector_config)
        self.windows_classified = 0
        self.detections = 0
        self.audio: AudioPipeline | None = None  # from ``ready`` on; ``audio.ring`` holds the clip audio
        self._queue: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.window_queue_size)
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._started_at = 0.0
        self._behind = False  # dropping windows; told the client
        self._inference_down = False  # told the client inference is unavailable
        # Scores: ``scores_per_second`` on average; a second token absorbs the jitter of windows
        # that arrive exactly at that rate, so none is skipped for arriving a moment early.
        rate = self.settings.scores_per_second
        self._scores = _TokenBucket(2.0, rate, 1.0, self._loop.time()) if rate > 0 else None
        self._control = _TokenBucket(CONTROL_BURST, CONTROL_PER_SECOND, CONTROL_BURST, self._loop.time())

    async def run(self) -> None:
        holds_slot = False
        try:
            self.start = await self._handshake()
            if not self.manager.try_acquire():
                raise _Fatal(
                    ErrorCode.TOO_MANY_SESSIONS,
                    f"the gateway is at its limit of {self.settings.max_sessions} sessions; retry later",
                )
            holds_slot = True
            await self._stream()
        except _Fatal as fatal:
            await self._fail(fatal.code, str(fatal))
        except (_Disconnected, WebSocketDisconnect):
            pass
        except Exception:
            log.exception("session %s failed", self.session_id)
            await self._fail(ErrorCode.INTERNAL, "the gateway failed this session; reconnect")
        finally:
            self._closed = True
            if holds_slot:
                self.manager.release()
                log.info("session %s closed: %d windows classified, %d detections", self.session_id,
                         self.windows_classified, self.detections)  # fmt: skip

    # --- handshake ---------------------------------------------------------------------------

    async def _handshake(self) -> StartMessage:
        try:
            async with asyncio.timeout(self.settings.start_timeout_s):
                frame = await self._receive()
        except TimeoutError:
            raise _Fatal(
                ErrorCode.START_TIMEOUT, f"no start message within {self.settings.start_timeout_s:g} s"
            ) from None
        if isinstance(frame, bytes):
            raise _Fatal(ErrorCode.START_REQUIRED, "send a start message before any audio")
        try:
            message = parse_client_message(frame)
        except ProtocolError as exc:
            raise _Fatal(exc.code, str(exc)) from None
        if not isinstance(message, StartMessage):
            raise _Fatal(ErrorCode.START_REQUIRED, f"the first message must be start, not {message.type}")

        token = message.token or self._bearer_token()
        if not token:
            raise _Fatal(ErrorCode.UNAUTHORIZED, "no device token: put it in start.token or an Authorization header")
        self.device = await self.manager.authenticate(token)
        if self.device is None:
            raise _Fatal(ErrorCode.UNAUTHORIZED, "the device token is not valid (rotated or revoked?)")

        if message.frame_ms is not None:
            frame_bytes = message.frame_ms * message.sample_rate // 1000 * message.bytes_per_frame
            if frame_bytes > self.settings.max_frame_bytes:
                raise _Fatal(
                    ErrorCode.INVALID_MESSAGE,
                    f"frame_ms {message.frame_ms} makes {frame_bytes}-byte frames; "
                    f"the limit is {self.settings.max_frame_bytes} bytes",
                )
        if not self.manager.classifier.connected or self.manager.classifier.ready is None:
            raise _Fatal(ErrorCode.INFERENCE_UNAVAILABLE, "the model service is not reachable; retry later")
        self.location = message.location
        return message

    def _bearer_token(self) -> str | None:
        scheme, _, credentials = self.websocket.headers.get("authorization", "").partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None

    # --- streaming ---------------------------------------------------------------------------

    async def _stream(self) -> None:
        assert self.start is not None and self.manager.classifier.ready is not None
        spec = self.manager.spec
        self.audio = AudioPipeline(
            self.start.sample_rate, self.start.channels, spec, self.manager.hop_frames, self.settings.ring_buffer_s
        )
        await self._send(
            ReadyMessage(
                session_id=self.session_id,
                window_s=spec.window_seconds,
                hop_s=self.manager.detector_config.hop_s,
                model=self.manager.classifier.ready.model,
                classes=[ClassInfo(id=c.id, key=c.key, label_en=c.label_en, label_ko=c.label_ko) for c in CLASSES],
                max_frame_bytes=self.settings.max_frame_bytes,
            )
        )
        self._started_at = self._loop.time()
        log.info("session %s open: device %s, %d Hz x%d", self.session_id, self.device and self.device.id,
                 self.start.sample_rate, self.start.channels)  # fmt: skip

        reader = asyncio.create_task(self._read_loop(), name=f"session-{self.session_id}-reader")
        classifier = asyncio.create_task(self._classify_loop(), name=f"session-{self.session_id}-classifier")
        try:
            # The reader returns only after ``stop`` (having queued the end); anything else raises.
            done, _ = await asyncio.wait({reader, classifier}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in (reader, classifier):
                task.cancel()
            # wait, not gather: a cancellation of this task must surface as itself.
            await asyncio.wait({reader, classifier})
        await self._send(
            StoppedMessage(
                stream_time_s=round(self.audio.stream_time_s, 3),
                windows=self.windows_classified,
                detections=self.detections,
            )
        )
        await self._close(CloseCode.NORMAL, "stopped")

    async def _read_loop(self) -> None:
        assert self.audio is not None and self.start is not None
        while True:
            frame = await self._receive()
            if isinstance(frame, bytes):
                if len(frame) % self.start.bytes_per_frame:
                    raise _Fatal(
                        ErrorCode.MISALIGNED_FRAME,
                        f"a {len(frame)}-byte frame is not whole samples: binary frames must be "
                        f"multiples of {self.start.bytes_per_frame} bytes ({self.start.channels} x int16)",
                    )
                await self._enqueue(self.audio.push(frame))
                await self._keep_speed_limit()
                continue
            if not self._control.take(self._loop.time()):
                raise _Fatal(ErrorCode.FLOOD, f"more than {CONTROL_PER_SECOND:g} control messages per second")
            try:
                message = parse_client_message(frame)
            except ProtocolError as exc:
                await self._send(ErrorMessage(code=exc.code, message=str(exc)))
                continue
            if isinstance(message, StopMessage):
                await self._enqueue(self.audio.flush(), wait=True)
                await self._queue.put(_END)
                return
            await self._answer_control(message)

    async def _answer_control(self, message: ClientMessage) -> None:
        if isinstance(message, LocationMessage):
            self.location = message
        elif isinstance(message, CancelMessage | ConfirmMessage):
            await self._send(
                ErrorMessage(
                    code=ErrorCode.UNKNOWN_INCIDENT,
                    message=f"no incident {message.incident_id!r} is open in this session",
                )
            )
        else:
            await self._send(
                ErrorMessage(code=ErrorCode.UNEXPECTED_MESSAGE, message="the session has already started")
            )

    async def _enqueue(self, windows: list[Window], wait: bool = False) -> None:
        """Queue windows for the classifier; when full, wait (recorded audio) or drop the oldest (live)."""
        for window in windows:
            if wait or self._ahead_of_real_time():
                await self._queue.put(window)
                continue
            if self._queue.full():
                self._queue.get_nowait()
                if not self._behind:
                    self._behind = True
                    await self._send(
                        ErrorMessage(
                            code=ErrorCode.BEHIND,
                            message="classification fell behind real time; the oldest audio windows were skipped",
                        )
                    )
            self._queue.put_nowait(window)

    def _ahead_of_real_time(self) -> bool:
        assert self.audio is not None
        return self.audio.stream_time_s > self._loop.time() - self._started_at + AHEAD_SLACK_S

    async def _keep_speed_limit(self) -> None:
        """Stop reading while the client is over ``max_stream_speed``: TCP then slows it down."""
        assert self.audio is not None
        allowed_at = self._started_at + (self.audio.stream_time_s - SPEED_BURST_S) / self.settings.max_stream_speed
        delay = allowed_at - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)

    async def _classify_loop(self) -> None:
        """Classify queued windows in batches until the end marker ``stop`` queues."""
        while True:
            # The oldest queued window and every other one already waiting: one request.
            batch = [await self._queue.get()]
            while batch[-1] is not _END and not self._queue.empty():
                batch.append(self._queue.get_nowait())
            windows = [w for w in batch if w is not _END]
            if windows:
                await self._classify(windows)
            if batch[-1] is _END:
                return

    async def _classify(self, windows: list[Window]) -> None:
        try:
            results = await self.manager.classifier.classify(torch.stack([w.features for w in windows]))
        except InferenceError as exc:
            log.warning("session %s: %d windows unclassified: %s", self.session_id, len(windows), exc)
            if not self._inference_down:
                self._inference_down = True
                await self._send(
                    ErrorMessage(
                        code=ErrorCode.INFERENCE_UNAVAILABLE,
                        message="the model service is unavailable; audio is not being checked until it returns",
                    )
                )
            return
        self._inference_down = False
        if self._queue.empty():
            self._behind = False
        for window, result in zip(windows, results):
            self.windows_classified += 1
            for event in self.detector.update(result.scores.numpy(), window.end_s):
                self.detections += 1
                cls = event.emergency_class
                await self._send(
                    DetectionMessage(
                        detection_id=uuid.uuid4().hex,
                        class_=cls.key,
                        class_id=cls.id,
                        label_en=cls.label_en,
                        label_ko=cls.label_ko,
                        confidence=round(event.confidence, 4),
                        stream_time_s=round(event.stream_time_s, 3),
                        detected_at=datetime.now(UTC),
                    )
                )
        await self._send_scores(windows[-1], results[-1])

    async def _send_scores(self, window: Window, result: WindowResult) -> None:
        if self._scores is None or not self._scores.take(self._loop.time()):
            return
        scores = result.scores.tolist()
        ranked = sorted(CLASSES, key=lambda c: scores[c.id], reverse=True)
        await self._send(
            ScoresMessage(
                stream_time_s=round(window.end_s, 3),
                top=[ClassScore(class_=c.key, class_id=c.id, score=round(scores[c.id], 4)) for c in ranked],
                tags=[TagScore(label=label, score=round(score, 4)) for label, score in result.tags] or None,
            )
        )

    # --- the socket --------------------------------------------------------------------------

    async def _receive(self) -> bytes | str:
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise _Disconnected()
        data: bytes | str | None = message.get("bytes")
        if data is None:
            data = message.get("text") or ""
        if len(data) > self.settings.max_frame_bytes:
            raise _Fatal(
                ErrorCode.FRAME_TOO_LARGE,
                f"a {len(data)}-byte frame is over the limit of {self.settings.max_frame_bytes} bytes",
            )
        return data

    async def _send(self, message: Message) -> None:
        async with self._send_lock:
            if not self._open():
                return
            try:
                await self.websocket.send_text(message.to_json())
            except (WebSocketDisconnect, OSError, RuntimeError):
                # The client left: the reader sees the disconnect and ends the session.
                self._closed = True

    async def _close(self, code: int, reason: str) -> None:
        async with self._send_lock:
            if not self._open():
                return
            self._closed = True
            try:
                await self.websocket.close(code=code, reason=reason[:120])
            except (WebSocketDisconnect, OSError, RuntimeError):
                pass

    def _open(self) -> bool:
        return (
            not self._closed
            and self.websocket.application_state is WebSocketState.CONNECTED
            and self.websocket.client_state is WebSocketState.CONNECTED
        )

    async def _fail(self, code: ErrorCode, message: str) -> None:
        if code is not ErrorCode.INTERNAL:
            log.info("session %s refused: %s: %s", self.session_id, code.value, message)
        await self._send(ErrorMessage(code=code, message=message, fatal=True))
        await self._close(CLOSE_CODES[code], code.value)
