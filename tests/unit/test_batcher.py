from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import torch

from services.inference.batcher import BatcherClosed, MicroBatcher, Overloaded
from services.inference.metrics import InferenceMetrics
from services.inference.models.base import Prediction


class GatedModel:
    """Scores = each window's first row; records batch sizes; can hold a batch until released.

    A window whose first value is negative makes the whole call raise.
    """

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.gate.set()
        self.entered = threading.Event()
        self.batches: list[int] = []

    def __call__(self, windows: torch.Tensor) -> Prediction:
        self.batches.append(int(windows.shape[0]))
        self.entered.set()
        assert self.gate.wait(5)
        if (windows[:, 0, 0] < 0).any():
            raise ValueError("poisoned window")
        return Prediction(scores=windows[:, 0, :].clone())

    def hold_next_batch(self) -> None:
        self.gate.clear()
        self.entered.clear()

    async def wait_entered(self) -> None:
        assert await asyncio.to_thread(self.entered.wait, 5)


def item(value: float, n: int = 1) -> torch.Tensor:
    return torch.full((n, 2, 9), value)


@asynccontextmanager
async def running(
    model: GatedModel, *, max_batch: int = 4, max_wait_s: float = 0.0, queue_size: int = 64
) -> AsyncIterator[tuple[MicroBatcher, InferenceMetrics]]:
    metrics = InferenceMetrics()
    batcher = MicroBatcher(model, metrics, max_batch=max_batch, max_wait_s=max_wait_s, queue_size=queue_size)
    await batcher.start()
    try:
        yield batcher, metrics
    finally:
        model.gate.set()
        await batcher.close()


async def test_batches_fill_up_to_max_batch_and_rows_reach_their_callers() -> None:
    model = GatedModel()
    async with running(model, max_batch=4) as (batcher, metrics):
        model.hold_next_batch()
        first = batcher.submit(item(100.0))
        await model.wait_entered()
        futures = [batcher.submit(item(float(i))) for i in range(10)]
        model.gate.set()
        results = await asyncio.gather(first, *futures)
    assert model.batches == [1, 4, 4, 2]
    for i, result in enumerate(results[1:]):
        assert result.prediction.scores.shape == (1, 9)
        assert torch.all(result.prediction.scores == float(i))
    assert [r.batch_windows for r in results] == [1, 4, 4, 4, 4, 4, 4, 4, 4, 2, 2]
    assert metrics.registry.get_sample_value("hearo_inference_batch_windows_count") == 4
    assert metrics.registry.get_sample_value("hearo_inference_batch_windows_sum") == 11


async def test_multi_window_requests_are_never_split() -> None:
    model = GatedModel()
    async with running(model, max_batch=4) as (batcher, _):
        model.hold_next_batch()
        first = batcher.submit(item(0.0))
        await model.wait_entered()
        futures = [batcher.submit(item(1.0, n=3)), batcher.submit(item(2.0, n=3)), batcher.submit(item(3.0))]
        model.gate.set()
        results = await asyncio.gather(first, *futures)
    assert model.batches == [1, 3, 4]
    assert [r.prediction.scores.shape[0] for r in results[1:]] == [3, 3, 1]


async def test_full_batch_starts_without_waiting_for_max_wait() -> None:
    model = GatedModel()
    async with running(model, max_batch=2, max_wait_s=30.0) as (batcher, _):
        async with asyncio.timeout(2):
            results = await asyncio.gather(batcher.submit(item(1.0)), batcher.submit(item(2.0)))
    assert model.batches == [2]
    assert results[0].batch_windows == 2


async def test_lone_request_waits_max_wait_for_company_then_runs_alone() -> None:
    model = GatedModel()
    async with running(model, max_batch=8, max_wait_s=0.05) as (batcher, metrics):
        result = await batcher.submit(item(1.0))
        assert result.queue_s >= 0.049
        assert result.batch_windows == 1
        # Two requests queued in the same tick share one batch.
        both = await asyncio.gather(batcher.submit(item(2.0)), batcher.submit(item(3.0)))
    assert model.batches == [1, 2]
    assert both[0].batch_windows == 2
    assert metrics.registry.get_sample_value("hearo_inference_queue_wait_seconds_count") == 3


