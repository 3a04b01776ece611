"""Gateway <-> inference wire protocol over one WebSocket (``/v1/windows``).

Text frames carry control messages as JSON: ``hello`` (gateway -> inference), ``ready`` and
``error`` (inference -> gateway). Binary frames carry data: a windows request (gateway ->
inference) and a scores result (inference -> gateway), each a fixed little-endian header
defined with ``struct`` followed by a dense array payload. Per-request errors come back as an
``error`` text frame carrying the request id. ``docs/inference-protocol.md`` is the prose
version of this module; the two change together.

Errors raised here:

    WireError(ValueError)   a frame that does not parse; ``request_id`` is set when the
                            header was intact, so the server can answer that request.
"""

from __future__ import annotations

import enum
import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from shared.features.spec import FeatureSpec
from shared.taxonomy import by_key

PROTOCOL_VERSION = 1

# Authentication: the gateway sends ``Authorization: Bearer <token>`` with the WebSocket
# upgrade; the inference service answers 401 before accepting when it is missing or wrong.
# In development both sides use the secret generated under the data folder by this name.
INFERENCE_TOKEN_SECRET = "inference-token"
MIN_TOKEN_LENGTH = 16
WINDOWS_MAGIC = b"HW"
SCORES_MAGIC = b"HS"

# magic, version, payload dtype, request id, windows, frames per window, mel bins.
WINDOWS_HEADER = struct.Struct("<2sBBQHHH")
# magic, version, tags per window, request id, windows, classes, queue wait ms, compute ms.
SCORES_HEADER = struct.Struct("<2sBBQHHff")

MAX_REQUEST_ID = 2**64 - 1
MAX_WINDOWS_PER_FRAME = 2**16 - 1


class PayloadDtype(enum.IntEnum):
    """Element type of a windows payload. float16 halves the bandwidth at ~1e-3 relative error."""

    FLOAT32 = 0
    FLOAT16 = 1

    @property
    def numpy(self) -> np.dtype[Any]:
        return np.dtype("<f4") if self is PayloadDtype.FLOAT32 else np.dtype("<f2")


class InferenceErrorCode(str, enum.Enum):
    """``code`` of an ``error`` message. The first three end the connection (see ``InferenceCloseCode``);
    ``unauthorized`` is the body of the HTTP 401 that refuses an upgrade without a valid token."""

    BAD_HELLO = "bad_hello"
    UNKNOWN_MODEL = "unknown_model"
    SPEC_MISMATCH = "spec_mismatch"
    BAD_REQUEST = "bad_request"
    OVERLOADED = "overloaded"
    MODEL_ERROR = "model_error"
    UNAUTHORIZED = "unauthorized"


class InferenceCloseCode(enum.IntEnum):
    """WebSocket close codes the inference service uses after a refused handshake."""

    BAD_HELLO = 4400
    UNKNOWN_MODEL = 4404
    SPEC_MISMATCH = 4409


HANDSHAKE_CLOSE_CODES: dict[InferenceErrorCode, InferenceCloseCode] = {
    InferenceErrorCode.BAD_HELLO: InferenceCloseCode.BAD_HELLO,
    InferenceErrorCode.UNKNOWN_MODEL: InferenceCloseCode.UNKNOWN_MODEL,
    InferenceErrorCode.SPEC_MISMATCH: InferenceCloseCode.SPEC_MISMATCH,
}


class WireError(ValueError):
    """A frame or message that does not follow the protocol."""

    def __init__(self, message: str, request_id: int | None = None) -> None:
        super().__init__(message)
        self.request_id = request_id


# --- control messages (JSON text frames) ---------------------------------------------------


@dataclass(frozen=True)
class Hello:
    """Gateway -> inference, first message: the model wanted (None = whatever is served) and
    the feature spec the gateway computes (None = the served model's, which ``Ready`` names)."""

    model: str | None
    spec: FeatureSpec | None

    def to_dict(self) -> dict[str, Any]:
        return {"type": "hello", "model": self.model, "spec": None if self.spec is None else self.spec.to_dict()}


@dataclass(frozen=True)
class Ready:
    """Inference -> gateway, handshake accepted.

    ``max_batch`` is also the most windows one request may carry. ``tags`` is the model's tag
    vocabulary (AudioSet display names) that result tag ids index, or None when it has none.
    ``thresholds`` are the detector thresholds the model was tuned to (emergency class key ->
    onset threshold in (0, 1]), or None when the model stores none; the gateway uses them for
    the classes its own settings leave unset. ``band_limit_hz`` is the highest frequency the
    model uses when it discards the top of its spec's band (None: it uses all of it).
    """

    model: str
    spec: FeatureSpec
    classes: tuple[str, ...]
    max_batch: int
    tags: tuple[str, ...] | None
    thresholds: Mapping[str, float] | None = None
    band_limit_hz: float | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "type": "ready",
            "model": self.model,
            "spec": self.spec.to_dict(),
            "classes": list(self.classes),
            "max_batch": self.max_batch,
            "tags": None if self.tags is None else list(self.tags),
            "thresholds": None if self.thresholds is None else dict(self.thresholds),
            "band_limit_hz": self.band_limit_hz,
        }


