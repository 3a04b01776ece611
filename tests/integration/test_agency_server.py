"""`hearo agency` as its own process on a free port, as `hearo run` starts it: the page and the
lists need the password it prints, it verifies what a worker reading the same data folder
signs (and not the old public secret), and in production it refuses to start on a public
secret with a message instead of a traceback."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from services.alerting.settings import AlertingSettings
from services.alerting.webhooks import webhook_headers
from tests.gateway_support import free_port

HEARO = Path(sys.executable).with_name("hearo")
OLD_DEV_SECRET = "whsec_ZGV2LW9ubHktaGVhcm8td2ViaG9vay1zZWNyZXQ="
STARTUP_S = 20.0


def agency_env(data_dir: Path, **settings: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEARO_")}
    env.update({"HEARO_DATA_DIR": str(data_dir), "HEARO_AGENCY_DB_PATH": ":memory:", **settings})
    return env


@pytest.fixture
def agency(tmp_path: Path) -> Iterator[tuple[str, str, Path]]:
    """(base URL, the password it printed, its data folder)."""
    port, data_dir = free_port(), tmp_path / "var"
    log = tmp_path / "agency.log"
    with log.open("wb") as out:
        process = subprocess.Popen([str(HEARO), "agency", "--port", str(port)], env=agency_env(data_dir),
                                   stdout=out, stderr=subprocess.STDOUT)  # fmt: skip
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            assert process.poll() is None, log.read_text()
            assert time.monotonic() < deadline, log.read_text()
            try:
                if httpx.get(f"{base}/healthz", timeout=1.0).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.2)
        printed = re.search(r"\(user agency, password (\S+)\)", log.read_text())
        assert printed, log.read_text()
        yield base, printed.group(1), data_dir
    finally:
        process.terminate()
        process.wait(10)


def report(incident_id: str) -> bytes:
    return json.dumps({"type": "incident.reported", "data": {"incident_id": incident_id}}).encode()


def test_the_running_agency_needs_its_printed_password_and_the_workers_secret(
    agency: tuple[str, str, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    base, password, data_dir = agency
    assert (data_dir / "secrets" / "agency-password").read_text().strip() == password
    for path in ("/", "/reports", "/sms"):
        assert httpx.get(base + path).status_code == 401
        assert httpx.get(base + path, auth=("agency", "change-me-dev-only")).status_code == 401
        assert httpx.get(base + path, auth=("agency", password)).status_code == 200

    # The worker of the same deployment (same data folder) signs with what the agency verifies.
    monkeypatch.setenv("HEARO_DATA_DIR", str(data_dir))
    monkeypatch.delenv("HEARO_ENVIRONMENT", raising=False)
    (worker_secret,) = AlertingSettings().agencies["119"].channels[0].secrets
    forged, genuine = report("forged"), report("genuine")
    public = httpx.post(f"{base}/webhooks/119", content=forged, headers=webhook_headers([OLD_DEV_SECRET], "f", forged))
    assert public.status_code == 401
    ours = httpx.post(f"{base}/webhooks/119", content=genuine, headers=webhook_headers([worker_secret], "g", genuine))
    assert ours.status_code == 200
    not_json = httpx.post(f"{base}/webhooks/119", content=b"[", headers=webhook_headers([worker_secret], "n", b"["))
    assert not_json.status_code == 400 and not_json.json()["error"] == "malformed_body"
    reports = httpx.get(f"{base}/reports", auth=("agency", password)).json()
    assert [r["payload"]["data"]["incident_id"] for r in reports] == ["genuine"]


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"HEARO_AGENCY_SECRETS": json.dumps([OLD_DEV_SECRET]), "HEARO_AGENCY_PASSWORD": "p" * 20},
         "public development value"),
        ({"HEARO_AGENCY_PASSWORD": "p" * 20}, "HEARO_AGENCY_SECRETS must be set"),
    ],
)  # fmt: skip
def test_in_production_the_agency_refuses_to_start_on_a_public_or_missing_secret(
    tmp_path: Path, settings: dict[str, str], message: str
) -> None:
    env = agency_env(tmp_path / "var", HEARO_ENVIRONMENT="production", **settings)
    started = subprocess.run([str(HEARO), "agency", "--port", str(free_port())], env=env,
                             capture_output=True, text=True, timeout=30, check=False)  # fmt: skip
    assert started.returncode == 2 and message in started.stderr
    assert "Traceback" not in started.stderr and OLD_DEV_SECRET not in started.stderr
    assert not (tmp_path / "var" / "secrets").exists()  # nothing generated outside development
