"""`hearo stream`: send a recording or the microphone to the gateway and show what it hears.

A file (anything soundfile reads: WAV, FLAC, OGG) goes at real time by default, in 100 ms
frames, or with ``--fast`` as fast as the gateway reads it (the gateway's backpressure, not
the client, sets the pace). Its rate is sent as is when the protocol accepts it, otherwise
it is resampled here to 16 kHz with soxr. ``--mic`` streams the default input device at
16 kHz (needs the ``mic`` extra: sounddevice) until Ctrl-C. Either way the stream ends with
``stop`` and the gateway's ``stopped``, so every detection arrives before the exit.

A detection opens an incident: the display counts down to the report and shows each
change of state. When the audio ends with an incident unresolved the client stays
connected until it is cancelled, reported or failed (``wait``; the gateway closes then),
unless ``wait`` is off. Ctrl-C during a countdown leaves at once, asking nothing: leaving
never cancels a report, so the client prints how to cancel it (``hearo incident cancel``
or the REST call). A first Ctrl-C with no incident pending ends the audio gracefully.

Exit codes: 0 done, 1 local input problem (file, microphone), 2 authentication refused,
3 the gateway refused the stream or broke the protocol, 4 no connection or it was lost.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import time
from pathlib import Path

from pydantic import ValidationError
from rich.console import Console
from rich.live import Live
from rich.text import Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from hearo.audio_sources import FRAME_MS, AudioSource, FileSource, InputError, MicSource
from hearo.incident_board import cancel_hint, http_base
from hearo.stream_view import StreamView
from shared.protocol import (
    ENCODING,
    CloseCode,
    DetectionMessage,
    ErrorMessage,
    IncidentMessage,
    ReadyMessage,
    ScoresMessage,
    StartMessage,
    StopMessage,
    StoppedMessage,
    parse_server_message,
)

EXIT_OK = 0
EXIT_INPUT = 1
EXIT_AUTH = 2
EXIT_PROTOCOL = 3
EXIT_CONNECTION = 4

STOPPED_TIMEOUT_S = 60.0


def _error(err: Console, message: str) -> None:
    err.print(Text.assemble(("error: ", "bold red"), message))


def _parse_failure(raw: str, exc: ValueError) -> tuple[str, str]:
    """(kind, reason) for a gateway message that does not parse: kind is its ``type``, or what
    it is when it has none (reports are made once per kind on stderr)."""
    try:
        data = json.loads(raw)
    except ValueError:
        kind = "not JSON"
    else:
        kind = data["type"] if isinstance(data, dict) and isinstance(data.get("type"), str) else "no type"
    if isinstance(exc, ValidationError):
        reason = "; ".join(
            f"{'.'.join(map(str, error['loc']))}: {error['msg']}" if error["loc"] else error["msg"]
            for error in exc.errors()[:3]
        )
    else:
        reason = str(exc)
    return kind, reason


def run_stream(
    source: Path | None, mic: bool, url: str, token: str, fast: bool, json_output: bool, wait: bool = True
) -> int:
    """Stream ``source`` (or the microphone when ``mic``) to the gateway at ``url``; the exit code.

    ``json_output`` prints every gateway message as one JSON line on stdout (for scripts)
    instead of the live display; a message this client cannot parse is skipped, its line
    followed by ``{"type": "client_warning", "code": "unreadable_message", ...}``. With
    ``wait`` the client stays connected after the audio until every incident of the stream
    is resolved (the gateway closes then); without, it leaves at ``stopped``. Problems, and
    how to cancel an incident left pending, are explained on stderr.
    """
    err = Console(stderr=True)
    try:
        return asyncio.run(_stream(source, mic, url, token, fast, json_output, wait, err))
    except InputError as exc:
        _error(err, str(exc))
        return EXIT_INPUT


async def _stream(
    path: Path | None, mic: bool, url: str, token: str, fast: bool, json_output: bool, wait: bool, err: Console
) -> int:
    stop = asyncio.Event()
    if mic:
        source: AudioSource = MicSource(stop)
    elif path is not None:
        source = FileSource(path)
    else:
        raise InputError("give a file to stream, or --mic")
    try:
        # No compression: PCM barely compresses and deflate would cost CPU on both ends.
        ws = await connect(url, open_timeout=10, max_size=1 << 20, compression=None)
    except (OSError, TimeoutError, InvalidHandshake, InvalidURI) as exc:
        _error(err, f"cannot connect to {url}: {exc}")
        return EXIT_CONNECTION
    session = _Session(ws, source, stop, StreamView(url), json_output, wait, err)
    loop = asyncio.get_running_loop()
    with contextlib.suppress(NotImplementedError, RuntimeError):  # no signal handlers off the main thread
        loop.add_signal_handler(signal.SIGINT, session.interrupt)
    start = StartMessage(
        token=token, encoding=ENCODING, sample_rate=source.sample_rate, channels=source.channels, frame_ms=FRAME_MS
    )
    try:
        async with ws:
            await session.run(start, pace=not (fast or source.realtime))
    except TimeoutError:
        _error(err, f"no answer to stop from the gateway within {STOPPED_TIMEOUT_S:g} s")
        return EXIT_CONNECTION
    except ConnectionClosed:
        pass  # the close code says what happened
    finally:
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.remove_signal_handler(signal.SIGINT)
    for status in session.view.board.unresolved:
        err.print(Text(cancel_hint(status, http_base(url)), style="yellow"), soft_wrap=True)  # copyable
    return session.exit_code(err)


class _Session:
    """One stream on an open connection: audio out, messages in, and how it ended."""

    def __init__(
        self,
        ws: ClientConnection,
        source: AudioSource,
        stop: asyncio.Event,
        view: StreamView,
        json_output: bool,
        wait: bool = True,
        err: Console | None = None,
    ) -> None:
        self.ws = ws
        self.source = source
        self.stop = stop
        self.view = view
        self.json_output = json_output
        self.wait = wait
        self.err = err or Console(stderr=True)
        self.unreadable_kinds: set[str] = set()  # kinds of unparsable messages already reported on stderr
        # Started at ``ready``, so a refused stream prints only its error; rendered at each
        # refresh, so the countdown runs between messages.
        self.live = None if json_output else Live(console=Console(), refresh_per_second=4, get_renderable=view.render)
        self.ready = asyncio.Event()
        self.stopped_event = asyncio.Event()
        self.leave = asyncio.Event()  # close now, whatever is pending
        self.error: ErrorMessage | None = None

    @property
    def stopped(self) -> bool:
        return self.stopped_event.is_set()

    def interrupt(self) -> None:
        """Ctrl-C: end the audio gracefully, or leave at once when an incident is counting
        down or the audio is already over (leaving never cancels anything)."""
        if self.stop.is_set() or self.view.board.unresolved:
            self.leave.set()
        self.stop.set()

    async def run(self, start: StartMessage, pace: bool) -> None:
        """``start``, then the audio and ``stop`` while the gateway's messages are shown, until it
        closes (after ``stopped``, and with ``wait`` once the stream's incidents are resolved)."""
        await self.ws.send(start.to_json())
        sender = asyncio.create_task(self._send_audio(pace))
        receiver = asyncio.create_task(self._receive())
        leaving = asyncio.create_task(self.leave.wait())
        try:
            done, _ = await asyncio.wait({sender, receiver, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if sender in done and not isinstance(sender.exception(), ConnectionClosed | None):
                sender.result()  # the audio source failed: raise its error
            if not (receiver.done() or self.leave.is_set()):
                # Once ``stop`` is out the gateway classifies what it holds (a bounded queue):
                # seconds, so a gateway that never answers does not hang us.
                stopped = asyncio.create_task(self.stopped_event.wait())
                try:
                    done, _ = await asyncio.wait(
                        {stopped, receiver, leaving}, timeout=STOPPED_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED
                    )
                finally:
                    stopped.cancel()
                if not done:
                    raise TimeoutError
            if self.wait and not (receiver.done() or self.leave.is_set()):
                # The gateway closes once the stream's incidents are resolved.
                await asyncio.wait({receiver, leaving}, return_when=asyncio.FIRST_COMPLETED)
            if not receiver.done():
                await self.ws.close(1000, "client done")  # leaving is never a cancel
        finally:
            for task in (sender, receiver, leaving):
                task.cancel()
            await asyncio.wait({sender, receiver, leaving})
            if self.live is not None:
                self.live.stop()

    async def _send_audio(self, pace: bool) -> None:
        """After ``ready``: every frame (at real time when ``pace``), then ``stop``."""
        await self.ready.wait()
        loop = asyncio.get_running_loop()
        bytes_per_second = self.source.sample_rate * self.source.channels * 2
        began, sent = loop.time(), 0
        async for frame in self.source.frames():
            if self.stop.is_set():
                break
            # ``send`` waits while the socket's buffer is full: that is --fast's backpressure.
            await self.ws.send(frame)
            sent += len(frame)
            if pace:
                await asyncio.sleep(max(0.0, began + sent / bytes_per_second - loop.time()))
        await self.ws.send(StopMessage().to_json())

    async def _receive(self) -> None:
        """Handle the gateway's messages until it closes (after ``stopped`` or a fatal error)."""
        view = self.view
        try:
            async for raw in self.ws:
                if isinstance(raw, bytes):
                    continue
                if self.json_output:
                    print(raw, flush=True)
                try:
                    message = parse_server_message(raw)
                except ValueError as exc:
                    self._report_unreadable(raw, exc)
                    continue
                if isinstance(message, ReadyMessage):
                    view.ready = message
                    self.ready.set()
                    if self.live is not None:
                        self.live.start()
                elif isinstance(message, ScoresMessage):
                    view.scores = message
                elif isinstance(message, DetectionMessage):
                    view.detections.append(message)
                    view.board.on_detection(message, time.time())
                elif isinstance(message, IncidentMessage):
                    status = view.board.on_incident(message, time.time())
                    answer = message.detail.get("message")
                    if answer:
                        view.notes.append(f"incident {status.incident_id[:8]}: {answer}")
                elif isinstance(message, StoppedMessage):
                    self.stopped_event.set()
                    view.notes.append(f"stopped: {message.stream_time_s:.1f} s, {message.windows} windows, "
                                      f"{message.detections} detections")  # fmt: skip
                    if self.wait and view.board.unresolved:
                        view.notes.append("waiting for the incident's outcome; Ctrl-C leaves (it does not cancel)")
                elif isinstance(message, ErrorMessage):
                    if message.fatal:
                        self.error = message
                    else:
                        view.notes.append(f"warning ({message.code.value}): {message.message}")
        except ConnectionClosed:
            pass

    def _report_unreadable(self, raw: str, exc: ValueError) -> None:
        """A gateway message this client cannot parse (a newer gateway, or a broken one) is
        skipped, not fatal: said on stderr once per kind and, with ``json_output``, as a
        ``client_warning`` JSON line after the message's own line every time."""
        kind, reason = _parse_failure(raw, exc)
        if self.json_output:
            warning = {"type": "client_warning", "code": "unreadable_message", "kind": kind, "message": reason}
            print(json.dumps(warning, ensure_ascii=False), flush=True)
        if kind not in self.unreadable_kinds:
            self.unreadable_kinds.add(kind)
            self.err.print(
                Text.assemble(
                    ("warning: ", "bold yellow"),
                    f"skipped a gateway message this client cannot read ({kind}): {reason}. "
                    "Further ones of this kind are not repeated here.",
                ),
                soft_wrap=True,
            )

    def exit_code(self, err: Console) -> int:
        """The process exit code for how the stream ended, explaining any failure on ``err``."""
        code = self.ws.close_code
        if self.stopped or (self.leave.is_set() and self.error is None):
            return EXIT_OK  # done, or the person chose to leave
        if self.error is not None:
            _error(err, f"the gateway refused the stream ({self.error.code.value}, close {code}): {self.error.message}")
            return EXIT_AUTH if code == CloseCode.UNAUTHORIZED else EXIT_PROTOCOL
        if code == CloseCode.UNAUTHORIZED:
            _error(err, "the gateway refused the device token")
            return EXIT_AUTH
        if code is None or code in (1001, 1006):
            _error(err, f"the connection to the gateway was lost (close {code})")
            return EXIT_CONNECTION
        _error(err, f"the gateway closed the stream unexpectedly (close {code} {self.ws.close_reason!r})")
        return EXIT_PROTOCOL