@dataclass(frozen=True)
class InferenceErrorMessage:
    """Inference -> gateway: a refused handshake (``request_id`` None, then close) or a failed
    request (``request_id`` set; the connection stays open)."""

    code: InferenceErrorCode
    message: str
    request_id: int | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"type": "error", "code": self.code.value, "message": self.message}
        if self.request_id is not None:
            data["id"] = self.request_id
        return data


ControlMessage = Hello | Ready | InferenceErrorMessage


def encode_control(message: ControlMessage) -> str:
    return json.dumps(message.to_dict(), separators=(",", ":"), ensure_ascii=False)


def decode_control(text: str | bytes) -> ControlMessage:
    """Parse a control message (a text frame; bytes are read as UTF-8 JSON); raises WireError
    on anything malformed."""
    try:
        data = json.loads(text)
        kind = data["type"]
        if kind == "hello":
            model = data.get("model")
            if model is not None and not isinstance(model, str):
                raise TypeError("model must be a string or null")
            spec = data["spec"]  # required, and null for "the served model's"
            return Hello(model=model, spec=None if spec is None else FeatureSpec.from_dict(spec))
        if kind == "ready":
            tags = data.get("tags")
            return Ready(
                model=str(data["model"]),
                spec=FeatureSpec.from_dict(data["spec"]),
                classes=tuple(str(c) for c in data["classes"]),
                max_batch=int(data["max_batch"]),
                tags=None if tags is None else tuple(str(t) for t in tags),
                thresholds=_thresholds(data.get("thresholds")),
                band_limit_hz=_band_limit(data.get("band_limit_hz")),
            )
        if kind == "error":
            request_id = data.get("id")
            return InferenceErrorMessage(
                code=InferenceErrorCode(data["code"]),
                message=str(data.get("message", "")),
                request_id=None if request_id is None else int(request_id),
            )
    except (ValueError, KeyError, TypeError, AttributeError) as exc:
        raise WireError(f"malformed control message: {exc!r}") from None
    raise WireError(f"unknown control message type {kind!r}")


def _thresholds(data: Any) -> dict[str, float] | None:
    """A ready's ``thresholds``: checked here, so a gateway never builds a detector from bad ones."""
    if data is None:
        return None
    thresholds = {str(key): float(value) for key, value in data.items()}
    for key, value in thresholds.items():
        if not by_key(key).is_emergency:
            raise ValueError(f"class {key!r} never fires; it takes no threshold")
        if not 0.0 < value <= 1.0:
            raise ValueError(f"threshold for {key!r} must be in (0, 1], got {value}")
    return thresholds


def _band_limit(data: Any) -> float | None:
    if data is None:
        return None
    limit = float(data)
    if not limit > 0.0:
        raise ValueError(f"band_limit_hz must be positive, got {limit}")
    return limit


# --- data frames (binary) ------------------------------------------------------------------


