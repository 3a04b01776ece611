"""`hearo run --lan`: a phone on the home's network gets a secure page, so the microphone works.

A browser gives a page the microphone only in a secure context; from another device that
means HTTPS. Headless Chromium opens the web app at this machine's network address (not
loopback, which browsers trust anyway), accepts the self-signed certificate as the owner
would after comparing its fingerprint, registers, and listens: scores come back over ``wss://``.
"""

from __future__ import annotations

import hashlib
import ssl
from pathlib import Path
from typing import Any

import httpx
import pytest

from hearo.lan_tls import lan_addresses
from tests.web_support import chromium_or_skip, hearo_run, launch_chromium, register, start_listening, write_conversation

pytestmark = [pytest.mark.e2e, pytest.mark.slow]


def test_a_phone_on_the_network_listens_over_https(tmp_path: Path) -> None:
    chromium = chromium_or_skip()
    from playwright.sync_api import sync_playwright

    addresses = lan_addresses()
    if not addresses:
        pytest.skip("this machine has no network address besides loopback")
    microphone = write_conversation(tmp_path / "conversation.wav")
    home = tmp_path / "home"
    home.mkdir()
    with hearo_run(home, "--lan") as system:
        assert system.cert is not None
        port = system.base.rsplit(":", 1)[1]
        lan_base = f"https://{addresses[0]}:{port}"
        log = system.log.read_text(errors="replace")
        assert f"{lan_base}/" in log, "the banner names the address to open on the phone"
        # The fingerprint the banner shows is the certificate the gateway serves.
        served = ssl.get_server_certificate((addresses[0], int(port)))
        fingerprint = hashlib.sha256(ssl.PEM_cert_to_DER_cert(served)).hexdigest()
        assert ":".join(fingerprint[i: i + 2] for i in range(0, 64, 2)).upper() in log
        # HTTPS only, checked against this home's certificate; plain HTTP gets no page.
        assert httpx.get(f"{lan_base}/healthz", verify=system.verify, timeout=10).status_code == 200
        with pytest.raises(httpx.HTTPError):
            httpx.get(f"http://{addresses[0]}:{port}/healthz", timeout=10)

        with sync_playwright() as playwright, launch_chromium(playwright, microphone, chromium) as chrome:
            page: Any = chrome.new_page(ignore_https_errors=True, locale="en-US")
            register(page, lan_base, "Kim Young-ja")
            assert page.evaluate("window.isSecureContext") is True
            start_listening(page)
            page.wait_for_function("() => [...document.querySelectorAll('#scores .score-value')]"
                                   ".some(e => e.textContent.endsWith('%'))", timeout=30_000)
