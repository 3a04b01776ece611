"""Inference throughput of the EfficientAT model: direct, through the micro-batcher, over the wire.

Prints windows/s for (1) direct ``predict`` calls at batch 1, 8 and 32; (2) S concurrent
closed-loop streams (each sends one window, waits for its scores, repeats) through the real
MicroBatcher at max_batch 1 and at the service's max_batch, with the mean batch it formed;
(3) the same streams over the real WebSocket protocol (uvicorn on loopback in this process,
InferenceClient). Ratios are printed against direct batch 1 from the same run.

    .venv/bin/python bench/bench_inference.py [--streams 64] [--seconds 4]
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import threading
import time
from collections.abc import Awaitable, Callable

import torch
import uvicorn

from services.gateway.inference_client import InferenceClient
from services.inference.app import create_app
from services.inference.batcher import MicroBatcher
from services.inference.metrics import InferenceMetrics
from services.inference.registry import Classifier, default_registry
from services.inference.settings import InferenceSettings
from shared.features.spec import EFFICIENTAT_MEL

SPEC = EFFICIENTAT_MEL


def window_batch(n: int) -> torch.Tensor:
    # Log-mel-like values; content does not change the cost of a convolutional net.
    return torch.randn(n, SPEC.window_frames, SPEC.n_mels, generator=torch.Generator().manual_seed(n)) * 0.5 - 0.5


def direct_rate(classifier: Classifier, batch: int, seconds: float) -> float:
    windows = window_batch(batch)
    warm_until = time.perf_counter() + 1.0  # first calls per shape pay one-off allocation and setup
    while time.perf_counter() < warm_until:
        classifier.predict(windows)
    done, started = 0, time.perf_counter()
    while time.perf_counter() - started < seconds:
        classifier.predict(windows)
        done += batch
    return done / (time.perf_counter() - started)


async def closed_loop(classify: Callable[[torch.Tensor], Awaitable[object]], streams: int, seconds: float) -> float:
    """Windows/s with ``streams`` concurrent callers of ``classify(windows [1, T, M])``."""
    window = window_batch(1)
    done = 0
    deadline = time.perf_counter() + seconds

    async def stream() -> None:
        nonlocal done
        while time.perf_counter() < deadline:
            await classify(window)
            done += 1

    started = time.perf_counter()
    await asyncio.gather(*(stream() for _ in range(streams)))
    return done / (time.perf_counter() - started)


async def batcher_rate(
    classifier: Classifier, settings: InferenceSettings, max_batch: int, streams: int, seconds: float
) -> tuple[float, float, float]:
    """(windows/s, mean batch windows, mean queue wait ms) through a real MicroBatcher."""
    metrics = InferenceMetrics()
    batcher = MicroBatcher(
        classifier.predict,
        metrics,
        max_batch=max_batch,
        max_wait_s=settings.max_wait_ms / 1000,
        queue_size=max(settings.queue_size, streams),
    )
    await batcher.start()
    try:
        rate = await closed_loop(batcher.submit, streams, seconds)
    finally:
        await batcher.close()
    sample = metrics.registry.get_sample_value
    batches = sample("hearo_inference_batch_windows_count") or 1.0
    waits = sample("hearo_inference_queue_wait_seconds_count") or 1.0
    return (
        rate,
        (sample("hearo_inference_batch_windows_sum") or 0.0) / batches,
        1000 * (sample("hearo_inference_queue_wait_seconds_sum") or 0.0) / waits,
    )


async def wire_rate(settings: InferenceSettings, streams: int, seconds: float) -> float:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = int(s.getsockname()[1])
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        await asyncio.sleep(0.05)
    client = InferenceClient(f"ws://127.0.0.1:{port}/v1/windows", SPEC, settings.model, timeout=30.0)
    try:
        await client.connect()
        await client.classify(window_batch(1))
        return await closed_loop(client.classify, streams, seconds)
    finally:
        await client.close()
        server.should_exit = True
        thread.join(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--streams", type=int, default=64)
    parser.add_argument("--seconds", type=float, default=4.0)
    args = parser.parse_args()

    settings = InferenceSettings()
    if settings.torch_threads:
        torch.set_num_threads(settings.torch_threads)
    classifier = default_registry().get(settings.model).load(settings, settings.torch_device())
    print(
        f"model {settings.model} on {settings.torch_device()}, torch threads {torch.get_num_threads()}, "
        f"window [{SPEC.window_frames}, {SPEC.n_mels}], max_batch {settings.max_batch}, "
        f"max_wait {settings.max_wait_ms} ms, {args.streams} streams, {args.seconds} s per figure"
    )

    direct = {batch: direct_rate(classifier, batch, args.seconds) for batch in (1, 8, 32)}
    base = direct[1]
    print("\ndirect predict (windows/s)")
    for batch, rate in direct.items():
        print(f"  batch {batch:>2}: {rate:8.1f}   x{rate / base:.2f} vs batch 1")

    print(f"\nmicro-batcher, {args.streams} closed-loop streams of 1 window")
    for max_batch in (1, settings.max_batch):
        rate, mean_batch, wait_ms = asyncio.run(
            batcher_rate(classifier, settings, max_batch, args.streams, args.seconds)
        )
        print(
            f"  max_batch {max_batch:>2}: {rate:8.1f} windows/s   x{rate / base:.2f} vs direct batch 1   "
            f"mean batch {mean_batch:5.1f}   mean queue wait {wait_ms:6.1f} ms"
        )

    rate = asyncio.run(wire_rate(settings, args.streams, args.seconds))
    print(f"\nover the WebSocket (InferenceClient -> uvicorn, loopback, same process), {args.streams} streams")
    print(f"  max_batch {settings.max_batch:>2}: {rate:8.1f} windows/s   x{rate / base:.2f} vs direct batch 1")


if __name__ == "__main__":
    main()
