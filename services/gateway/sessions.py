"""Streaming sessions on ``/v1/stream``: handshake, audio pipeline, classification, bounds.

One ``StreamSession`` per WebSocket, its phase a ``SessionState`` (``session_state``), and
from ``ready`` on three tasks (four with spoken words):

* the reader takes frames off the socket: audio goes through the ``AudioPipeline``, and what
  it hears (windows and alarm pattern matches, in stream order) into one bounded
  ``HeardQueue``; control messages are answered (``cancel``/``confirm``: ``SessionIncidents``);
* the classifier (``StreamClassifier``) sends the queued windows to the shared inference
  client in batches, feeds scores and matches to the ``Detector`` in stream order, and
  sends ``scores``;
* with spoken words (``SessionSpoken``), the reader also queues the 16 kHz audio for the keyword
  recognisers, which run in threads of their own and give the detector what they heard;
* the reporter (``DetectionReporter``) records each detection as an incident in work of its
  own, so a slow database never holds up classification, and tells the client in detection
  order: the ``detection``, then the incident's countdown and states (``session_incidents``).

At ``stop``, and when the client leaves, the stream's end is judged: the pipeline completes
the windows that hold its last audio with silence (``AudioPipeline.hear_end``, as ``hearo
eval`` does) and the classifier takes them before the end marker. After ``stop`` the session
stays open while an incident it follows is unresolved (at most ``incident_follow_s``), then
closes 1000. A disconnect only stops the following: it never cancels an incident.

Bounds (docs/protocol.md): frame size; sessions per gateway (``SessionRegistry``); the
window queue; audio speed (``max_stream_speed`` times real time); control messages per
second. With the queue full, a client ahead of real time (a file) is made to wait (TCP slows
the sender, nothing is lost), while a live client loses the oldest windows and is told once
(``behind``). A session's failure never touches another: every error ends in an ``error``
message and a close code, or is answered and ignored.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect

from services.gateway.audio import RING_SAMPLE_RATE, AudioPipeline, Heard, Window
from services.gateway.heard_queue import END, HeardQueue
from services.gateway.novelty_gate import NoveltyGate
from services.gateway.rate_limit import TokenBucket
from services.gateway.session_classifier import StreamClassifier
from services.gateway.session_detections import DetectionReporter
from services.gateway.session_handshake import Handshake, handshake
from services.gateway.session_incidents import SessionIncidents
from services.gateway.session_location import SessionLocation
from services.gateway.session_registry import AdmittedSession, SessionRegistry
from services.gateway.session_socket import SessionSocket
from services.gateway.session_spoken import SessionSpoken
from services.gateway.session_state import ClientLeft, SessionFatal, SessionPhase, SessionState, StreamEnd
from shared.alarm_patterns import AlarmPatternDetector
from shared.db import Device
from shared.log_format import bound_log_ids
from shared.protocol import (
    CancelMessage,
    ClassInfo,
    ClientMessage,
    CloseCode,
    ConfirmMessage,
    ErrorCode,
    ErrorMessage,
    LocationMessage,
    ProtocolError,
    ReadyMessage,
    StartMessage,
    StopMessage,
    StoppedMessage,
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


async def serve_stream(registry: SessionRegistry, websocket: WebSocket) -> None:
    """Run one client's session to its end; never raises for anything the client does."""
    await websocket.accept()
    await StreamSession(registry, websocket).run()


@dataclass(frozen=True)
class _Stream:
    """What a session streams with, from ``ready`` on."""

    start: StartMessage
    device: Device
    audio: AudioPipeline  # ``audio.ring`` holds the clip audio
    queue: HeardQueue
    smoothing_windows: int
    incidents: SessionIncidents | None  # None when the gateway records no incidents
    location: SessionLocation
    spoken: SessionSpoken | None  # spoken distress words (session_spoken); None where they cannot run


