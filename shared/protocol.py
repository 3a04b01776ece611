"""Client <-> gateway streaming protocol on the ``/v1/stream`` WebSocket.

Text frames carry JSON control messages, each an object with a ``type``; binary frames carry
PCM audio (little-endian signed 16-bit, interleaved when stereo). ``docs/protocol.md`` is the
prose version of this module; the two change together. The gateway, the CLI client and the
browser page all use these models, so a message has one definition.

Client -> gateway: ``start`` (first, exactly once), ``location``, ``cancel``, ``confirm``,
``stop``. Gateway -> client: ``ready``, ``scores``, ``detection``, ``incident``, ``stopped``,
``error``.

Parsing a client message raises::

    ProtocolError(ValueError)   ``code`` is the ErrorCode to answer with

Unknown fields are ignored (a newer client can talk to an older gateway); an unknown
``type``, invalid JSON or an invalid field value is an error.
"""

from __future__ import annotations

import enum
import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError, field_validator

from shared.incident_state import CancelKind, EvidenceMark, IncidentKind, IncidentState

ENCODING = "pcm_s16le"
SAMPLE_RATES: tuple[int, ...] = (8_000, 16_000, 22_050, 44_100, 48_000)
CHANNELS: tuple[int, ...] = (1, 2)
BYTES_PER_SAMPLE = 2
MIN_FRAME_MS = 10
MAX_FRAME_MS = 1_000


class ErrorCode(str, enum.Enum):
    """``code`` of an ``error`` message. Fatal ones are followed by the close in CLOSE_CODES."""

    UNAUTHORIZED = "unauthorized"  # missing, unknown or revoked device token
    START_REQUIRED = "start_required"  # audio or a control message before ``start``
    INVALID_JSON = "invalid_json"  # a text frame that is not a JSON object
    UNKNOWN_TYPE = "unknown_type"  # a JSON object whose ``type`` is not a client message
    INVALID_MESSAGE = "invalid_message"  # a known type with missing or invalid fields
    UNSUPPORTED_FORMAT = "unsupported_format"  # start: encoding, rate or channels not accepted
    UNEXPECTED_MESSAGE = "unexpected_message"  # a valid message at the wrong time (a 2nd start)
    MISALIGNED_FRAME = "misaligned_frame"  # a binary frame that is not whole sample frames
    FRAME_TOO_LARGE = "frame_too_large"  # a frame over ``ready.max_frame_bytes``
    START_TIMEOUT = "start_timeout"  # no ``start`` within the gateway's start timeout
    TOO_MANY_SESSIONS = "too_many_sessions"  # the gateway is at its session limit
    SESSION_REPLACED = "session_replaced"  # a newer session of the device took this one's place
    IDLE_TIMEOUT = "idle_timeout"  # no audio for the gateway's idle timeout
    TOKEN_REVOKED = "token_revoked"  # the session's token was rotated or its device deleted
    FLOOD = "flood"  # control messages far faster than any client needs
    BEHIND = "behind"  # warning: inference fell behind, the oldest windows were dropped
    INFERENCE_UNAVAILABLE = "inference_unavailable"  # the model service cannot be reached
    UNKNOWN_INCIDENT = "unknown_incident"  # cancel/confirm of no incident of this device
    INCIDENT_UNAVAILABLE = "incident_unavailable"  # a detection could not be recorded as an incident
    LOCATION_NOT_CONSENTED = "location_not_consented"  # positions of this device are not kept
    INTERNAL = "internal"  # a gateway fault; the session ends


class CloseCode(enum.IntEnum):
    """WebSocket close codes the gateway uses. 1000 follows ``stopped``; the rest follow a
    fatal ``error``. 4xxx codes mirror the HTTP statuses they resemble."""

    NORMAL = 1000
    INTERNAL_ERROR = 1011
    UNAUTHORIZED = 4001
    BAD_REQUEST = 4400
    START_TIMEOUT = 4408
    IDLE_TIMEOUT = 4408  # the same close as START_TIMEOUT: the client did not send in time
    SESSION_REPLACED = 4409
    FRAME_TOO_LARGE = 4413
    TOO_MANY_REQUESTS = 4429
    INFERENCE_UNAVAILABLE = 4503


