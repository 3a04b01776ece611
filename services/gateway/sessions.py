"""Streaming sessions on ``/v1/stream``: handshake, audio pipeline, classification, bounds.

One ``StreamSession`` per WebSocket, two tasks per session:

* the reader takes frames off the socket: binary audio goes through the ``AudioPipeline``
  into a bounded queue of windows (and its alarm pattern matches into the ``Detector``'s
  queue), control messages are answered (``cancel`` and ``confirm`` through
  ``SessionIncidents``);
* the classifier takes windows off that queue in batches, sends them to the shared
  inference client, feeds the scores to the session's ``Detector`` (which observes the
  queued pattern matches with them, in stream order), and sends ``scores`` and
  ``detection`` messages. Each detection opens an incident (or adds to the device's open
  one) whose countdown and later states the client is told of (``session_incidents``).

At ``stop``, and when the client leaves, the stream's end is judged: the pipeline completes
the windows that hold its last audio with silence (``AudioPipeline.flush``, the rule ``hearo
eval`` follows too) and the classifier takes them before the end marker, so a short recording,
or a phone that drops right after a scream, is judged to its end. After ``stop`` the
session stays open while an incident it follows is unresolved (at most ``incident_follow_s``),
answering ``cancel``/``confirm``, then closes 1000. A disconnect at any point only stops the
following: it never cancels an incident, and one opened by the tail counts down as any other.

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
import enum
import hmac
import logging
import math
import time
import uuid
from collections import deque
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from datetime import UTC, datetime
from typing import Any
from typing import Protocol

import numpy as np
import torch
from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from shared.alarm_patterns import AlarmPatternDetector
from services.gateway.audio import RING_SAMPLE_RATE, AudioPipeline, Window
from services.gateway.auth import hash_token
from shared.detector import DetectionEvent, Detector, DetectorConfig
from services.gateway.inference_client import InferenceError, WindowResult
from services.gateway.rate_limit import TokenBucket
from services.gateway.session_incidents import IncidentBackend, SessionIncidents, TokenRevoked
from services.gateway.settings import GatewaySettings
from shared.db import Device
from shared.features.spec import FeatureSpec
from shared.incidents import IncidentLocation
from shared.incidents import OpenedIncident, ScorePoint
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
# An incident's score timeline: the detected class's smoothed scores over this long before it.
TIMELINE_S = 10.0
# How long a revocation is remembered for sessions still authenticating when it was heard.
REVOCATION_MEMORY_S = 60.0
REVOKED_MESSAGE = "the device token was rotated or the device deleted; reconnect with a current token"

Authenticate = Callable[[str], Awaitable[Device | None]]


class WindowClassifier(Protocol):
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


class _Ended(enum.Enum):
    """How a stream's audio ended: its tail is judged either way."""

    STOPPED = enum.auto()  # the client sent ``stop``
    LEFT = enum.auto()  # the client closed the socket or went away


_END = None  # queued after the last window, at ``stop`` or when the client leaves


