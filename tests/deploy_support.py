"""docker-compose.yml read as the containers would get it, to run its services natively.

No container engine runs in CI, so the deploy tests take each hearo service's ``command`` and
``environment`` from the compose file itself (interpolated with an ``.env`` made by
``deploy/make_env.py``), map the compose host names to the test machine's servers and free
loopback ports, and run the command as a process. What compose gives a container is what
the test runs; nothing is restated here.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import yaml

from tests.alerting_support import free_port

REPO = Path(__file__).resolve().parents[1]
COMPOSE_FILE = REPO / "docker-compose.yml"
# docker/Dockerfile: HEARO_DATA_DIR and the working folder of every image.
IMAGE_DATA_DIR = "/var/lib/hearo"
_VARIABLE = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")


def load_make_env() -> Any:
    """``deploy/make_env.py`` as a module (it is a script, not part of a package)."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("make_env", REPO / "deploy" / "make_env.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def dotenv(**overrides: str) -> dict[str, str]:
    """The variables of an ``.env`` made as the README says (``make_env.py``), with ``overrides``."""
    make_env = load_make_env()
    variables: dict[str, str] = make_env.parse(make_env.render(make_env.EXAMPLE.read_text(), make_env.generated()))
    return {**variables, **overrides}


def interpolate(value: str, variables: Mapping[str, str]) -> str:
    """Compose's interpolation: ``${X}``, ``${X:-default}``, ``${X-default}``, ``${X:?error}``, ``$$``."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name, operator, argument = match.group(1), match.group(2), match.group(3) or ""
        current = variables.get(name)
        empty = current is None or (operator is not None and operator.startswith(":") and current == "")
        if operator in (":?", "?") and empty:
            raise KeyError(f"{name} is required: {argument}")
        if operator in (":-", "-") and empty:
            return argument
        return current or ""

    return _VARIABLE.sub(one, value)


def load_compose(path: Path = COMPOSE_FILE) -> dict[str, Any]:
    """The compose file as YAML (anchors and ``<<`` merges resolved), not interpolated."""
    data: dict[str, Any] = yaml.safe_load(path.read_text())
    return data


@dataclass
class ServiceSpec:
    """One compose service as a container gets it: its command and its environment."""

    name: str
    command: list[str]
    environment: dict[str, str]
    replicas: int = 1


def service_spec(compose: Mapping[str, Any], name: str, variables: Mapping[str, str]) -> ServiceSpec:
    service = compose["services"][name]
    environment = service.get("environment") or {}
    if isinstance(environment, list):
        environment = dict(item.split("=", 1) for item in environment)
    return ServiceSpec(
        name=name,
        command=[interpolate(str(part), variables) for part in service["command"]],
        environment={key: interpolate(str(value), variables) for key, value in environment.items()},
        replicas=int((service.get("deploy") or {}).get("replicas", 1)),
    )


def map_hosts(value: str, hosts: Mapping[str, str], redis_db_offset: int) -> str:
    """``value`` with each compose ``name:port`` (a key of ``hosts``) replaced by the
    ``host:port`` where the test runs that service.

    Redis here has no password and other tests use its low database numbers, so a Redis URL
    loses its credentials and its database number is shifted by ``redis_db_offset``.
    """
    for name_port, address in hosts.items():
        value = re.sub(rf"(?<=[/@]){re.escape(name_port)}(?![0-9])", address, value)
    value = re.sub(r"redis://[^@/]*@", "redis://", value)
    return re.sub(r"(redis://[^/]+/)(\d+)", lambda m: f"{m.group(1)}{int(m.group(2)) + redis_db_offset}", value)


@dataclass
class NativeService:
    """One replica of a compose service, run as a process of this machine."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    port: int | None = None  # where it listens (its --port, or its metrics port)
    health_path: str = "/healthz"
    process: subprocess.Popen[bytes] | None = field(default=None, repr=False)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> NativeService:
        with open(self.log_path, "ab") as log:
            self.process = subprocess.Popen(
                self.argv, cwd=REPO, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        return self

    def wait_healthy(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            assert self.process is not None
            if self.process.poll() is not None:
                raise AssertionError(f"{self.name} exited {self.process.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + self.health_path, timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise AssertionError(f"{self.name} was not healthy after {timeout_s} s:\n{self.log()}")

    def run_to_completion(self, timeout_s: float) -> None:
        self.start()
        assert self.process is not None
        code = self.process.wait(timeout_s)
        assert code == 0, f"{self.name} exited {code}:\n{self.log()}"

    def kill(self) -> None:
        """SIGKILL: the crash that no shutdown handler sees."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()
        try:
            self.process.wait(15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(10)

    def log(self, chars: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:] if self.log_path.exists() else ""


def native_argv(command: list[str], port: int | None) -> list[str]:
    """The compose ``command`` for this machine: ``hearo`` through this Python, loopback, ``port``."""
    argv = list(command)
    if argv and argv[0] == "hearo":
        argv = [sys.executable, "-m", "hearo", *argv[1:]]
    for i, part in enumerate(argv[:-1]):
        if part == "--host":
            argv[i + 1] = "127.0.0.1"
        elif part == "--port" and port is not None:
            argv[i + 1] = str(port)
    return argv


def native_env(spec: ServiceSpec, hosts: Mapping[str, str], data_dir: Path, redis_db_offset: int,
               overrides: Mapping[str, str]) -> dict[str, str]:  # fmt: skip
    """The process environment: this machine's, minus any HEARO_* of the caller, plus the service's."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("HEARO_", "AWS_"))}
    # The image's data folder (HEARO_DATA_DIR, volumes) is the replica's own folder here.
    env.update({
        k: map_hosts(v, hosts, redis_db_offset).replace(IMAGE_DATA_DIR, str(data_dir))
        for k, v in spec.environment.items()
    })  # fmt: skip
    env["HEARO_DATA_DIR"] = str(data_dir)
    env["PYTHONPATH"] = str(REPO)
    env.update(overrides)
    return env


def replicas(spec: ServiceSpec, hosts: Mapping[str, str], root: Path, redis_db_offset: int,
             overrides: Mapping[str, str] | None = None) -> list[NativeService]:  # fmt: skip
    """Each replica of ``spec`` ready to start, on its own free port and data folder."""
    services = []
    for index in range(spec.replicas):
        name = spec.name if spec.replicas == 1 else f"{spec.name}-{index + 1}"
        data_dir = root / name
        data_dir.mkdir(parents=True, exist_ok=True)
        env = native_env(spec, hosts, data_dir, redis_db_offset, overrides or {})
        port: int | None = None
        health = "/healthz"
        if "--port" in spec.command:
            port = free_port()
        for key in env:
            if key.startswith("HEARO_") and key.endswith("_METRICS_PORT") and key in spec.environment:
                port = free_port()
                env[key] = str(port)
                health = "/metrics"
        services.append(NativeService(name, native_argv(spec.command, port), env, root / f"{name}.log", port, health))
    return services