CLOSE_CODES: dict[ErrorCode, CloseCode] = {
    ErrorCode.UNAUTHORIZED: CloseCode.UNAUTHORIZED,
    ErrorCode.START_REQUIRED: CloseCode.BAD_REQUEST,
    ErrorCode.INVALID_JSON: CloseCode.BAD_REQUEST,
    ErrorCode.UNKNOWN_TYPE: CloseCode.BAD_REQUEST,
    ErrorCode.INVALID_MESSAGE: CloseCode.BAD_REQUEST,
    ErrorCode.UNSUPPORTED_FORMAT: CloseCode.BAD_REQUEST,
    ErrorCode.UNEXPECTED_MESSAGE: CloseCode.BAD_REQUEST,
    ErrorCode.MISALIGNED_FRAME: CloseCode.BAD_REQUEST,
    ErrorCode.FRAME_TOO_LARGE: CloseCode.FRAME_TOO_LARGE,
    ErrorCode.START_TIMEOUT: CloseCode.START_TIMEOUT,
    ErrorCode.TOO_MANY_SESSIONS: CloseCode.TOO_MANY_REQUESTS,
    ErrorCode.SESSION_REPLACED: CloseCode.SESSION_REPLACED,
    ErrorCode.IDLE_TIMEOUT: CloseCode.IDLE_TIMEOUT,
    ErrorCode.TOKEN_REVOKED: CloseCode.UNAUTHORIZED,
    ErrorCode.FLOOD: CloseCode.TOO_MANY_REQUESTS,
    ErrorCode.INFERENCE_UNAVAILABLE: CloseCode.INFERENCE_UNAVAILABLE,
    ErrorCode.INTERNAL: CloseCode.INTERNAL_ERROR,
}
"""The close that follows each error code when it is fatal."""


class ProtocolError(ValueError):
    """A client message that breaks the protocol; ``code`` is the error to answer with."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class Message(BaseModel):
    """Base of every protocol message: frozen, unknown fields ignored, ``to_json`` for the wire."""

    model_config = ConfigDict(extra="ignore", frozen=True, populate_by_name=True)

    def to_json(self) -> str:
        """The wire form: compact JSON, aliases (``class``) applied, UTF-8 labels kept."""
        return self.model_dump_json(by_alias=True, exclude_none=True)


# --- client -> gateway -----------------------------------------------------------------------


class Location(Message):
    """A WGS 84 position; ``accuracy_m`` is the radius of 68 % confidence, as browsers give it."""

    lat: float = Field(ge=-90.0, le=90.0)
    lon: float = Field(ge=-180.0, le=180.0)
    accuracy_m: float | None = Field(default=None, ge=0.0)


class StartMessage(Message):
    """Opens the session. ``token`` may instead come as an ``Authorization: Bearer`` header.

    ``frame_ms`` is the client's intended frame duration, advisory except that its frames must
    fit the gateway's ``max_frame_bytes``. ``scores_per_second`` asks for fewer ``scores``
    messages than the gateway's rate (a page that draws once a second needs one); never more.
    """

    type: Literal["start"] = "start"
    token: str | None = Field(default=None, max_length=512)
    encoding: str
    sample_rate: int
    channels: int
    frame_ms: int | None = Field(default=None, ge=MIN_FRAME_MS, le=MAX_FRAME_MS)
    location: Location | None = None
    scores_per_second: float | None = Field(default=None, ge=0.0, le=100.0)

    @field_validator("encoding")
    @classmethod
    def _known_encoding(cls, value: str) -> str:
        if value != ENCODING:
            raise ValueError(f"unsupported encoding {value!r}; accepted: {ENCODING!r}")
        return value

    @field_validator("sample_rate")
    @classmethod
    def _known_rate(cls, value: int) -> int:
        if value not in SAMPLE_RATES:
            accepted = ", ".join(str(r) for r in SAMPLE_RATES)
            raise ValueError(f"unsupported sample rate {value}; accepted: {accepted}")
        return value

    @field_validator("channels")
    @classmethod
    def _known_channels(cls, value: int) -> int:
        if value not in CHANNELS:
            raise ValueError(f"unsupported channel count {value}; accepted: 1 or 2")
        return value

    @property
    def bytes_per_frame(self) -> int:
        """Bytes of one sample frame (all channels): binary messages are multiples of this."""
        return BYTES_PER_SAMPLE * self.channels


class LocationMessage(Location):
    """The device moved; replaces the session's location."""

    type: Literal["location"] = "location"