async def test_overloaded_when_queue_full_and_never_blocks() -> None:
    model = GatedModel()
    async with running(model, max_batch=2, queue_size=4) as (batcher, metrics):
        model.hold_next_batch()
        in_flight = batcher.submit(item(0.0))
        await model.wait_entered()
        queued = [batcher.submit(item(1.0, n=2)), batcher.submit(item(2.0)), batcher.submit(item(3.0))]
        assert batcher.queued_windows == 4
        with pytest.raises(Overloaded):
            batcher.submit(item(4.0))
        assert metrics.registry.get_sample_value("hearo_inference_overloaded_total") == 1
        assert metrics.registry.get_sample_value("hearo_inference_queue_windows") == 4
        model.gate.set()
        await asyncio.gather(in_flight, *queued)
        assert batcher.queued_windows == 0
        await batcher.submit(item(5.0))  # room again


async def test_model_exception_reaches_only_the_failing_request() -> None:
    model = GatedModel()
    async with running(model, max_batch=4) as (batcher, _):
        model.hold_next_batch()
        first = batcher.submit(item(0.0))
        await model.wait_entered()
        good_a, bad, good_b = batcher.submit(item(1.0)), batcher.submit(item(-1.0)), batcher.submit(item(2.0))
        model.gate.set()
        await first
        assert torch.all((await good_a).prediction.scores == 1.0)
        assert torch.all((await good_b).prediction.scores == 2.0)
        with pytest.raises(ValueError, match="poisoned window"):
            await bad
        # The batch failed as a whole, then each request ran alone to isolate the bad one.
        assert model.batches == [1, 3, 1, 1, 1]
        assert torch.all((await batcher.submit(item(3.0))).prediction.scores == 3.0)


async def test_cancelled_requests_free_their_slot_and_are_skipped() -> None:
    model = GatedModel()
    async with running(model, max_batch=4, queue_size=4) as (batcher, _):
        model.hold_next_batch()
        first = batcher.submit(item(0.0))
        await model.wait_entered()
        gone = batcher.submit(item(1.0, n=3))
        kept = batcher.submit(item(2.0))
        gone.cancel()
        await asyncio.sleep(0)  # done callbacks run on the next loop iteration
        assert batcher.queued_windows == 1
        model.gate.set()
        await first
        assert torch.all((await kept).prediction.scores == 2.0)
    assert model.batches == [1, 1]


async def test_close_finishes_queued_requests_then_refuses_new_ones() -> None:
    model = GatedModel()
    metrics = InferenceMetrics()
    batcher = MicroBatcher(model, metrics, max_batch=2, max_wait_s=10.0, queue_size=8)
    await batcher.start()
    futures = [batcher.submit(item(float(i))) for i in range(3)]
    await batcher.close()
    assert all(f.done() and not f.exception() for f in futures)
    assert model.batches == [2, 1]
    with pytest.raises(BatcherClosed):
        batcher.submit(item(1.0))


async def test_request_larger_than_max_batch_is_a_value_error() -> None:
    async with running(GatedModel(), max_batch=2) as (batcher, _):
        with pytest.raises(ValueError, match=r"\[1..2, frames, mels\]"):
            batcher.submit(item(1.0, n=3))


async def test_torch_threads_apply_to_the_model_thread() -> None:
    seen: list[int] = []

    def predict(windows: torch.Tensor) -> Prediction:
        seen.append(torch.get_num_threads())
        return Prediction(scores=windows[:, 0, :])

    batcher = MicroBatcher(predict, InferenceMetrics(), max_batch=2, max_wait_s=0.0, queue_size=2, torch_threads=1)
    await batcher.start()
    await batcher.submit(item(1.0))
    await batcher.close()
    assert seen == [1]
