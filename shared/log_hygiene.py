"""What must never reach a log, whatever level an operator turns on: audio, tokens, clip-link
signatures, medical notes (issue 12; tested by tests/integration/test_log_hygiene.py).

Our own code logs ids, classes and outcomes only. Libraries are louder at DEBUG, and at INFO
uvicorn's access log writes every URL:

* uvicorn's WebSocket layer logs each frame (``< BINARY 00 7d 18 ...``: audio; ``< TEXT
  '{"type": "start", "token": "OVzH...``: a token) and each handshake header: frames are
  dropped and credential headers masked;
* the access log would keep a clip link's ``sig``, which opens the clip for a day: masked;
* aiosqlite logs every statement with its parameters (profiles, medical notes, report
  bodies): held at INFO.

:func:`install_log_hygiene` is called by each service's entry point (the gateway's
``create_app``, the alerting worker's ``run_worker``); calling it again changes nothing.
"""

from __future__ import annotations

import logging
import re

_SIGNATURE = re.compile(r"([?&]sig=)[^&\s\"]+")
_CREDENTIAL_HEADERS = frozenset({"authorization", "cookie", "x-hearo-enrolment-key", "sec-websocket-key"})
# websockets' frame records are "< %s" / "> %s" with the frame as the argument.
_FRAME_FORMATS = frozenset({"< %s", "> %s"})
_MASK = "<redacted>"


class RedactSecrets(logging.Filter):
    """Drops WebSocket frame records, masks credential headers and clip-link signatures."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.msg in _FRAME_FORMATS:
            return False
        if isinstance(record.args, tuple) and record.args:
            if record.msg in ("< %s: %s", "> %s: %s") and str(record.args[0]).lower() in _CREDENTIAL_HEADERS:
                record.args = (record.args[0], _MASK)
            else:
                record.args = tuple(_redact(arg) for arg in record.args)
        elif isinstance(record.msg, str):
            record.msg = _SIGNATURE.sub(rf"\1{_MASK}", record.msg)
        return True


def _redact(arg: object) -> object:
    if isinstance(arg, (int, float)):
        return arg
    text = str(arg)  # a URL object (httpx) too
    return _SIGNATURE.sub(rf"\1{_MASK}", text) if _SIGNATURE.search(text) else arg


def install_log_hygiene() -> None:
    """Install the filter on the loggers that carry request lines and frames; quiet aiosqlite."""
    for name in ("uvicorn.error", "uvicorn.access", "websockets.server", "httpx"):
        logger = logging.getLogger(name)
        if not any(isinstance(existing, RedactSecrets) for existing in logger.filters):
            logger.addFilter(RedactSecrets())
    aiosqlite = logging.getLogger("aiosqlite")
    if aiosqlite.getEffectiveLevel() < logging.INFO:
        aiosqlite.setLevel(logging.INFO)
