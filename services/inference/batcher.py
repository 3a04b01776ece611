"""Micro-batcher: many small window requests in, one model call per batch out.

One worker task owns the model and runs it on a dedicated single-thread executor, so the
event loop keeps serving sockets while a batch computes and the model never sees two calls
at once. Requests queue in a bounded FIFO counted in windows; a request that does not fit is
refused at once with ``Overloaded`` (the queue never blocks a caller and never grows past
``queue_size``).

A batch starts when it holds ``max_batch`` windows, when the next request would not fit, or
``max_wait_s`` after its oldest request was queued, whichever comes first. Requests are never
split across batches. A caller that cancels its future frees its queue slot at once and is
left out of the batch if it was already taken.
"""

from __future__ import annotations

import asyncio
import collections
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import torch

from services.inference.metrics import InferenceMetrics
from services.inference.models.base import Prediction


class Overloaded(Exception):
    """The queue is full; the request was not accepted."""


class BatcherClosed(RuntimeError):
    """The batcher is shutting down or has stopped."""


@dataclass(frozen=True)
class BatchedPrediction:
    """One request's rows of its batch's prediction, with how long it waited and computed."""

    prediction: Prediction
    queue_s: float
    compute_s: float
    batch_windows: int


@dataclass(eq=False)
class _Request:
    windows: torch.Tensor
    future: asyncio.Future[BatchedPrediction]
    queued_at: float
    in_queue: bool = True

    @property
    def size(self) -> int:
        return int(self.windows.shape[0])


class MicroBatcher:
    """Batches ``submit``-ted windows into calls of ``predict`` (see the module docstring).

    ``torch_threads`` is the model thread's intra-op thread count (0: torch's default).

    Use::

        batcher = MicroBatcher(classifier.predict, metrics, max_batch=32, max_wait_s=0.008,
                               queue_size=512)
        await batcher.start()
        result = await batcher.submit(windows)   # windows [n, frames, mels], n <= max_batch
        await batcher.close()                    # finishes what is queued, then stops
    """

    def __init__(
        self,
        predict: Callable[[torch.Tensor], Prediction],
        metrics: InferenceMetrics,
        *,
        max_batch: int,
        max_wait_s: float,
        queue_size: int,
        torch_threads: int = 0,
    ) -> None:
        if max_batch < 1 or queue_size < max_batch or max_wait_s < 0:
            raise ValueError("need max_batch >= 1, queue_size >= max_batch and max_wait_s >= 0")
        self._predict = predict
        self._torch_threads = torch_threads
        self._metrics = metrics
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self._queue: collections.deque[_Request] = collections.deque()
        self._queued_windows = 0
        self._arrival = asyncio.Event()
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._closed

    @property
    def queued_windows(self) -> int:
        return self._queued_windows

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("batcher already started")
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hearo-model", initializer=self._init_model_thread
        )
        self._worker = asyncio.create_task(self._run(), name="hearo-batcher")

    def submit(self, windows: torch.Tensor) -> asyncio.Future[BatchedPrediction]:
        """Queue ``windows`` [n, frames, mels] and return the future of their prediction.

        Raises ``Overloaded`` when n more windows would exceed ``queue_size``, ``BatcherClosed``
        when not running, ValueError when n is not in 1..max_batch. Cancelling the future
        withdraws the request.
        """
        if not self.running:
            raise BatcherClosed("the batcher is not running")
        n = int(windows.shape[0]) if windows.dim() == 3 else 0
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"expected windows [1..{self.max_batch}, frames, mels], got {tuple(windows.shape)}")
        if self._queued_windows + n > self.queue_size:
            self._metrics.overloaded_total.inc()
            raise Overloaded(f"{self._queued_windows} windows queued; the limit is {self.queue_size}")
        loop = asyncio.get_running_loop()
        request = _Request(windows, loop.create_future(), loop.time())
        request.future.add_done_callback(lambda _: self._withdraw(request))
        self._queue.append(request)
        self._set_queued(self._queued_windows + n)
        self._arrival.set()
        return request.future

    async def close(self) -> None:
        """Refuse new requests, finish the queued ones, then stop the worker and its thread."""
        self._closed = True
        self._arrival.set()
        if self._worker is not None:
            await self._worker
        if self._executor is not None:
            self._executor.shutdown(wait=True)

    def _set_queued(self, windows: int) -> None:
        self._queued_windows = windows
        self._metrics.queue_windows.set(windows)

    def _withdraw(self, request: _Request) -> None:
        # Runs when the future completes; only a cancelled caller can still be in the queue.
        if request.in_queue:
            request.in_queue = False
            self._queue.remove(request)
            self._set_queued(self._queued_windows - request.size)

    def _take(self) -> _Request:
        request = self._queue.popleft()
        request.in_queue = False
        self._set_queued(self._queued_windows - request.size)
        return request

    async def _run(self) -> None:
        try:
            while (batch := await self._collect()) is not None:
                await self._execute(batch)
        finally:
            for request in self._queue:
                if not request.future.done():
                    request.future.set_exception(BatcherClosed("the batcher stopped"))

    async def _collect(self) -> list[_Request] | None:
        """The next batch, or None once closed and drained."""
        while not self._queue:
            if self._closed:
                return None
            self._arrival.clear()
            await self._arrival.wait()
        deadline = self._queue[0].queued_at + self.max_wait_s
        batch: list[_Request] = []
        size = 0
        while True:
            while self._queue and size + self._queue[0].size <= self.max_batch:
                request = self._take()
                batch.append(request)
                size += request.size
            if self._queue or size == self.max_batch or self._closed:
                return batch
            self._arrival.clear()
            try:
                async with asyncio.timeout_at(deadline):
                    await self._arrival.wait()
            except TimeoutError:
                return batch

    async def _execute(self, batch: Sequence[_Request]) -> None:
        live = [r for r in batch if not r.future.done()]
        if not live:
            return
        loop = asyncio.get_running_loop()
        started = loop.time()
        try:
            prediction = await loop.run_in_executor(self._executor, self._predict_batch, [r.windows for r in live])
        except Exception as exc:
            if len(live) == 1:
                if not live[0].future.done():
                    live[0].future.set_exception(exc)
                return
            # One bad request must not fail its batch-mates: run each alone to find it.
            for request in live:
                await self._execute([request])
            return
        compute_s = loop.time() - started
        total = sum(r.size for r in live)
        self._metrics.batch_windows.observe(total)
        self._metrics.compute_seconds.observe(compute_s)
        start = 0
        for request in live:
            self._metrics.queue_wait_seconds.observe(started - request.queued_at)
            rows = prediction.rows(start, start + request.size)
            start += request.size
            if not request.future.done():
                request.future.set_result(BatchedPrediction(rows, started - request.queued_at, compute_s, total))

    def _init_model_thread(self) -> None:
        # OpenMP thread counts are per calling thread: set it in the thread that runs the model.
        if self._torch_threads:
            torch.set_num_threads(self._torch_threads)

    def _predict_batch(self, parts: list[torch.Tensor]) -> Prediction:
        windows = parts[0] if len(parts) == 1 else torch.cat(parts)
        prediction = self._predict(windows)
        if prediction.scores.shape[0] != windows.shape[0]:
            raise RuntimeError(
                f"model returned {prediction.scores.shape[0]} score rows for {windows.shape[0]} windows"
            )
        return prediction
