from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
import torch

from services.inference.batch_tuning import BatchPlan, measure
from services.inference.batcher import BatchedPrediction, BatcherClosed, MicroBatcher, Overloaded, ShedReason
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
        self.values: list[list[float]] = []  # each call's windows, by their first value

    def __call__(self, windows: torch.Tensor) -> Prediction:
        self.batches.append(int(windows.shape[0]))
        self.values.append(windows[:, 0, 0].tolist())
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
    model: GatedModel,
    *,
    max_batch: int = 4,
    max_wait_s: float = 0.0,
    queue_size: int = 64,
    client_queue_size: int | None = None,
) -> AsyncIterator[tuple[MicroBatcher, InferenceMetrics]]:
    metrics = InferenceMetrics()
    batcher = MicroBatcher(
        model, metrics, max_batch=max_batch, max_wait_s=max_wait_s, queue_size=queue_size,
        client_queue_size=client_queue_size,
    )  # fmt: skip
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


class PacedModel(GatedModel):
    """Takes ``seconds`` per call, as a real model does: requests arrive while it computes."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __call__(self, windows: torch.Tensor) -> Prediction:
        time.sleep(self.seconds)
        return super().__call__(windows)


async def test_a_lone_request_runs_at_once_but_after_busy_traffic_waits_for_company_at_most_max_wait() -> None:
    model = GatedModel()
    async with running(model, max_batch=8, max_wait_s=0.2) as (batcher, metrics):
        lone = await batcher.submit(item(0.0))
        assert lone.queue_s < 0.05  # no company expected: no window is delayed for nothing
        assert lone.batch_windows == 1
        # Thirty windows arrive while the model computes: company.
        model.hold_next_batch()
        first = batcher.submit(item(1.0))
        await model.wait_entered()
        crowd = [batcher.submit(item(2.0)) for _ in range(30)]
        model.gate.set()
        await asyncio.gather(first, *crowd)
        assert batcher.company.rate(asyncio.get_running_loop().time()) > 10
        # The next one waits for company, at most max_wait.
        waited = await batcher.submit(item(3.0))
    assert model.batches == [1, 1, 8, 8, 8, 6, 1]
    assert 0.05 <= waited.queue_s <= 0.2 + 0.1  # the bound, plus a slow test machine's slack
    assert waited.batch_windows == 1  # nobody came
    assert metrics.registry.get_sample_value("hearo_inference_queue_wait_seconds_count") == 33


async def test_a_client_that_waits_for_each_answer_is_never_made_to_wait_for_company() -> None:
    # Its next request comes only once the last is answered: it always finds the batcher idle,
    # so waiting for company would cap it at one request per max_wait.
    model = PacedModel(0.002)
    async with running(model, max_batch=8, max_wait_s=0.2) as (batcher, _):
        started = time.perf_counter()
        waits = [(await batcher.submit(item(float(i)))).queue_s for i in range(40)]
        elapsed = time.perf_counter() - started
    assert max(waits) < 0.05
    assert elapsed < 2.0  # 40 waits of 0.2 s would take 8 s
    assert batcher.company.rate(asyncio.get_running_loop().time()) == 0.0


def test_the_wait_for_company_follows_the_company_rate() -> None:
    batcher = MicroBatcher(GatedModel(), InferenceMetrics(), max_batch=16, max_wait_s=0.1, queue_size=64)
    assert batcher.company_wait(1, now=0.0) == 0.0  # nothing has arrived: no wait
    for i in range(100):  # 50 windows/s, each finding the batcher busy, busy all the time
        batcher.company.arrived(1, now=i * 0.02)
    rate = batcher.company.rate(2.0)
    assert 20 < rate < 50  # the average is still rising towards 50
    assert batcher.company_wait(1, now=2.0) == pytest.approx(0.1)  # 15 missing: the bound
    assert batcher.company_wait(15, now=2.0) == pytest.approx(1 / rate)  # one missing
    assert batcher.company_wait(16, now=2.0) == 0.0
    batcher.company.busy(False, now=2.0)
    assert batcher.company_wait(1, now=30.0) == 0.0  # long idle: no company expected


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
        # One client holds the whole queue, which is also its own quota.
        assert overloaded(metrics, ShedReason.CLIENT_QUOTA) == (1, 1)
        assert metrics.registry.get_sample_value("hearo_inference_queue_windows") == 4
        model.gate.set()
        await asyncio.gather(in_flight, *queued)
        assert batcher.queued_windows == 0
        await batcher.submit(item(5.0))  # room again


def overloaded(metrics: InferenceMetrics, reason: ShedReason) -> tuple[float | None, float | None]:
    """(requests, windows) not served for ``reason``."""
    labels = {"reason": reason.value}
    return (
        metrics.registry.get_sample_value("hearo_inference_overloaded_total", labels),
        metrics.registry.get_sample_value("hearo_inference_shed_windows_total", labels),
    )


async def test_queued_clients_are_served_in_turn_not_in_arrival_order() -> None:
    model = GatedModel()
    async with running(model, max_batch=2) as (batcher, _):
        model.hold_next_batch()
        first = batcher.submit(item(0.0), client="a")
        await model.wait_entered()
        futures = [batcher.submit(item(10.0 + i), client="a") for i in range(4)]
        futures += [batcher.submit(item(20.0 + i), client="b") for i in range(2)]
        model.gate.set()
        await asyncio.gather(first, *futures)
    # b arrived last but is not behind all of a's requests: one each per turn (b first on a
    # tie, having less queued).
    assert model.values == [[0.0], [20.0, 10.0], [21.0, 11.0], [12.0, 13.0]]


async def test_a_flooding_client_cannot_starve_a_light_one() -> None:
    """Three clients keep their quotas full; a light client's every request is in the next
    batch or the one after, never behind the flood's hundreds of queued windows."""
    model = GatedModel()
    async with running(model, max_batch=4, queue_size=96, client_queue_size=32) as (batcher, metrics):
        stop = asyncio.Event()

        async def flood(client: str) -> None:
            while not stop.is_set():
                try:
                    await batcher.submit(item(1.0, n=4), client=client)
                except Overloaded:
                    await asyncio.sleep(0)

        async def keep_full(client: str) -> None:
            await asyncio.gather(*(flood(client) for _ in range(12)))  # 48 windows wanted, 32 allowed

        flooders = [asyncio.create_task(keep_full(f"flood-{i}")) for i in range(3)]
        await asyncio.sleep(0.05)
        delays = []
        for i in range(20):
            queued_before = batcher.queued_windows
            started = len(model.values)
            await batcher.submit(item(1000.0 + i), client="light")
            served_in = next(n for n, values in enumerate(model.values) if 1000.0 + i in values)
            delays.append(served_in - started)
            assert queued_before >= 64, "the flood was not filling the queue"
        stop.set()
        await asyncio.gather(*flooders)
    # 0: the next batch to start; 1: a batch already taken but not yet in the model.
    assert max(delays) <= 1, delays
    assert (overloaded(metrics, ShedReason.CLIENT_QUOTA)[0] or 0) > 0  # the flood hit its quota