class SessionManager:
    """All streaming sessions of one gateway: the shared pieces and the session limit.

    Without ``incidents`` detections are only reported to the client (no incident, no
    countdown) and ``cancel``/``confirm`` are answered ``unknown_incident``.

    >>> manager = SessionManager(settings, inference_client, authenticate, EFFICIENTAT_MEL, incidents)
    >>> @app.websocket("/v1/stream")
    ... async def stream(websocket: WebSocket) -> None:
    ...     await manager.serve(websocket)
    """

    def __init__(
        self,
        settings: GatewaySettings,
        classifier: WindowClassifier,
        authenticate: Authenticate,
        spec: FeatureSpec | None = None,
        incidents: IncidentBackend | None = None,
    ) -> None:
        self.settings = settings
        self.classifier = classifier
        self.authenticate = authenticate
        # None: the served model's, from the inference handshake (no session starts before it).
        self.pinned_spec = spec
        self.spec = spec
        self.incidents = incidents
        # Built now so a bad threshold setting stops the gateway at startup, not a session;
        # rebuilt with the served model's thresholds by ``use_model`` at each (re)connect.
        self.detector_config = self._detector_config(None)
        self.active = 0
        # Admitted sessions per device, oldest first; a session is counted in ``active`` while here.
        self._by_device: dict[uuid.UUID, list[StreamSession]] = {}
        # Revocations heard lately: device -> (its current token's hash, None when deleted; when heard).
        self._revoked: dict[uuid.UUID, tuple[str | None, float]] = {}

    @property
    def hop_frames(self) -> int:
        if self.spec is None:
            raise RuntimeError("no feature spec before the first inference handshake")
        return self.spec.frames_for(self.settings.hop_s)

    def use_model(self, ready: Ready) -> None:
        """Take the feature spec (unless pinned) and the thresholds the model behind ``ready``
        advertises: sessions started from now on use them (explicit settings still win).
        Called at every (re)connect."""
        self.spec = self.pinned_spec or ready.spec
        self.detector_config = self._detector_config(ready.thresholds)
        explicit, stored = self.settings.detector_thresholds, ready.thresholds or {}
        log.info(
            "detector thresholds for model %s: %s", ready.model,
            ", ".join(
                f"{key} {value:g} ({'setting' if key in explicit else 'model' if key in stored else 'default'})"
                for key, value in self.detector_config.thresholds.items()
            ),
        )  # fmt: skip

    def _detector_config(self, model_thresholds: Mapping[str, float] | None) -> DetectorConfig:
        settings, spec = self.settings, self.spec
        # The hop the spec's frames can make (the setting rounded to whole frames).
        hop_s = settings.hop_s if spec is None else self.hop_frames * spec.frame_shift / spec.sample_rate
        return DetectorConfig.build(
            settings.detector_default_threshold,
            settings.detector_thresholds,
            model_thresholds,
            release_ratio=settings.detector_release_ratio,
            smoothing_windows=settings.detector_smoothing_windows,
            refractory_s=settings.detector_refractory_s,
            hop_s=hop_s,
        )

    def admit(self, session: StreamSession) -> None:
        """Count an authenticated ``session`` in, or raise ``_Fatal``.

        A device at ``max_sessions_per_device`` has its oldest session replaced (told why,
        then closed 4409), so one device never holds more and never takes another's slot;
        otherwise a gateway at ``max_sessions`` refuses (4429). A token revoked while the
        session was authenticating is refused (4001).
        """
        assert session.device is not None
        device_id = session.device.id
        if not self._token_current(device_id, session.token_hash):
            raise _Fatal(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE)
        mine = self._by_device.setdefault(device_id, [])
        cap = self.settings.max_sessions_per_device
        if len(mine) >= cap:
            oldest = mine[0]
            self._remove(oldest)  # its slot passes to the new session
            oldest.end(
                ErrorCode.SESSION_REPLACED,
                f"a newer session of this device started; a device may have {cap} at once and this was the oldest",
            )
            mine = self._by_device.setdefault(device_id, [])
        elif self.active >= self.settings.max_sessions:
            if not mine:
                del self._by_device[device_id]
            raise _Fatal(
                ErrorCode.TOO_MANY_SESSIONS,
                f"the gateway is at its limit of {self.settings.max_sessions} sessions; retry later",
            )
        mine.append(session)
        self.active += 1

    def release(self, session: StreamSession) -> None:
        """Count ``session`` out (again is harmless)."""
        self._remove(session)

    def sessions_of(self, device_id: uuid.UUID) -> list[StreamSession]:
        """The device's admitted sessions, oldest first."""
        return list(self._by_device.get(device_id, ()))

    def all(self) -> list[StreamSession]:
        """Every admitted session."""
        return [session for mine in self._by_device.values() for session in mine]

    def revoke(self, device_id: uuid.UUID, current_token_hash: str | None) -> int:
        """End the device's sessions opened with another token than the one whose hash is
        ``current_token_hash`` (every one when None: the device is gone), telling each why
        (``token_revoked``, close 4001); returns how many. Remembered for a while, so that a
        session still authenticating with the old token is refused at admission."""
        now = time.monotonic()
        self._revoked[device_id] = (current_token_hash, now)
        for known, (_, heard_at) in list(self._revoked.items()):
            if now - heard_at > REVOCATION_MEMORY_S:
                del self._revoked[known]
        ended = sum(
            self.end_revoked(session)
            for session in self.sessions_of(device_id)
            if not self._token_current(device_id, session.token_hash)
        )
        if ended:
            log.info("device %s: %d sessions closed, their token revoked", device_id, ended)
        return ended

    def end_revoked(self, session: StreamSession) -> bool:
        """End an admitted ``session`` whose token is revoked (``token_revoked``, 4001);
        False when it was no longer admitted."""
        if session.device is None or session not in self._by_device.get(session.device.id, ()):
            return False
        self._remove(session)
        session.end(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE)
        return True

    def _token_current(self, device_id: uuid.UUID, token_hash: str) -> bool:
        revoked = self._revoked.get(device_id)
        if revoked is None:
            return True
        current, _ = revoked
        return current is not None and hmac.compare_digest(current, token_hash)

    def _remove(self, session: StreamSession) -> None:
        if session.device is None:
            return
        mine = self._by_device.get(session.device.id)
        if mine is None or session not in mine:
            return
        mine.remove(session)
        self.active -= 1
        if not mine:
            del self._by_device[session.device.id]

    async def serve(self, websocket: WebSocket) -> None:
        """Run one client's session to its end; never raises for anything the client does."""
        await websocket.accept()
        await StreamSession(self, websocket).run()


