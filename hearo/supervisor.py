"""`hearo run`: start inference, gateway and alerting worker as child processes and keep them up.

Embedded mode is for one machine; docker-compose and k8s run the same `hearo serve ...`
commands as separate containers. A child that dies is restarted with backoff, because a
monitoring service that silently stops listening is the failure we exist to prevent.
"""

from __future__ import annotations

import os
import signal
import ssl
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
from rich.console import Console

from hearo.lan_tls import LanCertificate, lan_addresses, lan_certificate

console = Console(stderr=True)

# Restarting faster than this means a crash loop; back off up to MAX_BACKOFF_S between tries.
MAX_BACKOFF_S = 30.0
HEALTH_TIMEOUT_S = 120.0


@dataclass
class Child:
    name: str
    argv: list[str]
    health_url: str | None
    env: dict[str, str] = field(default_factory=dict)
    health_verify: ssl.SSLContext | bool = True  # trusting a self-signed HTTPS child's certificate
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    next_start: float = 0.0

    def start(self) -> None:
        self.process = subprocess.Popen(self.argv, env={**os.environ, **self.env})

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _wait_healthy(child: Child, deadline: float) -> bool:
    if child.health_url is None:
        return True
    while time.monotonic() < deadline:
        if child.process is not None and child.process.poll() is not None:
            return False
        try:
            if httpx.get(child.health_url, timeout=2.0, verify=child.health_verify).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def build_children(
    host: str, port: int, inference_port: int, with_agency: bool, tls: LanCertificate | None = None, public_host: str | None = None
) -> list[Child]:
    """The processes of the embedded system, in start order. With ``tls`` the gateway speaks
    HTTPS only; ``public_host`` is the address links in reports and clips point at."""
    py = [sys.executable, "-m", "hearo"]
    inference_url = f"ws://127.0.0.1:{inference_port}/v1/windows"
    scheme = "http" if tls is None else "https"
    local = "127.0.0.1" if host in ("0.0.0.0", "::") else host
    public_base = f"{scheme}://{public_host or local}:{port}"
    # Clip links in reports point at the gateway, which serves signed local clips.
    shared_env = {"HEARO_PUBLIC_BASE_URL": os.environ.get("HEARO_PUBLIC_BASE_URL", public_base)}
    gateway_argv = [*py, "serve", "gateway", "--host", host, "--port", str(port)]
    if tls is not None:
        gateway_argv += ["--ssl-certfile", str(tls.cert), "--ssl-keyfile", str(tls.key)]
    children = []
    if with_agency:
        # The development agencies are webhooks to this receiver; without it reports fail.
        children.append(Child("agency", [*py, "agency"], "http://127.0.0.1:8090/healthz"))
    children += [
        Child(
            "inference",
            [*py, "serve", "inference", "--host", "127.0.0.1", "--port", str(inference_port)],
            f"http://127.0.0.1:{inference_port}/healthz",
        ),
        Child(
            "gateway",
            gateway_argv,
            f"{scheme}://{local}:{port}/healthz",
            env={
                **shared_env,
                "HEARO_GATEWAY_INFERENCE_URL": os.environ.get("HEARO_GATEWAY_INFERENCE_URL", inference_url),
            },
            health_verify=True if tls is None else ssl.create_default_context(cafile=str(tls.cert)),
        ),
        Child("alerting", [*py, "serve", "alerting"], None, env=shared_env),
    ]
    return children


def _web_app_notice(host: str, port: int, tls: LanCertificate | None, addresses: list[str]) -> str:
    if tls is None:
        return f"Open the web app: http://{host}:{port}/"
    where = ", ".join(f"https://{address}:{port}/" for address in addresses) or "(no network address found)"
    return (
        f"Open the web app on a phone or tablet in this network: {where}\n"
        f"On this machine: https://127.0.0.1:{port}/\n"
        f"The browser warns once about this home's own certificate: accept it only if it shows "
        f"the SHA-256 fingerprint {tls.fingerprint}"
    )


def _agency_notice() -> str:
    # Read as the agency child reads them (same environment and working folder), so the
    # generated password shown is the one it checks.
    from hearo.agency import AgencySettings, login_notice

    return f"{login_notice(AgencySettings())} — the reports it received"


def run_system(host: str, port: int, inference_port: int, with_agency: bool = True, lan: bool = False) -> int:
    """Run until interrupted; returns the process exit code. ``lan``: the gateway on every
    interface, over HTTPS with this home's own certificate (``hearo.lan_tls``)."""
    from shared.db import database_url_from_env, upgrade_database
    from shared.settings import ServiceSettings

    url = database_url_from_env()
    upgrade_database(url)
    console.print(f"[green]database ready[/] ({url.split('://', 1)[0]})")

    tls, addresses = None, []
    if lan:
        addresses = lan_addresses()
        tls = lan_certificate(ServiceSettings().data_dir, addresses)
        host = "0.0.0.0"
    children = build_children(host, port, inference_port, with_agency, tls, addresses[0] if addresses else None)
    stopping = False

    def _stop(signum: int, _frame: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)

    try:
        for child in children:
            child.start()
            if not _wait_healthy(child, time.monotonic() + HEALTH_TIMEOUT_S):
                console.print(f"[red]{child.name} did not become healthy; see its log above[/]")
                return 1
            console.print(f"[green]{child.name} is up[/]")
        console.print(
            f"\n[bold]Hear-o is running.[/] {_web_app_notice(host, port, tls, addresses)}\n"
            f"REST API and docs: {'http' if tls is None else 'https'}://{'127.0.0.1' if lan else host}:{port}/docs\n"
            f"Register a device:  .venv/bin/hearo device register --name 'Your name' --birth-year 1942\n"
            f"Stream a recording: .venv/bin/hearo stream FILE.wav --token TOKEN\n"
            + (f"{_agency_notice()}\n" if with_agency else "")
            + "Press Ctrl-C to stop.\n",
            # Addresses and the fingerprint whole, as typed: no wrapping, no ":ab:" emoji.
            soft_wrap=True,
            emoji=False,
        )
        while not stopping:
            now = time.monotonic()
            for child in children:
                assert child.process is not None
                if child.process.poll() is None or now < child.next_start:
                    continue
                # next_start is the earliest time another restart is allowed (crash-loop backoff).
                child.restarts += 1
                console.print(
                    f"[yellow]{child.name} exited with {child.process.returncode}; "
                    f"restarting (#{child.restarts})[/]"
                )
                child.start()
                child.next_start = now + min(MAX_BACKOFF_S, 2.0 ** min(child.restarts, 5))
            time.sleep(0.5)
        return 0
    finally:
        for child in reversed(children):
            child.stop()
