"""`hearo bench load` against a real ``hearo run``: two homes, 20 s each at real time, both
smoke alarms detected with a finite latency, every incident the bench opened cancelled and
nothing reported to the drill agency. `hearo bench soak`: three short rounds that hold, with
the gateway's tasks, sockets and pool read halfway through each."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from tests.web_support import HEARO, hearo_run

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

BENCH_S = 120.0


def inference_port(hearo_run_pid: int) -> str:
    argv = Path(f"/proc/{hearo_run_pid}/cmdline").read_bytes().decode().split("\0")
    return argv[argv.index("--inference-port") + 1]


def test_two_homes_alarms_are_detected_and_every_incident_is_cancelled(tmp_path: Path) -> None:
    results = tmp_path / "bench.json"
    with hearo_run(tmp_path) as system:
        env = {key: value for key, value in os.environ.items() if not key.startswith("HEARO_")}
        bench = subprocess.run(
            [str(HEARO), "bench", "load", "--clients", "2", "--seconds", "20", "--url", system.base,
             "--inference-url", f"http://127.0.0.1:{inference_port(system.pid)}",
             # The detector's own delay (about 3 s for this alarm) is not what this test holds.
             "--bound", "lag", "--max-p99", "1.5", "--json", str(results)],
            cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BENCH_S, check=False,
        )  # fmt: skip
        assert bench.returncode == 0, f"{bench.stdout}\n{bench.stderr}\n{system.log_tail()}"
        reports = system.agency_reports()
    result = json.loads(results.read_text())
    detections = result["detections"]
    assert (detections["events"], detections["detected"], detections["missed"]) == (2, 2, 0), result
    assert detections["spurious"] == 0, result
    assert 0 < detections["latency"]["max"] < 10.0, result
    assert result["windows"] > 0 and result["dropped"] == 0, result
    assert (result["incidents_opened"], result["incidents_cancelled"], result["incidents_unresolved"]) == (2, 2, 0)
    assert result["batch_windows_mean"] is not None and result["gateway"]["cpu_cores"] is not None, result
    assert reports == []


def test_a_short_soak_holds_and_reads_what_a_leak_would_grow(tmp_path: Path) -> None:
    results = tmp_path / "soak.json"
    env = {key: value for key, value in os.environ.items() if not key.startswith("HEARO_")}
    bench = subprocess.run(
        [str(HEARO), "bench", "soak", "--clients", "2", "--minutes", "0", "--round-seconds", "15", "--start-system",
         "--json", str(results)],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=BENCH_S + 60, check=False,
    )  # fmt: skip
    assert bench.returncode == 0, f"{bench.stdout}\n{bench.stderr}"
    result = json.loads(results.read_text())
    assert result["holds"] and (result["events"], result["missed"], result["dropped"]) == (6, 0, 0), result
    assert len(result["rounds"]) == len(result["footprints"]) == 3, result
    last = result["footprints"][-1]
    # Halfway through a round, with both sessions open: the gateway's tasks and its pool are read.
    assert last["gateway_tasks"] > 0 and last["gateway_db_connections"] >= 1 and last["gateway_sockets"] >= 2, last
    assert set(result["growth"]) == set(last) - {"at_s"} and all(g is not None for g in result["growth"].values())
