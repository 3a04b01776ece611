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
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile
import soxr
from pydantic import ValidationError
from rich.console import Console, Group
from rich.live import Live
from rich.table import Table
from rich.text import Text
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidURI

from shared.incident_state import IncidentState
from shared.protocol import (
    ENCODING,
    SAMPLE_RATES,
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

FRAME_MS = 100
FALLBACK_RATE = 16_000
MIC_RATE = 16_000
STOPPED_TIMEOUT_S = 60.0
TOP_CLASSES = 5
_STATE_STYLES = {
    IncidentState.PENDING: "bold yellow", IncidentState.DISPATCHED: "bold red", IncidentState.CANCELLED: "green"
}


class InputError(Exception):
    """The audio source cannot be used (unreadable file, no microphone support)."""


class AudioSource(Protocol):
    """PCM16 little-endian frames of ``FRAME_MS`` at ``sample_rate`` x ``channels``."""

    sample_rate: int
    channels: int
    realtime: bool  # produces audio at real time by itself (a microphone)

    def frames(self) -> AsyncIterator[bytes]: ...


class FileSource:
    """A sound file, as it is when its rate is accepted, else mono resampled to 16 kHz."""

    realtime = False

    def __init__(self, path: Path) -> None:
        try:
            self._file = soundfile.SoundFile(str(path))
        except (soundfile.LibsndfileError, RuntimeError, OSError) as exc:
            raise InputError(f"cannot read {path}: {exc}") from None
        self._resample = self._file.samplerate not in SAMPLE_RATES
        self._mixdown = self._resample or self._file.channels > 2
        self.sample_rate = FALLBACK_RATE if self._resample else self._file.samplerate
        self.channels = 1 if self._mixdown else self._file.channels

    async def frames(self) -> AsyncIterator[bytes]:
        block = self._file.samplerate * FRAME_MS // 1000
        resampler = soxr.ResampleStream(self._file.samplerate, FALLBACK_RATE, 1) if self._resample else None
        with self._file:
            try:
                if not self._mixdown:
                    for chunk in self._file.blocks(blocksize=block, dtype="int16", always_2d=True):
                        yield chunk.astype("<i2").tobytes()
                    return
                for chunk in self._file.blocks(blocksize=block, dtype="float32", always_2d=True):
                    mono = chunk.mean(axis=1, dtype=np.float32)
                    yield _pcm16(resampler.resample_chunk(mono) if resampler is not None else mono)
                if resampler is not None:
                    yield _pcm16(resampler.resample_chunk(np.zeros(0, np.float32), last=True))
            except (soundfile.LibsndfileError, RuntimeError) as exc:
                raise InputError(f"cannot read {self._file.name}: {exc}") from None


class MicSource:
    """The default input device at 16 kHz mono, until ``stop`` is set."""

    sample_rate = MIC_RATE
    channels = 1
    realtime = True

    def __init__(self, stop: asyncio.Event) -> None:
        try:
            import sounddevice
        except ImportError:
            raise InputError(
                "streaming the microphone needs the 'mic' extra: pip install 'hearo[mic]' (sounddevice)"
            ) from None
        except OSError as exc:  # sounddevice is there but PortAudio is not
            raise InputError(f"no audio input available: {exc}") from None
        self._sounddevice = sounddevice
        self._stop = stop

    async def frames(self) -> AsyncIterator[bytes]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[bytes] = asyncio.Queue()

        def on_audio(data: Any, _frames: int, _time: Any, _status: Any) -> None:
            loop.call_soon_threadsafe(queue.put_nowait, bytes(data))

        try:
            stream = self._sounddevice.RawInputStream(
                samplerate=MIC_RATE, channels=1, dtype="int16", blocksize=MIC_RATE * FRAME_MS // 1000, callback=on_audio
            )
        except Exception as exc:  # PortAudioError and friends: no device, rate refused
            raise InputError(f"cannot open the microphone: {exc}") from None
        with stream:
            # A frame arrives every FRAME_MS, so ``stop`` is seen within one.
            while not self._stop.is_set():
                yield await queue.get()


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


def _pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768).astype("<i2").tobytes()


@dataclass
class IncidentStatus:
    """An incident as the client last heard of it; ``deadline`` on the local wall clock."""

    incident_id: str
    state: IncidentState
    deadline: float  # time.time() at which the report is due (the gateway's clock, skew removed)
    class_key: str | None = None
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def unresolved(self) -> bool:
        return not self.state.is_final

    def describe(self, now: float) -> str:
        """One line for people: the countdown while pending, else the outcome."""
        what = f"incident {self.incident_id[:8]}" + (f" ({self.class_key})" if self.class_key else "")
        if self.state is IncidentState.PENDING:
            left = max(0.0, self.deadline - now)
            return f"{what}: reporting in {left:.0f} s unless cancelled (hearo incident cancel {self.incident_id})"
        if self.state is IncidentState.DISPATCHING:
            return f"{what}: reporting now"
        if self.state is IncidentState.DISPATCHED:
            reached = self.detail.get("reached")
            return f"{what}: REPORTED" + (f" to {', '.join(reached)}" if reached else "")
        if self.state is IncidentState.CANCELLED:
            reason = self.detail.get("reason")
            return f"{what}: cancelled, nothing reported" + (f" ({reason})" if reason else "")
        return f"{what}: the report could not be delivered; call 112/119 directly"


