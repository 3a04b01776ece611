"""A real-time stream's answer latency from the inference service, alone and under a flood.

The inference service runs as deployed (uvicorn in its own process, the model it is
configured with: ``default`` unless ``HEARO_INFERENCE_MODEL`` says otherwise). A light
client, the gateway's InferenceClient, sends one window per 0.5 s hop for each of
``--streams`` real-time streams and times each answer; prints its p50, p99 and max, first
alone, then while a second, authenticated client floods the service from ``--connections``
connections (another process) with 32-window requests as fast as the sockets take them (the
issue 12 F1 probe). Also prints what the service counted: windows refused or shed by reason,
and how many of the flood's requests were answered with scores or ``overloaded``.

Issue 12's target: under the flood, a real-time stream's p99 answer latency <= 1.5 s, and
none of its windows shed.

    .venv/bin/python bench/bench_inference_flood.py [--seconds 20] [--streams 1] [--connections 4]
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass

import httpx
import numpy as np
import torch
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from services.gateway.inference_client import InferenceClient, InferenceError
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings
from shared.inference_wire import Hello, InferenceErrorMessage, WindowsRequest, decode_control, encode_control

HOP_S = 0.5  # a real-time stream sends one window per hop
TARGET_P99_S = 1.5


@dataclass
class Latencies:
    answered: list[float]
    failed: Counter[str]

    def p99(self) -> float:
        ordered = sorted(self.answered)
        return ordered[min(len(ordered) - 1, round(0.99 * (len(ordered) - 1)))] if ordered else float("inf")

    def line(self) -> str:
        if not self.answered:
            return f"no answers; failed: {dict(self.failed)}"
        ms = sorted(1000 * s for s in self.answered)
        failed = ", ".join(f"{n} {code}" for code, n in self.failed.items()) or "none"
        return (
            f"{len(ms)} answered: p50 {statistics.median(ms):7.1f} ms, p99 "
            f"{1000 * self.p99():7.1f} ms, max {ms[-1]:7.1f} ms; not answered: {failed}"
        )


async def real_time_streams(url: str, token: str, streams: int, seconds: float) -> Latencies:
    """``streams`` streams each sending one window per hop for ``seconds``; every answer timed."""
    client = InferenceClient(url, None, None, token=token, timeout=10.0)
    ready = await client.connect()
    window = torch.randn(1, ready.spec.window_frames, ready.spec.n_mels) * 0.5 - 0.5
    result = Latencies([], Counter())

    async def stream(offset: float) -> None:
        await asyncio.sleep(offset)
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            started = time.perf_counter()
            try:
                await client.classify(window)
                result.answered.append(time.perf_counter() - started)
            except InferenceError as exc:
                result.failed[getattr(getattr(exc, "code", None), "value", type(exc).__name__)] += 1
            await asyncio.sleep(max(0.0, HOP_S - (time.perf_counter() - started)))

    try:
        await asyncio.gather(*(stream(HOP_S * i / streams) for i in range(streams)))
    finally:
        await client.close()
    return result


def flood(url: str, token: str, connections: int, seconds: float, answers: dict[str, int]) -> None:
    """The flooding client (run in its own process): 32-window requests, as fast as possible."""

    async def one(counts: Counter[str]) -> None:
        async with connect(url, compression=None, additional_headers={"Authorization": f"Bearer {token}"}) as ws:
            await ws.send(encode_control(Hello(None, None)))
            ready = decode_control(await ws.recv())
            shape = (ready.max_batch, ready.spec.window_frames, ready.spec.n_mels)  # type: ignore[union-attr]
            frame = WindowsRequest(1, np.full(shape, -0.5, np.float32)).encode()

            async def read() -> None:
                try:
                    async for message in ws:
                        if isinstance(message, bytes):
                            counts["scores"] += 1
                        else:
                            control = decode_control(message)
                            counts[control.code.value if isinstance(control, InferenceErrorMessage) else "other"] += 1
                except ConnectionClosed:
                    pass

            reader = asyncio.create_task(read())
            deadline = time.perf_counter() + seconds
            while time.perf_counter() < deadline:
                await ws.send(frame)
                counts["sent"] += 1
            await asyncio.sleep(1.0)  # the last answers
            reader.cancel()

    async def run() -> None:
        counts: Counter[str] = Counter()
        await asyncio.gather(*(one(counts) for _ in range(connections)))
        answers.update(counts)

    asyncio.run(run())


def start_service(port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "services.inference.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    )  # fmt: skip


async def wait_ready(port: int) -> None:
    async with httpx.AsyncClient() as http:
        while True:
            try:
                if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            await asyncio.sleep(0.2)


def shed_counts(metrics: str) -> dict[str, float]:
    return {
        reason: float(value)
        for reason, value in re.findall(r'^hearo_inference_shed_windows_total\{reason="(\w+)"\} (\S+)$', metrics, re.M)
    }


async def main_async(args: argparse.Namespace) -> None:
    settings = InferenceSettings()
    token = settings.accepted_tokens()[0]  # the service child reads the same (environment, data folder)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    url = f"ws://127.0.0.1:{port}/v1/windows"
    entry = default_registry().get(settings.model)
    print(
        f"model {entry.name} on {settings.torch_device()}, max_batch {settings.max_batch}, queue "
        f"{settings.queue_size} windows ({settings.client_queue_size()} per connection), "
        f"{args.streams} real-time stream(s), {args.seconds} s per phase"
    )
    server = start_service(port)
    try:
        await wait_ready(port)
        alone = await real_time_streams(url, token, args.streams, args.seconds)
        print(f"\nalone:      {alone.line()}")

        answers = multiprocessing.Manager().dict()
        flooder = multiprocessing.get_context("spawn").Process(
            target=flood, args=(url, token, args.connections, args.seconds + 3.0, answers)
        )
        flooder.start()
        await asyncio.sleep(2.0)  # the flood fills the queue first
        flooded = await real_time_streams(url, token, args.streams, args.seconds)
        async with httpx.AsyncClient() as http:
            metrics = (await http.get(f"http://127.0.0.1:{port}/metrics")).text
        await asyncio.to_thread(flooder.join, 30)
        print(f"under flood: {flooded.line()}")
        print(
            f"\nthe flood ({args.connections} connections, 32-window requests): {dict(answers)}"
            f"\nwindows not served, by reason (the service's metrics): {shed_counts(metrics)}"
        )
        met = flooded.p99() <= TARGET_P99_S and not flooded.failed
        print(
            f"\ntarget (p99 <= {TARGET_P99_S} s under the flood, nothing of the stream shed): "
            f"{'met' if met else 'NOT met'}"
        )
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=20.0, help="each phase's length")
    parser.add_argument("--streams", type=int, default=1, help="real-time streams of the light client")
    parser.add_argument("--connections", type=int, default=4, help="the flooding client's connections")
    args = parser.parse_args()
    # The generated development token goes to a scratch folder, not the deployment's var/.
    os.environ.setdefault("HEARO_DATA_DIR", tempfile.mkdtemp(prefix="hearo-bench-"))
    asyncio.run(main_async(args))


if __name__ == "__main__":
    main()