class StreamSession:
    """One WebSocket client from ``start`` to close. Run with ``serve_stream``."""

    def __init__(self, registry: SessionRegistry, websocket: WebSocket) -> None:
        self.registry = registry
        self.settings = registry.settings
        self.session_id = uuid.uuid4().hex
        self.socket = SessionSocket(websocket, self.session_id, self.settings.max_frame_bytes)
        self.phase = SessionPhase()
        self._loop = asyncio.get_running_loop()
        # Set by the gateway to end the session from outside (``end``): replaced, revoked.
        self._ended: asyncio.Future[SessionFatal] = self._loop.create_future()
        self._started_at = 0.0
        self._control = TokenBucket(CONTROL_BURST, CONTROL_PER_SECOND, CONTROL_BURST, self._loop.time())

    @property
    def state(self) -> SessionState:
        return self.phase.state

    def end(self, code: ErrorCode, message: str) -> None:
        """End the session from outside (another task): the client gets a fatal ``error``
        with ``message`` and the close of ``code``. Later calls do nothing."""
        if not self._ended.done():
            self._ended.set_result(SessionFatal(code, message))

    async def run(self) -> None:
        # The ids ride on every line of the session and its tasks (they copy the context), failures too.
        with contextlib.ExitStack() as log_ids, bound_log_ids(session_id=self.session_id):
            try:
                opened = await handshake(self.socket, self.registry)
                log_ids.enter_context(bound_log_ids(device_id=str(opened.device.id)))
                admitted = AdmittedSession(self.session_id, opened.device, opened.token_hash, self.end)
                self.registry.admit(admitted)
                try:
                    await self._unless_ended(self._stream(opened, admitted))
                finally:
                    self.registry.release(admitted)
            except SessionFatal as fatal:
                await self.socket.fail(fatal.code, str(fatal))
            except (ClientLeft, WebSocketDisconnect):
                pass
            except Exception:
                log.exception("session %s failed", self.session_id)
                await self.socket.fail(ErrorCode.INTERNAL, "the gateway failed this session; reconnect")
            finally:
                self.phase.end()
                self.socket.forget()

    async def _unless_ended(self, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` to its end, unless ``end`` is called first: then stop it and raise
        the ``SessionFatal`` given there."""
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

    # --- streaming ---------------------------------------------------------------------------

    async def _stream(self, opened: Handshake, admitted: AdmittedSession) -> None:
        registry, settings, start = self.registry, self.settings, opened.start
        detector = await registry.detector_for(admitted)  # with what the device's cancels taught
        incidents = None
        if registry.incidents is not None:
            incidents = SessionIncidents(
                registry.incidents, opened.device, self.session_id, self.socket.send, token_hash=opened.token_hash
            )
        alarm_patterns = AlarmPatternDetector(RING_SAMPLE_RATE) if settings.alarm_patterns else None
        audio = AudioPipeline(
            start.sample_rate, start.channels, opened.spec, registry.hop_frames, settings.ring_buffer_s, alarm_patterns
        )
        queue = HeardQueue(settings.window_queue_size)
        location = SessionLocation(opened.device, self.session_id, self._warn)
        spoken = registry.spoken_for(admitted, detector)  # off the event loop; the detector's spoken evidence
        stream = _Stream(start, opened.device, audio, queue, detector.config.smoothing_windows, incidents, location, spoken)
        reporter = DetectionReporter(self.socket.send, incidents, functools.partial(registry.revoke, opened.device.id))
        # Scores: ``scores_per_second`` on average (the client may ask for fewer); a second token
        # absorbs the jitter of windows that arrive exactly at that rate, so none is skipped for
        # arriving a moment early.
        rate = settings.scores_per_second
        if start.scores_per_second is not None:
            rate = min(rate, start.scores_per_second)
        scores = TokenBucket(2.0, rate, 1.0, self._loop.time()) if rate > 0 else None
        classifier = StreamClassifier(
            self.session_id, registry.classifier, detector, stream.queue, reporter, self.socket.send,
            location.for_incident, scores, NoveltyGate.for_detector(settings.novelty_gate, opened.spec, detector.config),
            registry.profile_for(admitted, audio.ring), spoken,  # the daycare profile's rule beside the detector; spoken words
        )  # fmt: skip
        try:
            await self._streaming(stream, opened, classifier, reporter)
        finally:
            if spoken is not None:
                await spoken.close()
            if incidents is not None:
                incidents.close(audio.ring)
            log.info("session %s closed: %d windows classified, %d detections", self.session_id,
                     classifier.windows_classified, reporter.detections)  # fmt: skip

    async def _streaming(
        self, stream: _Stream, opened: Handshake, classifier: StreamClassifier, reporter: DetectionReporter
    ) -> None:
        self.phase.advance(SessionState.STREAMING)
        await self.socket.send(
            ReadyMessage(
                session_id=self.session_id,
                window_s=opened.spec.window_seconds,
                hop_s=self.registry.detector_config.hop_s,
                model=opened.model,
                classes=[ClassInfo(id=c.id, key=c.key, label_en=c.label_en, label_ko=c.label_ko) for c in CLASSES],
                max_frame_bytes=self.settings.max_frame_bytes,
            )
        )
        self._started_at = self._loop.time()
        log.info("session %s open: %d Hz x%d", self.session_id, stream.start.sample_rate, stream.start.channels)
        await stream.location.heard(stream.start.location)

        name = f"session-{self.session_id}"
        reading = asyncio.create_task(self._read_loop(stream), name=f"{name}-reader")
        classifying = asyncio.create_task(classifier.run(), name=f"{name}-classifier")
        reporting = reporter.start(name=f"{name}-reporter")
        tasks = {reading, classifying, reporting}
        try:
            # The reader returns only after ``stop`` or the client leaving (having queued the
            # end), the classifier at the end once the reporter has told every detection;
            # anything else raises.
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            for task in done:
                task.result()
        finally:
            for task in tasks:
                task.cancel()
            # wait, not gather: a cancellation of this task must surface as itself.
            await asyncio.wait(tasks)
        if reading.result() is StreamEnd.LEFT:
            return  # the tail is judged; nobody is there to tell
        await self.socket.send(
            StoppedMessage(
                stream_time_s=round(stream.audio.stream_time_s, 3),
                windows=classifier.windows_classified,
                detections=reporter.detections,
            )
        )
        if stream.incidents is not None:
            stream.incidents.audio_ended(stream.audio.ring)
            await self._follow_after_stop(stream, stream.incidents)
        await self.socket.close(CloseCode.NORMAL, "stopped")

    async def _follow_after_stop(self, stream: _Stream, incidents: SessionIncidents) -> None:
        """Stay open while an incident is unresolved, so the client sees how it ends."""
        if not incidents.unresolved:
            return
        self.phase.advance(SessionState.FOLLOWING)
        reader = asyncio.create_task(self._read_after_stop(stream), name=f"session-{self.session_id}-reader")
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

    async def _read_loop(self, stream: _Stream) -> StreamEnd:
        """Take audio and control messages until ``stop`` or the client leaves, then end the audio."""
        start, idle_s = stream.start, self.settings.idle_timeout_s
        # From ``ready``, then from the end of each frame's handling (time the gateway spent
        # not reading, to keep the speed limit or wait for inference, is not the client idling).
        audio_at = self._loop.time()
        while True:
            try:
                async with asyncio.timeout_at(audio_at + idle_s):
                    frame = await self.socket.receive()
            except TimeoutError:
                raise SessionFatal(
                    ErrorCode.IDLE_TIMEOUT, f"no audio for {idle_s:g} s; a session must keep sending audio"
                ) from None
            except ClientLeft:
                await self._end_audio(stream)
                return StreamEnd.LEFT
            if isinstance(frame, bytes):
                if len(frame) % start.bytes_per_frame:
                    raise SessionFatal(
                        ErrorCode.MISALIGNED_FRAME,
                        f"a {len(frame)}-byte frame is not whole samples: binary frames must be "
                        f"multiples of {start.bytes_per_frame} bytes ({start.channels} x int16)",
                    )
                heard = stream.audio.hear(frame)
                if stream.incidents is not None:
                    stream.incidents.audio_advanced(stream.audio.ring)
                if stream.spoken is not None:
                    await stream.spoken.heard(stream.audio.ring, self._ahead_of_real_time(stream))
                await self._enqueue(stream, heard)
                await self._keep_speed_limit(stream)
                audio_at = self._loop.time()
                continue
            message = await self._control_message(frame)
            if isinstance(message, StopMessage):
                await self._end_audio(stream)
                return StreamEnd.STOPPED
            if message is not None:
                await self._answer_control(stream, message)

    async def _end_audio(self, stream: _Stream) -> None:
        """Queue what the stream's padded tail completes, every window, then the end marker."""
        self.phase.advance(SessionState.ENDING)
        tail = stream.audio.hear_end(stream.smoothing_windows)
        if stream.spoken is not None:  # its last phrases before the detector's last windows
            await stream.spoken.heard(stream.audio.ring, True)
            await stream.spoken.finish()
        for item in tail:
            await stream.queue.put(item)
        await stream.queue.put(END)

    async def _read_after_stop(self, stream: _Stream) -> None:
        """Read what a client sends after ``stop``: control messages only."""
        told = False
        while True:
            frame = await self.socket.receive()
            if isinstance(frame, bytes):
                if not told:
                    told = True
                    await self._warn(ErrorCode.UNEXPECTED_MESSAGE, "audio after stop is ignored")
                continue
            message = await self._control_message(frame)
            if isinstance(message, StopMessage):
                await self._warn(ErrorCode.UNEXPECTED_MESSAGE, "the stream has already stopped")
            elif message is not None:
                await self._answer_control(stream, message)

    async def _control_message(self, frame: str) -> ClientMessage | None:
        """Parse a text frame within the control rate; None when it was answered as an error."""
        if not self._control.take(self._loop.time()):
            raise SessionFatal(ErrorCode.FLOOD, f"more than {CONTROL_PER_SECOND:g} control messages per second")
        try:
            return parse_client_message(frame)
        except ProtocolError as exc:
            await self.socket.send(ErrorMessage(code=exc.code, message=str(exc)))
            return None

    async def _answer_control(self, stream: _Stream, message: ClientMessage) -> None:
        if isinstance(message, LocationMessage):
            await stream.location.heard(message)
        elif isinstance(message, CancelMessage | ConfirmMessage):
            if stream.incidents is not None:
                await stream.incidents.act(message)
                return
            await self._warn(
                ErrorCode.UNKNOWN_INCIDENT, f"no incident {message.incident_id!r}: this gateway does not record incidents"
            )
        else:
            await self._warn(ErrorCode.UNEXPECTED_MESSAGE, "the session has already started")

    async def _warn(self, code: ErrorCode, message: str) -> None:
        await self.socket.send(ErrorMessage(code=code, message=message))

    async def _enqueue(self, stream: _Stream, heard: list[Heard]) -> None:
        """Queue what was heard; when full of windows, wait (recorded audio) or drop the oldest (live)."""
        for item in heard:
            if not isinstance(item, Window) or self._ahead_of_real_time(stream):
                await stream.queue.put(item)
            elif stream.queue.put_dropping_oldest(item):
                await self._warn(
                    ErrorCode.BEHIND, "classification fell behind real time; the oldest audio windows were skipped"
                )

    def _ahead_of_real_time(self, stream: _Stream) -> bool:
        return stream.audio.stream_time_s > self._loop.time() - self._started_at + AHEAD_SLACK_S

    async def _keep_speed_limit(self, stream: _Stream) -> None:
        """Stop reading while the client is over ``max_stream_speed``: TCP then slows it down."""
        allowed_at = self._started_at + (stream.audio.stream_time_s - SPEED_BURST_S) / self.settings.max_stream_speed
        delay = allowed_at - self._loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
