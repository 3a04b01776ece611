"""The web app in a real browser: ``hearo run`` in a folder of its own, Debian's Chromium driven
by Playwright with a WAV file as its microphone, the drill agency's received reports, and the
sounds the tests play (a temporal-three smoke alarm, a conversation).

Nothing downloads a browser: Playwright launches ``/usr/bin/chromium`` (``HEARO_TEST_CHROMIUM``
names another); without it, or without the ``playwright`` package, the tests skip saying why.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest
import soundfile

from tests.gateway_support import free_port, smoke_alarm

HEARO = Path(sys.executable).with_name("hearo")  # the console script installed beside this Python
AGENCY = "http://127.0.0.1:8090"
CHROMIUM = Path(os.environ.get("HEARO_TEST_CHROMIUM", "/usr/bin/chromium"))
REPO = Path(__file__).resolve().parent.parent
# Screenshots: test artifacts (gitignored); docs/img holds the three the README shows.
ARTIFACTS = Path(os.environ.get("HEARO_TEST_ARTIFACTS", REPO / "var" / "test-artifacts")) / "web"
STARTUP_S = 90.0  # inference loads its model on two busy cores
STOP_S = 15.0


def chromium_or_skip() -> Path:
    """The Chromium to drive, or skip the test saying what is missing (CI installs both)."""
    pytest.importorskip("playwright.sync_api", reason="the playwright package is not installed (pip install -e '.[dev]')")
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    return CHROMIUM


def port_taken(port: int) -> bool:
    with socket.socket() as sock:
        # As uvicorn binds: a connection of a previous run in TIME_WAIT does not hold the port.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


@dataclass
class System:
    """A running ``hearo run``: the gateway's base URL, its folder and log."""

    base: str
    folder: Path
    log: Path
    pid: int  # hearo run's
    cert: Path | None = None  # the self-signed certificate of ``hearo run --lan``

    @property
    def verify(self) -> ssl.SSLContext | bool:
        """httpx's ``verify`` for this gateway (OSError before ``--lan`` wrote its certificate)."""
        return True if self.cert is None else ssl.create_default_context(cafile=str(self.cert))

    def kill_gateway(self) -> None:
        """SIGKILL the gateway child of this ``hearo run`` (its supervisor starts a new one): to
        the page, a dropped connection."""
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if parent == self.pid and b"serve" in cmdline and b"gateway" in cmdline:
                os.kill(int(entry.name), signal.SIGKILL)
                return
        raise AssertionError("no gateway process under hearo run")

    def log_tail(self, chars: int = 4000) -> str:
        return self.log.read_text(errors="replace")[-chars:]

    def agency_reports(self) -> list[dict[str, Any]]:
        """What the drill agency received (incident reports), newest first."""
        password = (self.folder / "var" / "secrets" / "agency-password").read_text().strip()
        response = httpx.get(f"{AGENCY}/reports", auth=("agency", password), timeout=5.0)
        response.raise_for_status()
        reports: list[dict[str, Any]] = response.json()
        return reports

    def reported(self, incident_id: str) -> list[dict[str, Any]]:
        return [r for r in self.agency_reports() if r["payload"]["data"].get("incident_id") == incident_id]


