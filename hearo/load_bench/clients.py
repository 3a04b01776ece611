"""The client side: paced WebSocket homes, many per process, in a pool of processes.

Each process (:func:`run_homes`) makes its homes' recordings, waits for the common start
time, then runs one asyncio task per home: ``start``, 100 ms PCM16 frames each sent when the
audio it holds would have been captured (real time, as a microphone), ``stop``, and the
gateway's close. Homes are independent, so each starts streaming at its own phase of the
gateway's hop (``ready``'s ``hop_s``), spread evenly: the hop's work (a window's features, the
alarm pattern detector, the model request) then arrives spread over the hop, as from real
homes, not all in the same 100 ms of it. ``aligned`` keeps every home in phase: the worst case,
as when a gateway's sessions all reconnect at once. Every incident a detection opens is
cancelled at once over REST, so the bench never reports anything to an agency. A process
returns what its homes heard and the CPU it used, which the report keeps apart from the
servers'. The processes run uvloop, as the servers do, and leave the ``scores`` messages
unparsed (the bench reads detections and errors): the clients share the box with the servers,
so what they cost is capacity the servers lose.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import uvloop
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from hearo.load_bench.accounting import HeardDetection
from hearo.load_bench.audio import PlannedEvent, home_recording, household_files
from shared.protocol import ENCODING, StartMessage, StopMessage

FRAME_S = 0.1
CLOSE_TIMEOUT_S = 30.0  # after ``stop``: the end's windows, then the close once incidents are resolved
CANCEL_TRIES = 5
# The start of every ``scores`` message: the gateway writes ``type`` first (``shared.protocol``).
SCORES_PREFIX = '{"type":"scores"'
# Home i starts streaming at this fraction (mod 1) of a hop times i: the golden ratio's spread
# leaves no two homes of any number close in phase.
_PHASE_STEP = 0.6180339887


@dataclass(frozen=True)
class Home:
    index: int
    token: str
    event: PlannedEvent
    stream_url: str  # the gateway this home streams to (homes are spread over a box's gateways)


@dataclass(frozen=True)
class ProcessPlan:
    """What one client process runs: its homes, the REST API its cancels go to, and from when
    (``start_at``: epoch s)."""

    api_url: str
    homes: list[Home]
    seconds: float
    sample_rate: int
    start_at: float
    household: str | None = None
    aligned: bool = False  # every home at the same phase of the hop (the module docstring)


@dataclass
class HomeReport:
    """What one home's session heard and did."""

    index: int
    detections: list[HeardDetection] = field(default_factory=list)
    incidents: set[str] = field(default_factory=set)
    cancelled: set[str] = field(default_factory=set)
    behind_warnings: int = 0
    errors: list[str] = field(default_factory=list)
    close_code: int | None = None


@dataclass(frozen=True)
class ProcessReport:
    homes: list[HomeReport]
    cpu_s: float  # this client process's CPU time while streaming


def stream_phase_s(index: int, hop_s: float) -> float:
    """How long home ``index`` waits after its ``ready`` to start streaming: its own phase of
    the gateway's hop, in ``[0, hop_s)``."""
    return (index * _PHASE_STEP) % 1.0 * hop_s


def run_homes(plan: ProcessPlan) -> ProcessReport:
    """A pool worker's entry point: stream every home of ``plan``; blocks until they end."""
    household = household_files(Path(plan.household)) if plan.household else None
    recordings = [home_recording(h.index, plan.seconds, plan.sample_rate, h.event, household) for h in plan.homes]
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(plan, recordings))


async def _run(plan: ProcessPlan, recordings: list[bytes]) -> ProcessReport:
    await asyncio.sleep(max(0.0, plan.start_at - time.time()))
    cpu_start = time.process_time()
    async with httpx.AsyncClient(base_url=plan.api_url, timeout=10.0) as api:
        homes = [_HomeSession(plan, home, pcm, api) for home, pcm in zip(plan.homes, recordings, strict=True)]
        await asyncio.gather(*(h.run() for h in homes))
    return ProcessReport([h.report for h in homes], time.process_time() - cpu_start)