async def test_a_full_queue_sheds_the_newest_requests_of_the_heaviest_client() -> None:
    model = GatedModel()
    async with running(model, max_batch=2, queue_size=8) as (batcher, metrics):
        model.hold_next_batch()
        in_flight = batcher.submit(item(0.0), client="heavy")
        await model.wait_entered()
        heavy = [batcher.submit(item(10.0 + i, n=2), client="heavy") for i in range(3)]
        middle = batcher.submit(item(20.0, n=2), client="middle")
        assert batcher.queued_windows == 8
        # A light client finds the queue full: the heavy client's newest request makes room.
        light = [batcher.submit(item(30.0), client="light")]
        await asyncio.sleep(0)
        assert heavy[2].done() and isinstance(heavy[2].exception(), Overloaded)
        assert heavy[2].exception().reason is ShedReason.SHED  # type: ignore[union-attr]
        assert not heavy[1].done() and batcher.queued_windows_of("heavy") == 4
        light.append(batcher.submit(item(31.0), client="light"))  # fits: 6 + 1 + 1 = 8 queued
        # heavy (4) and middle (2) are both heavier than light would be (3): heavy goes first.
        light.append(batcher.submit(item(32.0), client="light"))
        await asyncio.sleep(0)
        assert isinstance(heavy[1].exception(), Overloaded) and not heavy[0].done() and not middle.done()
        assert batcher.queued_windows_of("heavy") == 2
        light.append(batcher.submit(item(33.0), client="light"))  # fits: 7 + 1 = 8
        # Now nobody is heavier than light would be (4 + 1): its request is refused, nothing is shed.
        with pytest.raises(Overloaded) as refused:
            batcher.submit(item(34.0), client="light")
        assert refused.value.reason is ShedReason.QUEUE_FULL
        assert not heavy[0].done() and not middle.done()
        model.gate.set()
        served = await asyncio.gather(in_flight, heavy[0], middle, *light)
    assert all(isinstance(result, BatchedPrediction) for result in served)
    assert overloaded(metrics, ShedReason.SHED) == (2, 4)
    assert overloaded(metrics, ShedReason.QUEUE_FULL) == (1, 1)
    assert batcher.queued_windows == 0


