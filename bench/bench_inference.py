"""Inference throughput of the served model (the default, mn04 fine-tuned): direct, through the micro-batcher, over the wire.

Prints, all from one run so the ratios compare like with like:

1. direct ``predict`` windows/s at batch 1, 8 and 32 (best of three rounds: the box is shared);
2. capacity through the real MicroBatcher: S closed-loop streams (each sends one window and
   sends the next as soon as it is answered) at max_batch 1, 8 and the service's max_batch,
   with the mean batch the batcher formed and the mean queue wait;
3. live sessions through the batcher: N sessions each sending one window per 0.5 s hop, with
   the mean batch formed and the latency (submit to scores);
4. capacity over the real WebSocket protocol: InferenceClient in this process -> the inference
   service under uvicorn in a child process on loopback.

Settings come from the environment as for the service (``HEARO_INFERENCE_TORCH_THREADS`` ...).

    .venv/bin/python bench/bench_inference.py [--streams 64] [--sessions 16 64 128] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import httpx
import torch

from services.gateway.inference_client import InferenceClient
from services.inference.batcher import MicroBatcher
from services.inference.metrics import InferenceMetrics
from services.inference.models.base import Classifier
from services.inference.registry import default_registry
from services.inference.settings import InferenceSettings
from shared.features.spec import EFFICIENTAT_MEL

SPEC = EFFICIENTAT_MEL
HOP_S = 0.5  # a live session sends one window per hop

Classify = Callable[[torch.Tensor], Awaitable[object]]


def window_batch(n: int) -> torch.Tensor:
    # Log-mel-like values; content does not change the cost of a convolutional net.
    return torch.randn(n, SPEC.window_frames, SPEC.n_mels, generator=torch.Generator().manual_seed(n)) * 0.5 - 0.5


def set_torch_threads(threads: int) -> None:
    if threads:
        torch.set_num_threads(threads)


def direct_rate(classifier: Classifier, batch: int, seconds: float) -> float:
    windows = window_batch(batch)
    warm_until = time.perf_counter() + 1.0  # first calls per shape pay one-off allocation and setup
    while time.perf_counter() < warm_until:
        classifier.predict(windows)
    rates = []
    for _ in range(3):
        done, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds / 3:
            classifier.predict(windows)
            done += batch
        rates.append(done / (time.perf_counter() - started))
    return max(rates)


async def closed_loop(classify: Classify, streams: int, seconds: float) -> None:
    window = window_batch(1)
    deadline = time.perf_counter() + seconds

    async def stream() -> None:
        while time.perf_counter() < deadline:
            await classify(window)

    await asyncio.gather(*(stream() for _ in range(streams)))


async def live_sessions(classify: Classify, sessions: int, seconds: float, latencies: list[float]) -> None:
    window = window_batch(1)
    deadline = time.perf_counter() + seconds

    async def session() -> None:
        await asyncio.sleep(random.uniform(0, HOP_S))
        while time.perf_counter() < deadline:
            sent = time.perf_counter()
            await classify(window)
            latencies.append(time.perf_counter() - sent)
            await asyncio.sleep(max(0.0, HOP_S - (time.perf_counter() - sent)))

    await asyncio.gather(*(session() for _ in range(sessions)))


@dataclass
class BatcherRun:
    windows_per_s: float
    mean_batch: float
    mean_queue_wait_ms: float


async def through_batcher(
    classifier: Classifier, settings: InferenceSettings, max_batch: int, load: Callable[[Classify], Awaitable[None]]
) -> BatcherRun:
    """Run ``load`` against a real MicroBatcher; the figures come from its own metrics."""
    metrics = InferenceMetrics()
    batcher = MicroBatcher(
        classifier.predict,
        metrics,
        max_batch=max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        queue_size=settings.queue_size,
        torch_threads=settings.torch_threads,
    )
    await batcher.start()
    started = time.perf_counter()
    try:
        await load(batcher.submit)
    finally:
        await batcher.close()
    elapsed = time.perf_counter() - started
    sample = metrics.registry.get_sample_value
    windows = sample("hearo_inference_batch_windows_sum") or 0.0
    waits = sample("hearo_inference_queue_wait_seconds_count") or 1.0
    return BatcherRun(
        windows / elapsed,
        windows / (sample("hearo_inference_batch_windows_count") or 1.0),
        1000 * (sample("hearo_inference_queue_wait_seconds_sum") or 0.0) / waits,
    )


async def over_the_wire(settings: InferenceSettings, streams: int, seconds: float) -> float:
    """Capacity with the service in its own process, as deployed (settings from this environment)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = subprocess.Popen(
        [sys.executable, "-m", "uvicorn", "--factory", "services.inference.app:create_app",
         "--host", "127.0.0.1", "--port", str(port), "--log-level", "warning"]
    )  # fmt: skip
    # The child reads the same token (this environment and data folder; in development the generated one).
    client = InferenceClient(
        f"ws://127.0.0.1:{port}/v1/windows", SPEC, settings.model, token=settings.accepted_tokens()[0], timeout=30.0
    )
    done = 0

    async def counted(windows: torch.Tensor) -> None:
        nonlocal done
        results = await client.classify(windows)  # not `done += len(await ...)`: that reads done before the await
        done += len(results)

    try:
        async with httpx.AsyncClient() as http:
            while True:
                try:
                    if (await http.get(f"http://127.0.0.1:{port}/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                await asyncio.sleep(0.1)
        await client.connect()
        await client.classify(window_batch(1))
        started = time.perf_counter()
        await closed_loop(counted, streams, seconds)
        return done / (time.perf_counter() - started)
    finally:
        await client.close()
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--sessions", type=int, nargs="+", default=[16, 64, 128])
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    # The service's default model (the windows below are its spec), unless the environment names
    # another of the same spec; set here, so the service child of step 4 serves it too.
    os.environ.setdefault("HEARO_INFERENCE_MODEL", "default")
    settings = InferenceSettings()
    classifier = default_registry().get(settings.model).load(settings, settings.torch_device())
    print(
        f"model {settings.model} on {settings.torch_device()}, model thread torch threads "
        f"{settings.torch_threads or torch.get_num_threads()}, "
        f"window [{SPEC.window_frames}, {SPEC.n_mels}], max_batch {settings.max_batch}, "
        f"max_wait {settings.max_wait_ms} ms, {args.seconds} s per figure"
    )

    # Measured on a thread set up like the batcher's model thread (OpenMP state is per thread).
    with ThreadPoolExecutor(1, initializer=set_torch_threads, initargs=(settings.torch_threads,)) as model_thread:
        direct = {b: model_thread.submit(direct_rate, classifier, b, args.seconds).result() for b in (1, 8, 32)}
    base = direct[1]
    print("\ndirect predict (windows/s, best of 3 rounds)")
    for batch, rate in direct.items():
        print(f"  batch {batch:>2}: {rate:8.1f}   x{rate / base:.2f} vs batch 1")

    print(f"\nmicro-batcher capacity, {args.streams} closed-loop streams of 1 window")
    for max_batch in sorted({1, 8, settings.max_batch}):
        run = asyncio.run(
            through_batcher(classifier, settings, max_batch, lambda c: closed_loop(c, args.streams, args.seconds))
        )
        print(
            f"  max_batch {max_batch:>2}: {run.windows_per_s:8.1f} windows/s   x{run.windows_per_s / base:.2f} vs "
            f"direct batch 1   mean batch {run.mean_batch:5.1f}   mean queue wait {run.mean_queue_wait_ms:7.1f} ms"
        )

    print(f"\nmicro-batcher, live sessions sending 1 window per {HOP_S} s hop (max_batch {settings.max_batch})")
    for sessions in args.sessions:
        latencies: list[float] = []
        run = asyncio.run(
            through_batcher(
                classifier,
                settings,
                settings.max_batch,
                lambda c: live_sessions(c, sessions, args.seconds, latencies),
            )
        )
        latencies.sort()
        p95 = latencies[int(0.95 * (len(latencies) - 1))]
        print(
            f"  {sessions:>3} sessions ({sessions / HOP_S:4.0f} windows/s offered): {run.windows_per_s:6.1f} "
            f"windows/s   mean batch {run.mean_batch:5.1f}   latency mean "
            f"{1000 * statistics.fmean(latencies):6.1f} ms, p95 {1000 * p95:6.1f} ms"
        )

    rate = asyncio.run(over_the_wire(settings, args.streams, args.seconds))
    print(f"\nover the WebSocket (InferenceClient -> inference service process on loopback), {args.streams} streams")
    print(f"  max_batch {settings.max_batch:>2}: {rate:8.1f} windows/s   x{rate / base:.2f} vs direct batch 1")


if __name__ == "__main__":
    main()
