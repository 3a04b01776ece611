"""Keep what a client can cause out of the gateway's error log.

uvicorn logs a text frame that is not UTF-8 as an ERROR with a traceback ("Invalid UTF-8
sequence received from client.") before it closes the connection 1007. That is the client's
mistake, not a gateway fault, and any client can send it as often as it likes: an error log
anyone can fill hides the real faults. :func:`quiet_client_errors` turns it into one INFO line.
"""

from __future__ import annotations

import logging

_CLIENT_MISTAKES = frozenset({"Invalid UTF-8 sequence received from client."})


class ClientMistakeFilter(logging.Filter):
    """Logs a client's protocol mistake, reported by uvicorn, at INFO and without a traceback."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _CLIENT_MISTAKES:
            record.levelno, record.levelname = logging.INFO, logging.getLevelName(logging.INFO)
            record.exc_info = record.exc_text = None
            record.msg = f"{record.msg} Closed 1007."
        return True


def quiet_client_errors() -> None:
    """Install the filter on uvicorn's error logger (once; it survives uvicorn's logging setup)."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, ClientMistakeFilter) for f in logger.filters):
        logger.addFilter(ClientMistakeFilter())
