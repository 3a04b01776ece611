"""F2 (issue 12): one device cannot lock another out. A real gateway under uvicorn (SQLite,
the fake classifier), real WebSocket clients: 200 sessions attempted on one token leave at
most 2 of them open, each replaced one told why (4409), and another device still connects,
streams and is heard."""

from __future__ import annotations

import asyncio
import contextlib
import json
from pathlib import Path

import pytest
from websockets.asyncio.client import ClientConnection, connect

from services.gateway.settings import GatewaySettings
from shared.clips import ClipStorageSettings
from shared.protocol import CloseCode, ErrorCode
from tests.gateway_apps import open_session, run_gateways, send_audio, until_closed, until_type
from tests.gateway_support import audio

pytestmark = pytest.mark.slow
ATTEMPTS = 200


async def test_one_device_cannot_lock_another_out(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARO_DATA_DIR", str(tmp_path / "var"))
    settings = GatewaySettings(
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'hearo.db'}",
        migrate_on_start=True,
        clips=ClipStorageSettings(dir=tmp_path / "clips"),
        max_stream_speed=1000.0,
    )
    assert settings.max_sessions == ATTEMPTS and settings.max_sessions_per_device == 2
    with run_gateways(monkeypatch, settings) as (gateway,):
        _, noisy = await asyncio.to_thread(gateway.register, "Noisy")
        _, quiet = await asyncio.to_thread(gateway.register, "Quiet")
        async with contextlib.AsyncExitStack() as stack:
            flood: list[ClientConnection] = []
            for _ in range(ATTEMPTS):
                ws = await stack.enter_async_context(connect(gateway.ws))
                await open_session(ws, noisy)
                flood.append(ws)
            replaced = flood[:-2]
            for ws in replaced:
                messages = await asyncio.wait_for(until_closed(ws), 10)
                assert messages[-1]["code"] == ErrorCode.SESSION_REPLACED.value and messages[-1]["fatal"]
                assert ws.close_code == CloseCode.SESSION_REPLACED
            assert await asyncio.to_thread(gateway.sessions) == 2

            async with connect(gateway.ws) as other:
                await open_session(other, quiet)
                await send_audio(other, audio(3.0, loud=True))
                await other.send(json.dumps({"type": "stop"}))
                messages = await asyncio.wait_for(until_type(other, "stopped"), 20)
            assert [m["class"] for m in messages if m["type"] == "detection"] == ["fire"]
            # The two newest sessions of the noisy device are still open and streaming.
            for ws in flood[-2:]:
                await send_audio(ws, audio(0.5))
                await ws.send(json.dumps({"type": "stop"}))
                assert (await asyncio.wait_for(until_type(ws, "stopped"), 10))[-1]["windows"] >= 1
