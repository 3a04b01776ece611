"""What a server running in this process logged: the records at WARNING and above, and the
ones that carry a traceback, for tests that assert a server never failed."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

# uvicorn's own loggers do not propagate to the root one ("Exception in ASGI application").
_LOGGERS = ("", "uvicorn")


class ServerLog(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def failures(self) -> list[str]:
        """Each record at ERROR or above, or with a traceback, as its text."""
        return [
            self.format(record) for record in self.records if record.levelno >= logging.ERROR or record.exc_info
        ]


@contextmanager
def capture_server_log() -> Iterator[ServerLog]:
    """Collect what is logged, from any thread, while the block runs. Enter it once the server
    has started: uvicorn's logging setup replaces the handlers of its own loggers."""
    handler = ServerLog()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    loggers = [logging.getLogger(name) for name in _LOGGERS]
    for logger in loggers:
        logger.addHandler(handler)
    try:
        yield handler
    finally:
        for logger in loggers:
            logger.removeHandler(handler)