async def test_a_client_over_its_quota_is_refused_while_others_still_get_in() -> None:
    model = GatedModel()
    async with running(model, max_batch=2, queue_size=8, client_queue_size=4) as (batcher, metrics):
        model.hold_next_batch()
        in_flight = batcher.submit(item(0.0), client="a")
        await model.wait_entered()
        queued = [batcher.submit(item(1.0, n=2), client="a") for _ in range(2)]
        with pytest.raises(Overloaded) as refused:
            batcher.submit(item(2.0), client="a")
        assert refused.value.reason is ShedReason.CLIENT_QUOTA and "limit is 4" in str(refused.value)
        queued.append(batcher.submit(item(3.0, n=2), client="b"))
        model.gate.set()
        await asyncio.gather(in_flight, *queued)
    assert overloaded(metrics, ShedReason.CLIENT_QUOTA) == (1, 1)
    assert overloaded(metrics, ShedReason.SHED) == (0, 0)  # exported at 0 from the start


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


async def test_a_batch_target_forms_smaller_batches_and_still_takes_a_larger_request() -> None:
    model = GatedModel()
    async with running(model, max_batch=8) as (batcher, _):
        batcher.use(BatchPlan(target=2, max_wait_s=0.0))
        model.hold_next_batch()
        first = batcher.submit(item(0.0))
        await model.wait_entered()
        futures = [batcher.submit(item(float(i))) for i in range(1, 4)] + [batcher.submit(item(9.0, n=5))]
        model.gate.set()
        results = await asyncio.gather(first, *futures)
    # Batches of two, and the five-window request alone: requests are never split or refused
    # for the target, only for max_batch.
    assert model.batches == [1, 2, 1, 5]
    assert results[-1].prediction.scores.shape[0] == 5
    with pytest.raises(ValueError, match="batch target"):
        batcher.use(BatchPlan(target=9, max_wait_s=0.0))


async def test_tuning_runs_in_the_model_thread() -> None:
    seen: list[int] = []

    def predict(windows: torch.Tensor) -> Prediction:
        seen.append(threading.get_ident())
        return Prediction(scores=torch.zeros(windows.shape[0], 9))

    batcher = MicroBatcher(predict, InferenceMetrics(), max_batch=4, max_wait_s=0.0, queue_size=4)
    await batcher.start()
    try:
        timings = await batcher.in_model_thread(lambda: measure(predict, (2, 9), batcher.max_batch))
        await batcher.submit(item(1.0))
    finally:
        await batcher.close()
    assert [t.size for t in timings] == [1, 2, 4]
    assert len(set(seen)) == 1 and seen[0] != threading.get_ident()
