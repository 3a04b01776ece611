"""The capture format the gateway asks clients for: the lowest accepted rate that keeps every
frequency the served model uses (the web app captures at it, bench/bench_web_client.py)."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
from fastapi import FastAPI

from services.gateway import web_api
from services.gateway.web_api import CAPTURE_FRAME_MS, capture_sample_rate
from shared.features.spec import BEATS_FBANK, EFFICIENTAT_MEL
from shared.inference_wire import Ready
from shared.protocol import SAMPLE_RATES
from shared.taxonomy import CLASS_KEYS
from tests.devices_support import http_client


@pytest.mark.parametrize(
    ("ready", "rate"),
    [
        (None, 48_000),  # the model is not known yet: lose nothing
        (Ready("beats", BEATS_FBANK, CLASS_KEYS, 32, None), 16_000),
        (Ready("efficientat", EFFICIENTAT_MEL, CLASS_KEYS, 32, None), 44_100),  # 32 kHz is not a client rate
        (Ready("default", EFFICIENTAT_MEL, CLASS_KEYS, 32, None, band_limit_hz=7_600.0), 16_000),
        (Ready("default", EFFICIENTAT_MEL, CLASS_KEYS, 32, None, band_limit_hz=10_000.0), 22_050),
    ],
)
def test_capture_rate_keeps_what_the_model_hears(ready: Ready | None, rate: int) -> None:
    assert capture_sample_rate(ready) == rate
    assert rate in SAMPLE_RATES


def test_the_default_model_advertises_its_band() -> None:
    from services.inference.models.default import BAND_LIMIT_HZ
    from services.inference.registry import default_registry

    assert default_registry().get("default").band_limit_hz == BAND_LIMIT_HZ


async def test_stream_format_route_needs_no_token() -> None:
    app = FastAPI()
    app.state.inference = SimpleNamespace(ready=None)
    app.include_router(web_api.router)
    async with http_client(app) as client:
        before = (await client.get("/v1/stream/format")).json()
        app.state.inference.ready = Ready("default", EFFICIENTAT_MEL, CLASS_KEYS, 32, None, band_limit_hz=7_600.0)
        served = await client.get("/v1/stream/format")
    assert before == {"sample_rate": 48_000, "frame_ms": CAPTURE_FRAME_MS}
    assert served.status_code == 200 and served.json() == {"sample_rate": 16_000, "frame_ms": CAPTURE_FRAME_MS}
