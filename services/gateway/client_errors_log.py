"""Keep what a client can cause out of the gateway's error log.

uvicorn (0.55, its websockets-sansio protocol) logs a text frame that is not UTF-8 as an ERROR
with a traceback ("Invalid UTF-8 sequence received from client.") before it closes the
connection 1007; when the connection was already closing, its ``send_close(1007)`` raises
``InvalidState`` and asyncio logs "Fatal error: protocol.data_received() call failed." with
another traceback, and drops the connection. Both are the client's doing, not a gateway fault,
and any client can repeat them: an error log anyone can fill hides the real faults.
:func:`quiet_client_errors` turns each into one INFO line.
"""

from __future__ import annotations

import logging

from websockets.exceptions import InvalidState

_CLIENT_MISTAKES = frozenset({"Invalid UTF-8 sequence received from client."})
_DROPPED = "Fatal error: protocol.data_received() call failed."


class ClientMistakeFilter(logging.Filter):
    """Logs a client's protocol mistake, reported by uvicorn, at INFO and without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _CLIENT_MISTAKES:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info = record.exc_text = None
            record.msg = f"{record.msg} Closed 1007."
        elif _is_closing_utf8_failure(record):
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info = record.exc_text = None
            record.msg, record.args = "Invalid UTF-8 sequence received from a closing WebSocket; dropped.", ()
        return True


def _is_closing_utf8_failure(record: logging.LogRecord) -> bool:
    exc = record.exc_info[1] if record.exc_info else None
    return (
        isinstance(record.msg, str)
        and record.msg.startswith(_DROPPED)
        and "websockets_sansio_impl" in record.msg
        and isinstance(exc, InvalidState)
        and isinstance(exc.__context__, UnicodeDecodeError)
    )


def quiet_client_errors() -> None:
    """Install the filter on uvicorn's error logger and asyncio's (once; it survives uvicorn's
    logging setup)."""
    for logger in (logging.getLogger("uvicorn.error"), logging.getLogger("asyncio")):
        if not any(isinstance(f, ClientMistakeFilter) for f in logger.filters):
            logger.addFilter(ClientMistakeFilter())