class _HomeSession:
    def __init__(self, plan: ProcessPlan, home: Home, pcm: bytes, api: httpx.AsyncClient) -> None:
        self.plan, self.home, self.pcm, self.api = plan, home, pcm, api
        self.report = HomeReport(home.index)
        self.frame_bytes = round(plan.sample_rate * FRAME_S) * 2
        self.sent_at: list[float] = []  # monotonic time each frame went out
        self.cancels: list[asyncio.Task[None]] = []

    async def run(self) -> None:
        # Homes in one process start a little apart, as real ones would, not in lockstep.
        await asyncio.sleep((self.home.index * 0.037) % FRAME_S)
        try:
            async with connect(self.home.stream_url, open_timeout=30, max_size=1 << 20, compression=None) as ws:
                start = StartMessage(token=self.home.token, encoding=ENCODING, sample_rate=self.plan.sample_rate,
                                     channels=1, frame_ms=round(FRAME_S * 1000))  # fmt: skip
                await ws.send(start.model_dump_json(exclude_none=True))
                ready = json.loads(await ws.recv())
                if ready.get("type") != "ready":
                    self.report.errors.append(f"refused: {ready}")
                    return
                listener = asyncio.create_task(self._listen(ws))
                if not self.plan.aligned:
                    await asyncio.sleep(stream_phase_s(self.home.index, float(ready["hop_s"])))
                await self._send_audio(ws)
                await ws.send(StopMessage().model_dump_json())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(listener, CLOSE_TIMEOUT_S)
                self.report.close_code = ws.close_code
        except (OSError, TimeoutError, ConnectionClosed) as exc:
            self.report.errors.append(f"connection: {exc!r}")
        if self.cancels:
            await asyncio.gather(*self.cancels)

    async def _send_audio(self, ws: ClientConnection) -> None:
        loop = asyncio.get_running_loop()
        t0 = loop.time()
        for k, offset in enumerate(range(0, len(self.pcm), self.frame_bytes)):
            # A microphone hands over a frame once its last sample is captured.
            await asyncio.sleep(max(0.0, t0 + (k + 1) * FRAME_S - loop.time()))
            await ws.send(self.pcm[offset : offset + self.frame_bytes])
            self.sent_at.append(loop.time())

    async def _listen(self, ws: ClientConnection) -> None:
        with contextlib.suppress(ConnectionClosed):
            async for raw in ws:
                if isinstance(raw, str) and not raw.startswith(SCORES_PREFIX):
                    self._heard(json.loads(raw), asyncio.get_running_loop().time())

    def _heard(self, message: dict[str, object], arrived: float) -> None:
        kind = message.get("type")
        if kind == "detection":
            stream_time = float(message["stream_time_s"])  # type: ignore[arg-type]
            self.report.detections.append(HeardDetection(
                str(message["class"]), stream_time,
                latency_s=round(arrived - self._sent_at(int(self.home.event.onset_s / FRAME_S + 1e-9)), 4),
                lag_s=round(arrived - self._sent_at(math.ceil(stream_time / FRAME_S - 1e-9) - 1), 4),
            ))  # fmt: skip
            incident = message.get("incident_id")
            if isinstance(incident, str) and incident not in self.report.incidents:
                self.report.incidents.add(incident)
                self.cancels.append(asyncio.create_task(self._cancel(incident)))
        elif kind == "error":
            if message.get("code") == "behind":
                self.report.behind_warnings += 1
            else:
                self.report.errors.append(f"{message.get('code')}: {message.get('message')}")

    def _sent_at(self, frame: int) -> float:
        """When frame ``frame`` went out (the last one for frames past the audio: the windows
        the end's silence completes). The onset's frame holds its first sample; a window's
        last frame ends at its end."""
        if not self.sent_at:
            return asyncio.get_running_loop().time()
        return self.sent_at[max(0, min(len(self.sent_at) - 1, frame))]

    async def _cancel(self, incident_id: str) -> None:
        headers = {"Authorization": f"Bearer {self.home.token}"}
        for _ in range(CANCEL_TRIES):
            try:
                response = await self.api.post(f"/v1/incidents/{incident_id}/cancel",
                                               json={"reason": "hearo bench load"}, headers=headers)  # fmt: skip
            except httpx.HTTPError as exc:
                self.report.errors.append(f"cancel {incident_id}: {exc!r}")
                await asyncio.sleep(1.0)
                continue
            if response.status_code == 429:  # the REST rate limit: wait as told, then again
                await asyncio.sleep(float(response.headers.get("Retry-After", "1")))
                continue
            if response.status_code == 200:
                self.report.cancelled.add(incident_id)
            else:
                self.report.errors.append(f"cancel {incident_id}: {response.status_code} {response.text[:200]}")
            return
