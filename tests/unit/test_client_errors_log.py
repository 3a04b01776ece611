"""A client's non-UTF-8 text frame is one INFO line in the gateway's log, not an ERROR traceback
(found by tests/integration/test_ws_fuzz.py)."""

from __future__ import annotations

import logging
import sys

from websockets.exceptions import InvalidState

from services.gateway.client_errors_log import ClientMistakeFilter


def _record(msg: str, exc: BaseException | None) -> logging.LogRecord:
    exc_info = (type(exc), exc, exc.__traceback__) if exc is not None else None
    return logging.LogRecord("uvicorn.error", logging.ERROR, __file__, 1, msg, (), exc_info)


def _closing_failure() -> BaseException:
    try:
        try:
            b"\xff".decode()
        except UnicodeDecodeError:
            raise InvalidState("connection is closing")
    except InvalidState:
        return sys.exc_info()[1]  # type: ignore[return-value]
    raise AssertionError("unreachable")


def test_uvicorns_invalid_utf8_errors_become_info_lines() -> None:
    for record in (
        _record("Invalid UTF-8 sequence received from client.", UnicodeDecodeError("utf-8", b"\xff", 0, 1, "bad")),
        _record("Fatal error: protocol.data_received() call failed.\nprotocol: <...websockets_sansio_impl...>",
                _closing_failure()),
    ):  # fmt: skip
        assert ClientMistakeFilter().filter(record)
        assert record.levelno == logging.INFO and record.exc_info is None


def test_other_errors_are_left_as_they_are() -> None:
    record = _record("Fatal error: protocol.data_received() call failed.", RuntimeError("a gateway fault"))
    assert ClientMistakeFilter().filter(record)
    assert record.levelno == logging.ERROR and record.exc_info is not None