class CancelMessage(Message):
    """The person cancels the incident (any pending one of this device); ``kind`` says why:
    ``false_alarm`` (similar false alarms teach the home's threshold, docs/evidence.md),
    ``handled`` or ``not_sure``."""

    type: Literal["cancel"] = "cancel"
    incident_id: str = Field(min_length=1, max_length=64)
    # No NUL: PostgreSQL cannot store it (the cancel would fail as incident_unavailable).
    reason: str | None = Field(default=None, max_length=500, pattern=r"^[^\x00]*$")
    kind: CancelKind | None = None
    # The owner's code, when they typed one; never logged or echoed. Their duress code makes
    # it a cancel under duress, answered exactly as any other (docs/evidence.md).
    code: str | None = Field(default=None, max_length=200, pattern=r"^[^\x00]*$")


class ConfirmMessage(Message):
    """The person asks for the report to go now (SOS)."""

    type: Literal["confirm"] = "confirm"
    incident_id: str = Field(min_length=1, max_length=64)


class StopMessage(Message):
    """No more audio: the gateway classifies everything received and answers ``stopped``; it
    closes 1000 once the session's incidents are resolved (at once when there are none)."""

    type: Literal["stop"] = "stop"


ClientMessage = Annotated[
    StartMessage | LocationMessage | CancelMessage | ConfirmMessage | StopMessage,
    Field(discriminator="type"),
]
_CLIENT_MESSAGE: TypeAdapter[ClientMessage] = TypeAdapter(ClientMessage)
CLIENT_TYPES: tuple[str, ...] = ("start", "location", "cancel", "confirm", "stop")
_FORMAT_FIELDS = frozenset({"encoding", "sample_rate", "channels"})


def parse_client_message(text: str | bytes) -> ClientMessage:
    """Parse one client text frame; raises ProtocolError naming the code to answer with."""
    try:
        data = json.loads(text)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ProtocolError(ErrorCode.INVALID_JSON, f"not valid JSON: {exc}") from None
    except RecursionError:  # arrays or objects nested thousands deep: json recurses per level
        raise ProtocolError(ErrorCode.INVALID_JSON, "not valid JSON: nested too deeply") from None
    if not isinstance(data, dict):
        raise ProtocolError(ErrorCode.INVALID_JSON, "a control message must be a JSON object")
    kind = data.get("type")
    if kind not in CLIENT_TYPES:
        raise ProtocolError(
            ErrorCode.UNKNOWN_TYPE,
            f"unknown message type {kind!r}; expected one of: {', '.join(CLIENT_TYPES)}",
        )
    try:
        return _CLIENT_MESSAGE.validate_python(data)
    except ValidationError as exc:
        errors = exc.errors(include_url=False)
        described = "; ".join(
            f"{'.'.join(str(p) for p in err['loc'][1:]) or kind}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in errors
        )
        # A present but unaccepted encoding/rate/channels gets its own code: the client's
        # audio source, not its message, is what has to change.
        unsupported = all(
            err["type"] == "value_error" and err["loc"][1:2] and err["loc"][1] in _FORMAT_FIELDS
            for err in errors
        )
        code = (
            ErrorCode.UNSUPPORTED_FORMAT
            if kind == "start" and unsupported
            else ErrorCode.INVALID_MESSAGE
        )
        raise ProtocolError(code, f"invalid {kind} message: {described}") from None


# --- gateway -> client -----------------------------------------------------------------------


class ClassInfo(Message):
    """One row of the taxonomy as the client shows it."""

    id: int
    key: str
    label_en: str
    label_ko: str


class ReadyMessage(Message):
    """The session is open: send binary frames of at most ``max_frame_bytes``."""

    type: Literal["ready"] = "ready"
    session_id: str
    window_s: float
    hop_s: float
    model: str
    classes: list[ClassInfo]
    max_frame_bytes: int


class ClassScore(Message):
    class_: str = Field(validation_alias="class", serialization_alias="class")
    class_id: int
    score: float


class TagScore(Message):
    """A fine-grained tag from the model's own vocabulary (AudioSet display names)."""

    label: str
    score: float