@dataclass
class IncidentBoard:
    """The incidents of the stream, from ``detection`` and ``incident`` messages.

    Countdowns use ``seconds_left`` when a message has it (the database's clock); later
    deadlines are moved by the skew then measured between the gateway's clock and this one.
    """

    incidents: dict[str, IncidentStatus] = field(default_factory=dict)
    _skew_s: float = 0.0  # the gateway's deadline_at minus the local time it is due

    def on_detection(self, message: DetectionMessage, now: float) -> None:
        if message.incident_id is None:
            return
        known = self.incidents.get(message.incident_id)
        if known is not None:
            known.class_key = known.class_key or message.class_
        elif message.deadline_at is not None:
            self.incidents[message.incident_id] = IncidentStatus(
                message.incident_id, IncidentState.PENDING, self._local(message.deadline_at, message.seconds_left, now),
                message.class_,
            )  # fmt: skip

    def on_incident(self, message: IncidentMessage, now: float) -> IncidentStatus:
        status = self.incidents.get(message.incident_id)
        deadline = self._local(message.deadline_at, message.seconds_left, now)
        if status is None:
            status = self.incidents[message.incident_id] = IncidentStatus(message.incident_id, message.state, deadline)
        status.state, status.deadline = message.state, deadline
        status.class_key = status.class_key or message.detail.get("class")
        status.detail = message.detail
        return status

    def _local(self, deadline_at: datetime, seconds_left: float | None, now: float) -> float:
        if seconds_left is not None:
            self._skew_s = deadline_at.timestamp() - (now + seconds_left)
        return deadline_at.timestamp() - self._skew_s

    @property
    def unresolved(self) -> list[IncidentStatus]:
        return [status for status in self.incidents.values() if status.unresolved]


def cancel_hint(status: IncidentStatus, http_base: str) -> str:
    """How to cancel ``status`` once this client is gone."""
    due = datetime.fromtimestamp(status.deadline, UTC).astimezone().strftime("%H:%M:%S")
    when = f"the report goes out at {due}" if status.state is IncidentState.PENDING else "the report is going out"
    return (
        f"incident {status.incident_id} is still {status.state}: {when}; leaving did not cancel it.\n"
        f"  cancel it with: hearo incident cancel {status.incident_id}\n"
        f"  or: curl -X POST {http_base}/v1/incidents/{status.incident_id}/cancel "
        f"-H 'Authorization: Bearer $HEARO_TOKEN'"
    )


def http_base(ws_url: str) -> str:
    """The gateway's REST base for its stream URL: ws://host:8000/v1/stream -> http://host:8000."""
    scheme, _, rest = ws_url.partition("://")
    host = rest.split("/", 1)[0]
    return f"{'https' if scheme == 'wss' else 'http'}://{host}"


@dataclass
class _View:
    """What the live display shows, updated from the gateway's messages."""

    url: str
    ready: ReadyMessage | None = None
    scores: ScoresMessage | None = None
    detections: list[DetectionMessage] = field(default_factory=list)
    board: IncidentBoard = field(default_factory=IncidentBoard)
    notes: list[str] = field(default_factory=list)

    def render(self) -> Group:
        title = Text(f"Hear-o  {self.url}", style="bold")
        if self.ready is not None:
            title.append(f"  model {self.ready.model}", style="dim")
        if self.scores is not None:
            title.append(f"  {self.scores.stream_time_s:7.1f} s", style="cyan")
        table = Table(show_header=True, header_style="bold", expand=False)
        table.add_column("class")
        table.add_column("score", justify="right")
        table.add_column("", min_width=20)
        for entry in self.scores.top[:TOP_CLASSES] if self.scores else []:
            bar = "█" * round(entry.score * 20)
            table.add_row(entry.class_, f"{entry.score:.2f}", Text(bar, style="red" if entry.class_ != "normal" else "green"))
        parts: list[Any] = [title, table]
        for d in self.detections:
            heard = f"the {d.pattern} alarm rhythm" if d.pattern else f"confidence {d.confidence:.2f}"
            parts.append(
                Text(
                    f"DETECTED {d.class_} ({d.label_en} / {d.label_ko}) {heard} at {d.stream_time_s:.1f} s",
                    style="bold red",
                )
            )
        now = time.time()
        for status in self.board.incidents.values():
            style = _STATE_STYLES.get(status.state, "bold")
            parts.append(Text(status.describe(now), style=style))
        parts += [Text(note, style="yellow") for note in self.notes]
        return Group(*parts)


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
    session = _Session(ws, source, stop, _View(url), json_output, wait, err)
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
        view: _View,
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
