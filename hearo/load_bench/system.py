"""``--start-system``: ``hearo run`` on embedded defaults in a temporary folder, for the bench.

As a fresh clone runs it (no ``HEARO_*`` setting from the calling shell, SQLite and secrets
under the folder's ``var/``), on free ports, without the drill agency (the bench cancels every
incident, so nothing is ever reported), and with the registration and REST rate limits raised
so that one address may register and drive hundreds of bench homes. Its whole process group
is stopped at the end.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from hearo.load_bench.measure import Target

STARTUP_S = 180.0  # inference loads its model; slower on a busy box
STOP_S = 15.0
READY_LINE = "Hear-o is running"
_GENEROUS = json.dumps({"burst": 100_000, "per_minute": 100_000})


class SystemDidNotStart(RuntimeError):
    """``hearo run`` exited or was not ready in time; the message ends with its log's tail."""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def embedded_system(max_sessions: int, gate: bool = True) -> Iterator[Target]:
    """A running ``hearo run`` admitting ``max_sessions`` streams, with the novelty gate on
    (its default) or off; its target, until the end."""
    with tempfile.TemporaryDirectory(prefix="hearo-bench-") as folder:
        port, inference_port = free_port(), free_port()
        env = {key: value for key, value in os.environ.items() if not key.startswith("HEARO_")}
        env.update(
            HEARO_GATEWAY_REGISTRATION_PER_IP=_GENEROUS,
            HEARO_GATEWAY_REST_PER_IP=_GENEROUS,
            HEARO_GATEWAY_MAX_SESSIONS=str(max_sessions),
        )
        if not gate:
            env["HEARO_GATEWAY_NOVELTY_GATE"] = '{"enabled": false}'
        log = Path(folder) / "hearo-run.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [sys.executable, "-m", "hearo", "run", "--no-agency",
                 "--port", str(port), "--inference-port", str(inference_port)],
                cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            )  # fmt: skip
        try:
            target = Target(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{inference_port}")
            _wait_ready(process, target, log)
            yield target
        finally:
            _stop_group(process)


def _wait_ready(process: subprocess.Popen[bytes], target: Target, log: Path) -> None:
    deadline = time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            raise SystemDidNotStart(f"hearo run exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise SystemDidNotStart(f"hearo run was not ready within {STARTUP_S:g} s:\n{_tail(log)}")
        try:
            health = httpx.get(f"{target.api_url}/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            health = None
        if health and health["inference"]["connected"] and READY_LINE in log.read_text(errors="replace"):
            return
        time.sleep(0.5)


def _tail(log: Path, chars: int = 3000) -> str:
    return log.read_text(errors="replace")[-chars:]


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    # SIGTERM lets the supervisor stop its children; SIGKILL then takes any it did not get to.
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        try:
            process.wait(STOP_S)
        except subprocess.TimeoutExpired:
            continue
    if process.poll() is None:
        process.wait(STOP_S)