class StreamSession:
    """One WebSocket client from ``start`` to close. Create with ``SessionManager.serve``."""

    def __init__(self, manager: SessionManager, websocket: WebSocket) -> None:
        self.manager = manager
        self.settings = manager.settings
        self.websocket = websocket
        self.session_id = uuid.uuid4().hex
        self._closed = False  # close sent, or the client left
        self.device: Device | None = None
        self.token_hash = ""  # of the token the session was opened with, from the handshake on
        # Set by the gateway to end the session from outside (``end``): replaced, revoked.
        self._ended: asyncio.Future[_Fatal] = asyncio.get_running_loop().create_future()
        self.start: StartMessage | None = None
        self.location: Location | None = None  # the latest position, kept only with consent
        self.detector = Detector(manager.detector_config)
        self.incidents: SessionIncidents | None = None  # from the handshake on, when the gateway has them
        self.windows_classified = 0
        self.detections = 0
        self.audio: AudioPipeline | None = None  # from ``ready`` on; ``audio.ring`` holds the clip audio
        self._queue: asyncio.Queue[Window | None] = asyncio.Queue(self.settings.window_queue_size)
        timeline_windows = math.ceil(TIMELINE_S / manager.detector_config.hop_s) + 1
        self._smoothed: deque[tuple[float, np.ndarray]] = deque(maxlen=timeline_windows)
        self._location_refused = False  # told the client its positions are not kept
        self._send_lock = asyncio.Lock()
        self._loop = asyncio.get_running_loop()
        self._started_at = 0.0
        self._behind = False  # dropping windows; told the client
        self._inference_down = False  # told the client inference is unavailable
        # Scores: ``scores_per_second`` on average; a second token absorbs the jitter of windows
        # that arrive exactly at that rate, so none is skipped for arriving a moment early.
        rate = self.settings.scores_per_second
        self._scores = TokenBucket(2.0, rate, 1.0, self._loop.time()) if rate > 0 else None
        self._control = TokenBucket(CONTROL_BURST, CONTROL_PER_SECOND, CONTROL_BURST, self._loop.time())

    def end(self, code: ErrorCode, message: str) -> None:
        """End the session from outside (another task): the client gets a fatal ``error``
        with ``message`` and the close of ``code``. Later calls do nothing."""
        if not self._ended.done():
            self._ended.set_result(_Fatal(code, message))

    async def run(self) -> None:
        holds_slot = False
        try:
            self.start = await self._handshake()
            self.manager.admit(self)
            holds_slot = True
            await self._unless_ended(self._stream())
        except _Fatal as fatal:
            await self._fail(fatal.code, str(fatal))
        except (_Disconnected, WebSocketDisconnect):
            pass
        except Exception:
            log.exception("session %s failed", self.session_id)
            await self._fail(ErrorCode.INTERNAL, "the gateway failed this session; reconnect")
        finally:
            self._closed = True
            if self.incidents is not None:
                self.incidents.close(self.audio.ring if self.audio is not None else None)
            if holds_slot:
                self.manager.release(self)
                log.info("session %s closed: %d windows classified, %d detections", self.session_id,
                         self.windows_classified, self.detections)  # fmt: skip

    async def _unless_ended(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end, unless ``end`` is called first: then stop it and raise
        the ``_Fatal`` given there."""
        task = asyncio.create_task(work, name=f"session-{self.session_id}-stream")
        try:
            waited: set[asyncio.Future[Any]] = {task, self._ended}
            await asyncio.wait(waited, return_when=asyncio.FIRST_COMPLETED)
        finally:
            if not task.done():
                task.cancel()
                await asyncio.wait({task})
        if task.cancelled():  # by the ``end`` above: cancelling this task would not get here
            raise self._ended.result()
        task.result()

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
        self.token_hash = hash_token(token)
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
        if self.manager.incidents is not None:
            self.incidents = SessionIncidents(
                self.manager.incidents, self.device, self.session_id, self._send, token_hash=self.token_hash
            )
        return message

    def _bearer_token(self) -> str | None:
        scheme, _, credentials = self.websocket.headers.get("authorization", "").partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None

    # --- streaming ---------------------------------------------------------------------------

    async def _stream(self) -> None:
        assert self.start is not None and self.manager.classifier.ready is not None and self.manager.spec is not None
        spec = self.manager.spec
        self.audio = AudioPipeline(
            self.start.sample_rate,
            self.start.channels,
            spec,
            self.manager.hop_frames,
            self.settings.ring_buffer_s,
            AlarmPatternDetector(RING_SAMPLE_RATE) if self.settings.alarm_patterns else None,
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
        await self._set_location(self.start.location)

        reader = asyncio.create_task(self._read_loop(), name=f"session-{self.session_id}-reader")
        classifier = asyncio.create_task(self._classify_loop(), name=f"session-{self.session_id}-classifier")
        try:
            # The reader returns only after ``stop`` or the client leaving (having queued the
            # end), the classifier at the end; anything else raises.
            done, _ = await asyncio.wait({reader, classifier}, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in (reader, classifier):
                task.cancel()
            # wait, not gather: a cancellation of this task must surface as itself.
            await asyncio.wait({reader, classifier})
        if reader.result() is _Ended.LEFT:
            return  # the tail is judged; nobody is there to tell
        await self._send(
            StoppedMessage(
                stream_time_s=round(self.audio.stream_time_s, 3),
                windows=self.windows_classified,
                detections=self.detections,
            )
        )
        if self.incidents is not None:
            self.incidents.audio_ended(self.audio.ring)
            await self._follow_after_stop(self.incidents)
        await self._close(CloseCode.NORMAL, "stopped")

    async def _follow_after_stop(self, incidents: SessionIncidents) -> None:
        """Stay open while an incident is unresolved, so the client sees how it ends."""
        if not incidents.unresolved:
            return
        reader = asyncio.create_task(self._read_after_stop(), name=f"session-{self.session_id}-reader")
        resolved = asyncio.create_task(incidents.wait_resolved(), name=f"session-{self.session_id}-resolved")
        try:
            done, _ = await asyncio.wait(
                {reader, resolved}, timeout=self.settings.incident_follow_s, return_when=asyncio.FIRST_COMPLETED
            )
            for task in done:
                task.result()  # the client left, or broke the protocol
        finally:
            for task in (reader, resolved):
                task.cancel()
            await asyncio.wait({reader, resolved})

    async def _read_loop(self) -> _Ended:
        """Take audio and control messages until ``stop`` or the client leaves, then end the audio."""
        assert self.audio is not None and self.start is not None
        idle_s = self.settings.idle_timeout_s
        # From ``ready``, then from the end of each frame's handling (time the gateway spent
        # not reading, to keep the speed limit or wait for inference, is not the client idling).
        audio_at = self._loop.time()
        while True:
            try:
                async with asyncio.timeout_at(audio_at + idle_s):
                    frame = await self._receive()
            except TimeoutError:
                raise _Fatal(
                    ErrorCode.IDLE_TIMEOUT, f"no audio for {idle_s:g} s; a session must keep sending audio"
                ) from None
            except _Disconnected:
                await self._end_audio()
                return _Ended.LEFT
            if isinstance(frame, bytes):
                if len(frame) % self.start.bytes_per_frame:
                    raise _Fatal(
                        ErrorCode.MISALIGNED_FRAME,
                        f"a {len(frame)}-byte frame is not whole samples: binary frames must be "
                        f"multiples of {self.start.bytes_per_frame} bytes ({self.start.channels} x int16)",
                    )
                windows = self.audio.push(frame)
                # Queued in the detector, which observes them in stream order with the scores.
                self.detector.hear_patterns(self.audio.take_matches())
                if self.incidents is not None:
                    self.incidents.audio_advanced(self.audio.ring)
                await self._enqueue(windows)
                await self._keep_speed_limit()
                audio_at = self._loop.time()
                continue
            message = await self._control_message(frame)
            if isinstance(message, StopMessage):
                await self._end_audio()
                return _Ended.STOPPED
            if message is not None:
                await self._answer_control(message)

    async def _end_audio(self) -> None:
        """Queue the windows of the stream's padded tail, every one, then the end marker."""
        assert self.audio is not None
        windows = self.audio.flush(self.detector.config.smoothing_windows)
        self.detector.hear_patterns(self.audio.take_matches())
        await self._enqueue(windows, wait=True)
        await self._queue.put(_END)

    async def _read_after_stop(self) -> None:
        """Read what a client sends after ``stop``: control messages only."""
        told = False
        while True:
            frame = await self._receive()
            if isinstance(frame, bytes):
                if not told:
                    told = True
                    await self._send(ErrorMessage(code=ErrorCode.UNEXPECTED_MESSAGE, message="audio after stop is ignored"))
                continue
            message = await self._control_message(frame)
            if isinstance(message, StopMessage):
                await self._send(ErrorMessage(code=ErrorCode.UNEXPECTED_MESSAGE, message="the stream has already stopped"))
            elif message is not None:
                await self._answer_control(message)

    async def _control_message(self, frame: str) -> ClientMessage | None:
        """Parse a text frame within the control rate; None when it was answered as an error."""
        if not self._control.take(self._loop.time()):
            raise _Fatal(ErrorCode.FLOOD, f"more than {CONTROL_PER_SECOND:g} control messages per second")
        try:
            return parse_client_message(frame)
        except ProtocolError as exc:
            await self._send(ErrorMessage(code=exc.code, message=str(exc)))
            return None

    async def _answer_control(self, message: ClientMessage) -> None:
        if isinstance(message, LocationMessage):
            await self._set_location(message)
        elif isinstance(message, CancelMessage | ConfirmMessage) and self.incidents is None:
            await self._send(
                ErrorMessage(
                    code=ErrorCode.UNKNOWN_INCIDENT,
                    message=f"no incident {message.incident_id!r}: this gateway does not record incidents",
                )
            )
        elif isinstance(message, CancelMessage | ConfirmMessage):
            assert self.incidents is not None
            await self.incidents.act(message)
        else:
            await self._send(
                ErrorMessage(code=ErrorCode.UNEXPECTED_MESSAGE, message="the session has already started")
            )

    async def _set_location(self, location: Location | None) -> None:
        """Keep the device's latest position for its incidents, if it consented to location."""
        if location is None:
            return
        if self.device is not None and self.device.consent_location:
            self.location = Location(lat=location.lat, lon=location.lon, accuracy_m=location.accuracy_m)
            return
        if not self._location_refused:
            self._location_refused = True
            log.warning("session %s: location sent by device %s, which has not consented to location",
                        self.session_id, self.device and self.device.id)  # fmt: skip
            await self._send(
                ErrorMessage(
                    code=ErrorCode.LOCATION_NOT_CONSENTED,
                    message="this device has not consented to location; its positions are not kept",
                )
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
                await self._report(self.detector.observe_heard_patterns())
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
            # The alarm patterns need no model: they are still heard.
            await self._report(self.detector.observe_heard_patterns(until_s=windows[-1].end_s))
            return
        self._inference_down = False
        if self._queue.empty():
            self._behind = False
        for window, result in zip(windows, results):
            self.windows_classified += 1
            events = self.detector.update(result.scores.numpy(), window.end_s)
            if self.detector.smoothed is not None:
                self._smoothed.append((window.end_s, self.detector.smoothed))
            await self._report(events)
        await self._send_scores(windows[-1], results[-1])

    async def _report(self, events: list[DetectionEvent]) -> None:
        """Send each detection, with the incident it opened or joined, and tell its countdown."""
        for event in events:
            self.detections += 1
            opened: OpenedIncident | None = None
            if self.incidents is not None:
                try:
                    opened = await self.incidents.open(event, self._timeline(event), self._incident_location())
                except TokenRevoked as revoked:
                    # The backstop of the revocation events: this and the device's other stale
                    # sessions end, and nothing is reported on a revoked token.
                    assert self.device is not None
                    self.manager.revoke(self.device.id, revoked.current_token_hash)
                    raise _Fatal(ErrorCode.TOKEN_REVOKED, REVOKED_MESSAGE) from None
            cls = event.emergency_class
            # Only the detection that opened the incident starts a countdown.
            countdown = opened.incident if opened is not None and opened.created else None
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
                    pattern=event.pattern,
                    incident_id=str(opened.incident.id) if opened is not None else None,
                    deadline_at=countdown.deadline_at if countdown is not None else None,
                    seconds_left=round(countdown.seconds_left, 3) if countdown is not None else None,
                )
            )
            if self.incidents is None:
                continue
            if opened is not None:
                await self.incidents.announce(opened)
            else:
                await self._send(
                    ErrorMessage(
                        code=ErrorCode.INCIDENT_UNAVAILABLE,
                        message="this detection could not be recorded as an incident and will not be "
                        "reported; call 112/119 directly if you need help",
                    )
                )

    def _timeline(self, event: DetectionEvent) -> list[ScorePoint]:
        """The detected class's smoothed scores over the last ``TIMELINE_S``, timed from the detection."""
        column = event.emergency_class.id
        return [ScorePoint(round(t - event.stream_time_s, 3), float(row[column])) for t, row in self._smoothed]

    def _incident_location(self) -> IncidentLocation | None:
        # None leaves the report to the registered location (labelled as such) when consented.
        if self.location is None:
            return None
        return IncidentLocation(self.location.lat, self.location.lon, self.location.accuracy_m or 0.0)

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
