"""``--start-system``: ``hearo run`` on embedded defaults in a temporary folder, for the bench.

As a fresh clone runs it (no ``HEARO_*`` setting from the calling shell, SQLite and secrets
under the folder's ``var/``), on free ports, without the drill agency (the bench cancels every
incident, so nothing is ever reported), and with the registration and REST rate limits raised
so that one address may register and drive hundreds of bench homes. Its whole process group
is stopped at the end.

With ``gateways`` above one, the box runs as docker-compose runs it: that many gateway
processes over one PostgreSQL database (``database_url``: SQLite refused several gateways'
writes under load, and incidents could not be recorded) and one inference service, their
incident updates, revocations and settings shared through Redis (``redis_url``; pub/sub channels
are global, so use a Redis no other Hear-o uses). ``hearo run`` migrates the database and starts
the first gateway; the bench starts the others beside it, in the same folder.
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
def embedded_system(
    max_sessions: int, gate: bool = True, gateways: int = 1, redis_url: str = "", database_url: str = ""
) -> Iterator[Target]:
    """A running ``hearo run`` admitting ``max_sessions`` streams per gateway, with the novelty
    gate on (its default) or off, and ``gateways`` gateway processes (more than one needs
    ``redis_url`` and a PostgreSQL ``database_url``); its target, until the end."""
    if gateways > 1 and not (redis_url and database_url.startswith("postgresql")):
        raise ValueError("several gateways need Redis (redis_url) and a PostgreSQL database (database_url)")
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
        if gateways > 1:
            env["HEARO_REDIS_URL"] = redis_url
        if database_url:
            env["HEARO_DATABASE_URL"] = database_url
        processes: list[tuple[subprocess.Popen[bytes], Path]] = []
        try:
            processes.append(_start(
                [sys.executable, "-m", "hearo", "run", "--no-agency", "--port", str(port), "--inference-port", str(inference_port)],
                folder, env, "hearo-run.log",
            ))  # fmt: skip
            target = Target(f"http://127.0.0.1:{port}", f"http://127.0.0.1:{inference_port}")
            _wait_ready(*processes[0], target.api_url, READY_LINE)
            more = []
            for index in range(1, gateways):
                extra = free_port()
                # As hearo run starts its gateway; the folder's var/ holds the secrets and the database.
                gateway_env = {**env, "HEARO_GATEWAY_INFERENCE_URL": f"ws://127.0.0.1:{inference_port}/v1/windows",
                               "HEARO_PUBLIC_BASE_URL": f"http://127.0.0.1:{port}"}  # fmt: skip
                argv = [sys.executable, "-m", "hearo", "serve", "gateway", "--host", "127.0.0.1", "--port", str(extra)]
                processes.append(_start(argv, folder, gateway_env, f"gateway-{index}.log"))
                more.append(f"http://127.0.0.1:{extra}")
            for (process, log), url in zip(processes[1:], more):
                _wait_ready(process, log, url, None)
            yield Target(target.api_url, target.inference_url, tuple(more))
        finally:
            for process, _ in reversed(processes):
                _stop_group(process)


def _start(argv: list[str], folder: str, env: dict[str, str], log_name: str) -> tuple[subprocess.Popen[bytes], Path]:
    log = Path(folder) / log_name
    with log.open("wb") as out:
        process = subprocess.Popen(argv, cwd=folder, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    return process, log


def _wait_ready(process: subprocess.Popen[bytes], log: Path, api_url: str, ready_line: str | None) -> None:
    """Until the gateway at ``api_url`` is connected to inference (and ``ready_line`` is logged)."""
    deadline = time.monotonic() + STARTUP_S
    while True:
        if process.poll() is not None:
            raise SystemDidNotStart(f"{log.stem} exited with {process.returncode}:\n{_tail(log)}")
        if time.monotonic() > deadline:
            raise SystemDidNotStart(f"{log.stem} was not ready within {STARTUP_S:g} s:\n{_tail(log)}")
        try:
            health = httpx.get(f"{api_url}/healthz", timeout=2.0).json()
        except (httpx.HTTPError, ValueError):
            health = None
        logged = ready_line is None or ready_line in log.read_text(errors="replace")
        if health and health["inference"]["connected"] and logged:
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
