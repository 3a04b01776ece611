"""`hearo run`: start inference, gateway and alerting worker as child processes and keep them up.

Embedded mode is for one machine; docker-compose and k8s run the same `hearo serve ...`
commands as separate containers. A child that dies is restarted with backoff, because a
monitoring service that silently stops listening is the failure we exist to prevent.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field

import httpx
from rich.console import Console

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
            if httpx.get(child.health_url, timeout=2.0).status_code == 200:
                return True
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    return False


def build_children(host: str, port: int, inference_port: int, with_agency: bool) -> list[Child]:
    """The processes of the embedded system, in start order."""
    py = [sys.executable, "-m", "hearo"]
    inference_url = f"ws://127.0.0.1:{inference_port}/v1/windows"
    public_base = f"http://{'127.0.0.1' if host in ('0.0.0.0', '::') else host}:{port}"
    # Clip links in reports point at the gateway, which serves signed local clips.
    shared_env = {"HEARO_PUBLIC_BASE_URL": os.environ.get("HEARO_PUBLIC_BASE_URL", public_base)}
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
            [*py, "serve", "gateway", "--host", host, "--port", str(port)],
            f"{public_base}/healthz",
            env={
                **shared_env,
                "HEARO_GATEWAY_INFERENCE_URL": os.environ.get("HEARO_GATEWAY_INFERENCE_URL", inference_url),
            },
        ),
        Child("alerting", [*py, "serve", "alerting"], None, env=shared_env),
    ]
    return children


def _agency_notice() -> str:
    # Read as the agency child reads them (same environment and working folder), so the
    # generated password shown is the one it checks.
    from hearo.agency import AgencySettings, login_notice

    return f"{login_notice(AgencySettings())} — the reports it received"


def run_system(host: str, port: int, inference_port: int, with_agency: bool = True) -> int:
    """Run until interrupted; returns the process exit code."""
    from shared.db import database_url_from_env, upgrade_database

    url = database_url_from_env()
    upgrade_database(url)
    console.print(f"[green]database ready[/] ({url.split('://', 1)[0]})")

    children = build_children(host, port, inference_port, with_agency)
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
            f"\n[bold]Hear-o is running.[/] Open the web app: http://{host}:{port}/\n"
            f"REST API and docs: http://{host}:{port}/docs\n"
            f"Register a device:  .venv/bin/hearo device register --name 'Your name' --birth-year 1942\n"
            f"Stream a recording: .venv/bin/hearo stream FILE.wav --token TOKEN\n"
            + (f"{_agency_notice()}\n" if with_agency else "")
            + "Press Ctrl-C to stop.\n"
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
