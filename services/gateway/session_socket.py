"""One stream session's WebSocket: frames in within the size limit, messages out from any of
the session's tasks (one at a time), and the close.

Sending never raises for a client that left: the message is dropped and the reader, which
sees the disconnect, ends the session.
"""

from __future__ import annotations

import asyncio
import logging

from fastapi import WebSocket
from starlette.websockets import WebSocketDisconnect, WebSocketState

from services.gateway.session_state import ClientLeft, SessionFatal
from shared.protocol import CLOSE_CODES, ErrorCode, ErrorMessage, Message

log = logging.getLogger(__name__)


class SessionSocket:
    """The accepted ``websocket`` of session ``session_id``; frames over ``max_frame_bytes`` are fatal."""

    def __init__(self, websocket: WebSocket, session_id: str, max_frame_bytes: int) -> None:
        self.websocket = websocket
        self.session_id = session_id
        self.max_frame_bytes = max_frame_bytes
        self._lock = asyncio.Lock()
        self._gone = False  # close sent, or the client left

    def bearer_token(self) -> str | None:
        """The token of the upgrade request's ``Authorization: Bearer`` header, if any."""
        scheme, _, credentials = self.websocket.headers.get("authorization", "").partition(" ")
        return credentials.strip() if scheme.lower() == "bearer" else None

    async def receive(self) -> bytes | str:
        """The next frame; raises ``ClientLeft`` at a disconnect, ``SessionFatal`` for an oversized frame."""
        message = await self.websocket.receive()
        if message["type"] == "websocket.disconnect":
            raise ClientLeft()
        data: bytes | str | None = message.get("bytes")
        if data is None:
            data = message.get("text") or ""
        if len(data) > self.max_frame_bytes:
            raise SessionFatal(
                ErrorCode.FRAME_TOO_LARGE,
                f"a {len(data)}-byte frame is over the limit of {self.max_frame_bytes} bytes",
            )
        return data

    async def send(self, message: Message) -> None:
        async with self._lock:
            if not self._open():
                return
            try:
                await self.websocket.send_text(message.to_json())
            except (WebSocketDisconnect, OSError, RuntimeError):
                self._gone = True

    async def close(self, code: int, reason: str) -> None:
        async with self._lock:
            if not self._open():
                return
            self._gone = True
            try:
                await self.websocket.close(code=code, reason=reason[:120])
            except (WebSocketDisconnect, OSError, RuntimeError):
                pass

    def forget(self) -> None:
        """The session is over: send nothing more (its tasks may outlive it a moment)."""
        self._gone = True

    async def fail(self, code: ErrorCode, message: str) -> None:
        """A fatal ``error`` with ``message``, then the close of ``code``."""
        if code is not ErrorCode.INTERNAL:
            log.info("session %s refused: %s: %s", self.session_id, code.value, message)
        await self.send(ErrorMessage(code=code, message=message, fatal=True))
        await self.close(CLOSE_CODES[code], code.value)

    def _open(self) -> bool:
        return (
            not self._gone
            and self.websocket.application_state is WebSocketState.CONNECTED
            and self.websocket.client_state is WebSocketState.CONNECTED
        )
