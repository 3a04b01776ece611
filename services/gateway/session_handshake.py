"""A stream session's handshake: the ``start`` message within the start timeout, the device
token (in ``start.token`` or an ``Authorization: Bearer`` header), the frame size the client
asks for, and a served model to classify with. Anything else is a ``SessionFatal``.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from services.gateway.auth import hash_token
from services.gateway.session_registry import SessionRegistry
from services.gateway.session_socket import SessionSocket
from services.gateway.session_state import SessionFatal
from shared.db import Device
from shared.features.spec import FeatureSpec
from shared.protocol import ErrorCode, ProtocolError, StartMessage, parse_client_message


@dataclass(frozen=True)
class Handshake:
    """What a session starts streaming with: the client's ``start``, its device, the hash of
    the token it was opened with, and the served model (name and feature spec)."""

    start: StartMessage
    device: Device
    token_hash: str
    model: str
    spec: FeatureSpec


async def handshake(socket: SessionSocket, registry: SessionRegistry) -> Handshake:
    """Take the client's ``start``; raises ``SessionFatal`` (or ``ClientLeft``) when it fails."""
    settings = registry.settings
    try:
        async with asyncio.timeout(settings.start_timeout_s):
            frame = await socket.receive()
    except TimeoutError:
        raise SessionFatal(ErrorCode.START_TIMEOUT, f"no start message within {settings.start_timeout_s:g} s") from None
    if isinstance(frame, bytes):
        raise SessionFatal(ErrorCode.START_REQUIRED, "send a start message before any audio")
    try:
        message = parse_client_message(frame)
    except ProtocolError as exc:
        raise SessionFatal(exc.code, str(exc)) from None
    if not isinstance(message, StartMessage):
        raise SessionFatal(ErrorCode.START_REQUIRED, f"the first message must be start, not {message.type}")

    token = message.token or socket.bearer_token()
    if not token:
        raise SessionFatal(ErrorCode.UNAUTHORIZED, "no device token: put it in start.token or an Authorization header")
    token_hash = hash_token(token)
    device = await registry.authenticate(token)
    if device is None:
        raise SessionFatal(ErrorCode.UNAUTHORIZED, "the device token is not valid (rotated or revoked?)")

    if message.frame_ms is not None:
        frame_bytes = message.frame_ms * message.sample_rate // 1000 * message.bytes_per_frame
        if frame_bytes > settings.max_frame_bytes:
            raise SessionFatal(
                ErrorCode.INVALID_MESSAGE,
                f"frame_ms {message.frame_ms} makes {frame_bytes}-byte frames; "
                f"the limit is {settings.max_frame_bytes} bytes",
            )
    ready = registry.classifier.ready
    if not registry.classifier.connected or ready is None or registry.spec is None:
        raise SessionFatal(ErrorCode.INFERENCE_UNAVAILABLE, "the model service is not reachable; retry later")
    return Handshake(message, device, token_hash, ready.model, registry.spec)