@dataclass(frozen=True)
class WindowsRequest:
    """Gateway -> inference: ``windows`` float32 [n, window_frames, n_mels] under ``request_id``."""

    request_id: int
    windows: np.ndarray

    def encode(self, dtype: PayloadDtype = PayloadDtype.FLOAT32) -> bytes:
        if self.windows.ndim != 3:
            raise ValueError(f"windows must be [n, frames, mels], got shape {self.windows.shape}")
        n, frames, mels = self.windows.shape
        if not 1 <= n <= MAX_WINDOWS_PER_FRAME:
            raise ValueError(f"a request carries 1..{MAX_WINDOWS_PER_FRAME} windows, got {n}")
        if not 0 <= self.request_id <= MAX_REQUEST_ID:
            raise ValueError(f"request id {self.request_id} is not a uint64")
        header = WINDOWS_HEADER.pack(
            WINDOWS_MAGIC, PROTOCOL_VERSION, dtype, self.request_id, n, frames, mels
        )
        return header + np.ascontiguousarray(self.windows, dtype=dtype.numpy).tobytes()

    @classmethod
    def decode(cls, data: bytes, spec: FeatureSpec, max_windows: int) -> WindowsRequest:
        """Parse and validate a windows frame against the negotiated ``spec``.

        The returned array is a fresh, writable float32 copy. Raises WireError (with the
        request id once the header parsed) on a bad header, a shape other than
        [1..max_windows, spec.window_frames, spec.n_mels], a payload of the wrong length, or
        non-finite values.
        """
        if len(data) < WINDOWS_HEADER.size:
            raise WireError(f"truncated header: {len(data)} bytes, need {WINDOWS_HEADER.size}")
        magic, version, dtype_code, request_id, n, frames, mels = WINDOWS_HEADER.unpack_from(data)
        if magic != WINDOWS_MAGIC:
            raise WireError(f"bad magic {magic!r}, expected {WINDOWS_MAGIC!r}")
        if version != PROTOCOL_VERSION:
            raise WireError(f"protocol version {version} unsupported (speaks {PROTOCOL_VERSION})", request_id)
        try:
            dtype = PayloadDtype(dtype_code)
        except ValueError:
            raise WireError(f"unknown payload dtype {dtype_code}", request_id) from None
        if not 1 <= n <= max_windows:
            raise WireError(f"{n} windows in one request; allowed 1..{max_windows}", request_id)
        if (frames, mels) != (spec.window_frames, spec.n_mels):
            raise WireError(
                f"window shape [{frames}, {mels}] does not match spec {spec.name} "
                f"[{spec.window_frames}, {spec.n_mels}]",
                request_id,
            )
        expected = WINDOWS_HEADER.size + n * frames * mels * dtype.numpy.itemsize
        if len(data) != expected:
            raise WireError(f"frame is {len(data)} bytes, header says {expected}", request_id)
        windows = np.frombuffer(data, dtype=dtype.numpy, offset=WINDOWS_HEADER.size)
        windows = windows.astype(np.float32).reshape(n, frames, mels)
        if not np.isfinite(windows).all():
            raise WireError("windows contain NaN or infinite values", request_id)
        return cls(request_id, windows)


@dataclass(frozen=True)
class ScoresResult:
    """Inference -> gateway: the answer to one windows request.

    ``scores`` float32 [n, n_classes] in [0, 1]; ``tag_ids`` uint16 [n, k] indexing
    ``Ready.tags`` with ``tag_scores`` float32 [n, k], best first (k = 0 when the model has no
    tags); ``queue_ms`` is the time the request waited for its batch, ``compute_ms`` the
    batch's model time.
    """

    request_id: int
    scores: np.ndarray
    tag_ids: np.ndarray
    tag_scores: np.ndarray
    queue_ms: float
    compute_ms: float

    def encode(self) -> bytes:
        n, n_classes = self.scores.shape
        k = self.tag_ids.shape[1]
        if self.tag_ids.shape != (n, k) or self.tag_scores.shape != (n, k):
            raise ValueError("tag_ids and tag_scores must both be [n, k] with n scored windows")
        header = SCORES_HEADER.pack(
            SCORES_MAGIC, PROTOCOL_VERSION, k, self.request_id, n, n_classes,
            self.queue_ms, self.compute_ms,
        )  # fmt: skip
        return b"".join(
            (
                header,
                np.ascontiguousarray(self.scores, dtype="<f4").tobytes(),
                np.ascontiguousarray(self.tag_ids, dtype="<u2").tobytes(),
                np.ascontiguousarray(self.tag_scores, dtype="<f4").tobytes(),
            )
        )

    @classmethod
    def decode(cls, data: bytes) -> ScoresResult:
        if len(data) < SCORES_HEADER.size:
            raise WireError(f"truncated header: {len(data)} bytes, need {SCORES_HEADER.size}")
        magic, version, k, request_id, n, n_classes, queue_ms, compute_ms = SCORES_HEADER.unpack_from(data)
        if magic != SCORES_MAGIC:
            raise WireError(f"bad magic {magic!r}, expected {SCORES_MAGIC!r}")
        if version != PROTOCOL_VERSION:
            raise WireError(f"protocol version {version} unsupported (speaks {PROTOCOL_VERSION})", request_id)
        expected = SCORES_HEADER.size + 4 * n * n_classes + (2 + 4) * n * k
        if len(data) != expected:
            raise WireError(f"frame is {len(data)} bytes, header says {expected}", request_id)
        offset = SCORES_HEADER.size
        scores = np.frombuffer(data, "<f4", n * n_classes, offset).reshape(n, n_classes)
        offset += scores.nbytes
        tag_ids = np.frombuffer(data, "<u2", n * k, offset).reshape(n, k)
        offset += tag_ids.nbytes
        tag_scores = np.frombuffer(data, "<f4", n * k, offset).reshape(n, k)
        return cls(request_id, scores, tag_ids, tag_scores, queue_ms, compute_ms)
