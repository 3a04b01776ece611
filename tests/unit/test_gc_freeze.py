"""shared.gc_freeze: ``hearo serve`` exempts the service's startup objects from full collections
(a gateway's full pass under load walked 375,000 objects and stopped its event loop for up to
211 ms), and only there, once the app is built."""

from __future__ import annotations

import subprocess
import sys

import pytest
from typer.testing import CliRunner


def test_after_the_freeze_a_full_collection_walks_only_what_came_later() -> None:
    # In a process of its own: a frozen object is never collected, so the test process must not freeze.
    script = (
        "import gc, json, sqlalchemy, numpy\n"
        "from shared.gc_freeze import freeze_startup_objects\n"
        "before = len(gc.get_objects())\n"
        "freeze_startup_objects()\n"
        "later = [[i] for i in range(1000)]\n"
        "print(json.dumps([before, gc.get_freeze_count(), len(gc.get_objects())]))\n"
    )
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    before, frozen, walked = (int(n) for n in done.stdout.strip()[1:-1].split(","))
    assert frozen >= 0.9 * before > 10_000
    assert walked < 5_000  # the 1,001 lists made after it, and little else


@pytest.mark.parametrize("service", ["gateway", "inference"])
def test_hearo_serve_freezes_once_the_app_is_built_and_before_it_serves(
    service: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import uvicorn

    import hearo.cli

    calls: list[str] = []
    monkeypatch.setattr(hearo.cli, "_service_logging", lambda settings: None)  # the root logger stays pytest's
    monkeypatch.setattr(hearo.cli, "freeze_startup_objects", lambda: calls.append("freeze"))
    monkeypatch.setattr(uvicorn, "run", lambda app, **_: calls.append(f"run {type(app).__name__}"))
    result = CliRunner().invoke(hearo.cli.app, ["serve", service])
    assert result.exit_code == 0, result.output
    assert calls == ["freeze", "run FastAPI"]