class ScoresMessage(Message):
    """The latest window's class scores (before the detector's smoothing), every class, best
    first; throttled to the gateway's ``scores_per_second``.

    ``stream_time_s`` is the window's end in seconds of audio since ``start``.
    """

    type: Literal["scores"] = "scores"
    stream_time_s: float
    top: list[ClassScore]
    tags: list[TagScore] | None = None
    # The distress phrases heard in the last 20 s ("heard: '살려주세요' ×2"; docs/spoken.md), if any.
    spoken: str | None = None


class DetectionMessage(Message):
    """An emergency sound was detected: one per event (see the gateway's detector).

    ``incident_id`` is the incident the detection belongs to. When the detection opened it,
    ``deadline_at`` and ``seconds_left`` (both from the database clock) start the countdown
    to the report; a detection added to an incident already open carries neither (no new
    countdown). ``pattern`` names the standard alarm pattern that was heard when the
    pattern detector, not the model's scores, made the detection; ``spoken`` what was heard
    ("heard: '살려주세요' ×2") when spoken distress words made it (docs/spoken.md). ``kind`` is what the
    incident it opens is: ``emergency`` for a class's detection, ``child_safety`` for the
    daycare profile's rule (docs/daycare.md).
    """

    type: Literal["detection"] = "detection"
    detection_id: str
    class_: str = Field(validation_alias="class", serialization_alias="class")
    class_id: int
    label_en: str
    label_ko: str
    confidence: float
    stream_time_s: float
    detected_at: datetime
    pattern: str | None = None
    spoken: str | None = None
    incident_id: str | None = None
    deadline_at: datetime | None = None
    seconds_left: float | None = None
    kind: IncidentKind = IncidentKind.EMERGENCY


class IncidentMessage(Message):
    """Where an incident stands: sent when it opens, when its state or deadline changes, and
    in answer to ``cancel`` and ``confirm``.

    ``seconds_left`` (database clock) comes with pending states the gateway has just read;
    otherwise count down to ``deadline_at``. ``detail`` says why: ``outcome`` and
    ``message`` answer a cancel or confirm, ``evidence`` marks a detection added to the
    incident, ``reason`` is a cancel's reason, ``reached``/``missed`` list agencies,
    ``shortened`` says why growing evidence moved the deadline earlier. ``evidence`` is the
    countdown's evidence mark (``growing``, ``steady``, ``faded``; docs/evidence.md), when known.
    ``corroboration`` is what the household's other devices heard (docs/evidence.md): sent once
    judged (``detail.event`` ``corroboration``), a few seconds after the detection, and with
    every later message read afresh; ``only_this_device`` true asks the client to say so.
    ``kind`` is the incident's (``emergency``, ``child_safety``, ...) in messages from a fresh
    read (opened, evidence, the answers to cancel and confirm); a pushed update leaves it out.
    """

    type: Literal["incident"] = "incident"
    incident_id: str
    state: IncidentState
    deadline_at: datetime
    seconds_left: float | None = None
    evidence: EvidenceMark | None = None
    detail: dict[str, Any] = Field(default_factory=dict)
    corroboration: dict[str, Any] | None = None
    kind: IncidentKind | None = None


class StoppedMessage(Message):
    """Answer to ``stop``: every window was classified. The close (1000) follows, once the
    session's incidents are resolved; ``incident`` messages may come before it."""

    type: Literal["stopped"] = "stopped"
    stream_time_s: float
    windows: int
    detections: int


class ErrorMessage(Message):
    """Something went wrong. When ``fatal`` the gateway closes with ``CLOSE_CODES[code]``."""

    type: Literal["error"] = "error"
    code: ErrorCode
    message: str
    fatal: bool = False


ServerMessage = Annotated[
    ReadyMessage | ScoresMessage | DetectionMessage | IncidentMessage | StoppedMessage | ErrorMessage,
    Field(discriminator="type"),
]
_SERVER_MESSAGE: TypeAdapter[ServerMessage] = TypeAdapter(ServerMessage)


def parse_server_message(text: str | bytes) -> ServerMessage:
    """Parse one gateway text frame (for clients); raises ValueError when it does not parse."""
    return _SERVER_MESSAGE.validate_json(text)

