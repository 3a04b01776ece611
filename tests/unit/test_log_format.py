"""The two log formats, and the bound ids on every line that concerns them (issue 15)."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Iterator

import pytest

from shared.log_format import bind_log_ids, bound_log_ids, configure_logging, log_ids
from shared.log_hygiene import install_log_hygiene


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    """The root handler configure_logging installs, writing to a buffer; restored afterwards."""
    root = logging.getLogger()
    saved_handlers, saved_level = list(root.handlers), root.level
    buffer = io.StringIO()
    yield buffer
    for handler in list(root.handlers):
        root.removeHandler(handler)
    for handler in saved_handlers:
        root.addHandler(handler)
    root.setLevel(saved_level)


def _configure(log_format: str, buffer: io.StringIO) -> None:
    configure_logging(log_format)  # type: ignore[arg-type]
    handler = logging.getLogger().handlers[0]
    assert isinstance(handler, logging.StreamHandler)
    handler.setStream(buffer)


def test_json_lines_carry_the_bound_ids_and_the_exception(captured: io.StringIO) -> None:
    _configure("json", captured)
    log = logging.getLogger("services.gateway.sessions")
    with bound_log_ids(session_id="s-1", incident_id="i-1"):
        log.info("%s incident opened", "fire")
        try:
            raise RuntimeError("database gone")
        except RuntimeError:
            log.exception("could not record")
    log.info("after")
    lines = [json.loads(line) for line in captured.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["fire incident opened", "could not record", "after"]
    assert lines[0]["session_id"] == "s-1" and lines[0]["incident_id"] == "i-1"
    assert lines[0]["level"] == "info" and lines[0]["logger"] == "services.gateway.sessions"
    assert "timestamp" in lines[0]
    assert "database gone" in json.dumps(lines[1]["exception"])
    assert "session_id" not in lines[2]


def test_text_lines_append_the_bound_ids(captured: io.StringIO) -> None:
    _configure("text", captured)
    with bound_log_ids(incident_id="i-2"):
        logging.getLogger("x").warning("retrying")
    assert captured.getvalue().rstrip().endswith("x: retrying [incident_id=i-2]")


def test_an_id_bound_inside_a_task_stays_in_that_task() -> None:
    async def session(name: str) -> dict[str, object]:
        bind_log_ids(session_id=name)
        await asyncio.sleep(0)
        return log_ids()

    async def main() -> list[dict[str, object]]:
        return list(await asyncio.gather(session("a"), session("b")))

    assert asyncio.run(main()) == [{"session_id": "a"}, {"session_id": "b"}]
    assert "session_id" not in log_ids()


def test_configuring_again_switches_the_format_instead_of_doubling_lines(captured: io.StringIO) -> None:
    _configure("text", captured)
    _configure("json", captured)
    logging.getLogger("x").warning("once")
    assert len(captured.getvalue().splitlines()) == 1
    json.loads(captured.getvalue())


def test_the_hygiene_filters_still_apply_in_json(captured: io.StringIO) -> None:
    _configure("json", captured)
    install_log_hygiene()
    # httpx's request lines carry URLs; its logger propagates to the root handler.
    logging.getLogger("httpx").warning("HTTP Request: GET %s", "http://gw/v1/clips/k?exp=1&sig=SECRETSIG")
    line = json.loads(captured.getvalue())
    assert "SECRETSIG" not in line["event"] and "<redacted>" in line["event"]