@contextmanager
def hearo_run(folder: Path, *options: str, **env_overrides: str) -> Iterator[System]:
    """``hearo run [options]`` on free ports (the agency's is fixed: skip when 8090 is taken),
    on the embedded defaults of a fresh clone in ``folder``; its whole process group stopped at
    the end. With ``--lan`` the gateway speaks HTTPS, checked against the certificate it made."""
    if port_taken(8090):
        pytest.skip("port 8090 (the drill agency's, fixed) is taken")
    port, inference_port = free_port(), free_port()
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEARO_")}
    env.update(env_overrides)
    log = folder / "hearo-run.log"
    with log.open("wb") as out:
        process = subprocess.Popen(
            [str(HEARO), "run", "--port", str(port), "--inference-port", str(inference_port), *options],
            cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
    lan = "--lan" in options
    system = System(f"{'https' if lan else 'http'}://127.0.0.1:{port}", folder, log, process.pid,
                    folder / "var" / "secrets" / "tls" / "cert.pem" if lan else None)
    try:
        deadline = time.monotonic() + STARTUP_S
        while True:
            if process.poll() is not None:
                pytest.fail(f"hearo run exited with {process.returncode}:\n{system.log_tail()}")
            if time.monotonic() > deadline:
                pytest.fail(f"hearo run was not up within {STARTUP_S:g} s:\n{system.log_tail()}")
            try:
                health = httpx.get(f"{system.base}/healthz", timeout=2.0, verify=system.verify).json()
            except (httpx.HTTPError, OSError):  # OSError: the certificate is not written yet
                health = None
            if health and health["inference"]["connected"] and "Hear-o is running" in log.read_text(errors="replace"):
                break
            time.sleep(0.5)
        yield system
    finally:
        _stop_group(process)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
            process.wait(STOP_S)
            if sig == signal.SIGTERM:
                os.killpg(process.pid, signal.SIGKILL)  # children the supervisor did not get to
            break
        except ProcessLookupError:
            break
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.wait(STOP_S)


def write_smoke_alarm(path: Path, seconds: float = 40.0, rate: int = 48_000) -> Path:
    """An ISO 8201 temporal-three smoke alarm (3.1 kHz over room noise): ``fire``."""
    soundfile.write(path, smoke_alarm(rate, seconds), rate, subtype="PCM_16")
    return path


def write_conversation(path: Path) -> Path:
    """Two people talking, by espeak-ng (Korean and English, two voices) when it is installed,
    else a minute of TV speech and music from tests/data/clips: an ordinary room, no emergency."""
    rate = 48_000
    espeak = shutil.which("espeak-ng")
    parts: list[np.ndarray] = []
    if espeak:
        lines = [
            ("ko+f3", "어머니, 점심 드셨어요? 오늘 날씨가 참 좋네요."),
            ("en+m3", "Yes, I had some rice and soup. Are you coming over on Sunday?"),
            ("ko+m1", "네, 일요일에 아이들이랑 같이 갈게요. 필요한 거 있으세요?"),
            ("en+f2", "Just some fruit, and the newspaper, please. Thank you, dear."),
        ]
        for voice, text in lines:
            wav = subprocess.run([espeak, "-v", voice, "-s", "150", "--stdout", text], capture_output=True, check=True).stdout
            (path.parent / "line.wav").write_bytes(wav)
            samples, sr = soundfile.read(path.parent / "line.wav", dtype="float32")
            parts += [_resample(samples, sr, rate), np.zeros(int(0.6 * rate), np.float32)]
    else:
        samples, sr = soundfile.read(REPO / "tests" / "data" / "clips" / "tv_minute.flac", dtype="float32")
        parts.append(_resample(samples if samples.ndim == 1 else samples.mean(axis=1), sr, rate))
    speech = np.concatenate(parts)
    room = 0.003 * np.random.default_rng(1).standard_normal(len(speech)).astype(np.float32)
    soundfile.write(path, 0.5 * speech / max(1e-6, float(np.abs(speech).max())) + room, rate, subtype="PCM_16")
    return path


def _resample(samples: np.ndarray, rate: int, target: int) -> np.ndarray:
    import soxr

    return np.asarray(soxr.resample(samples, rate, target), dtype=np.float32)


def launch_chromium(playwright: Any, microphone: Path, chromium: Path) -> Any:
    """Headless Chromium whose microphone plays ``microphone`` (a WAV, in a loop), with the
    permission prompt answered yes, as a person would."""
    return playwright.chromium.launch(
        executable_path=str(chromium),
        args=[
            "--no-sandbox",  # CI runs as root
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
            f"--use-file-for-fake-audio-capture={microphone}",
        ],
    )


def register(page: Any, base: str, name: str) -> None:
    """Fill the registration form as a person would, by its labels, and submit it."""
    page.goto(base + "/")
    page.get_by_label(re.compile("^(Name|이름)$")).first.fill(name)
    page.get_by_label(re.compile("^(Year of birth|태어난 해)$")).fill("1942")
    page.get_by_label(re.compile("^(Address|주소)$")).fill("서울시 중구 세종대로 110")
    page.locator("fieldset.contact [name=c_name]").fill("Kim Min-ji")
    page.locator("fieldset.contact [name=c_relation]").fill("granddaughter")
    page.locator("fieldset.contact [name=c_phone]").fill("+82 10 1234 5678")
    page.locator("[name=consent_recording]").check()
    page.locator("[name=consent_location]").check()
    page.locator("[name=consent_share_profile]").check()
    page.locator("button[type=submit][form=register-form]").click()
    page.locator("#view-listen").wait_for(state="visible", timeout=10_000)
    assert page.evaluate("localStorage.getItem('hearo.token')"), "the token is kept in the browser"
    assert "token" not in page.url


def start_listening(page: Any) -> None:
    page.locator("#listen-start").click()
    page.locator("#listen-status[data-listening=true]").wait_for(timeout=20_000)


def screenshot(page: Any, name: str, full_page: bool = False) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path
