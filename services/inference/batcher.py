"""Micro-batcher: many small window requests in, one model call per batch out, fair across clients.

One worker task owns the model and runs it on a dedicated single-thread executor, so the
event loop keeps serving sockets while a batch computes and the model never sees two calls
at once. Each request belongs to a client (the inference app's client is a gateway
connection). The queue never blocks a caller and never grows past ``queue_size`` windows:

* a client may hold at most ``client_queue_size`` queued windows; beyond that its request is
  refused at once (``Overloaded``, reason ``client_quota``);
* when the whole queue is full, room is made for a client by shedding the newest queued
  requests of the heaviest client (the one with the most queued windows), as long as that one
  holds more than the newcomer would; shed requests fail with ``Overloaded`` (reason ``shed``),
  so their callers know. When the newcomer is itself the heaviest, its request is refused
  (reason ``queue_full``). One client flooding the service therefore only ever loses its own work.

Batches are filled in start-time fair queueing order: every client has a virtual clock that
advances by the windows it is served, a client that becomes active starts at the clock of the
last request taken, and the next request taken is the head of the client whose clock is
lowest (on a tie, the one with less queued). A client that asks for less than its share is
served in the next batch, whatever the others have queued.

A batch starts when it holds ``batch_target`` windows (``max_batch`` unless ``use`` set a
smaller target: ``services.inference.batch_tuning``), when the next request (in fair order)
would not fit, or when the oldest queued request has waited for company as long as it pays,
whichever comes first. That wait follows the measured rate of company (``services.inference.company``:
windows per second from clients that do not wait for their answers): as long as that rate takes to
bring the windows still missing, never more than ``max_wait_s``, and none at all when fewer than
one more window is expected within ``max_wait_s``. A lone stream on a quiet service is never
delayed, and neither is a client that sends its next request only when the last is answered. On
a CPU a model call's fixed cost is most of a small batch's (the default model: 3.9 ms for one
window, 11 ms for eight), so at load a few tens of milliseconds of waiting save model CPU.

Requests are never split across batches: a batch's first request is taken whatever its
size (at most ``max_batch``, the most one request may carry). A caller that cancels its future frees its
queue slot at once and is left out of the batch if it was already taken.
"""

from __future__ import annotations

import asyncio
import collections
import enum
from collections.abc import Callable, Hashable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TypeVar

import torch

from services.inference.batch_tuning import BatchPlan
from services.inference.company import CompanyRate
from services.inference.metrics import InferenceMetrics
from services.inference.models.base import Prediction


T = TypeVar("T")


class ShedReason(str, enum.Enum):
    """Why a request was not served for want of room (the ``reason`` label of the metrics)."""

    CLIENT_QUOTA = "client_quota"  # its client already held client_queue_size windows
    QUEUE_FULL = "queue_full"  # the queue was full and its client was the heaviest
    SHED = "shed"  # queued, then dropped to make room for a lighter client


class Overloaded(Exception):
    """The request was refused, or shed from the queue, for want of room; ``reason`` says which."""

    def __init__(self, reason: ShedReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason


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
class _Client:
    key: Hashable
    # Virtual clock: the start tag its next request gets (windows served, in fair-queueing time).
    clock: float
    queue: collections.deque[_Request] = field(default_factory=collections.deque)
    queued_windows: int = 0


@dataclass(eq=False)
class _Request:
    windows: torch.Tensor
    future: asyncio.Future[BatchedPrediction]
    queued_at: float
    client: _Client
    in_queue: bool = True

    @property
    def size(self) -> int:
        return int(self.windows.shape[0])


_SHARED_CLIENT = "shared"


class MicroBatcher:
    """Batches ``submit``-ted windows into calls of ``predict`` (see the module docstring).

    ``torch_threads`` is the model thread's intra-op thread count (0: torch's default).
    ``client_queue_size`` (default: ``queue_size``) bounds the windows one client may have queued.

    Use::

        batcher = MicroBatcher(classifier.predict, metrics, max_batch=32, max_wait_s=0.008,
                               queue_size=512, client_queue_size=256)
        await batcher.start()
        result = await batcher.submit(windows, client=connection)  # [n, frames, mels], n <= max_batch
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
        client_queue_size: int | None = None,
        torch_threads: int = 0,
    ) -> None:
        client_queue_size = queue_size if client_queue_size is None else client_queue_size
        if max_batch < 1 or not max_batch <= client_queue_size <= queue_size or max_wait_s < 0:
            raise ValueError(
                "need max_batch >= 1, max_batch <= client_queue_size <= queue_size and max_wait_s >= 0"
            )
        for reason in ShedReason:  # at 0 from the start: a dashboard tells "none" from "not exported"
            metrics.overloaded_total.labels(reason.value)
            metrics.shed_windows_total.labels(reason.value)
        self._predict = predict
        self._torch_threads = torch_threads
        self._metrics = metrics
        self.max_batch = max_batch
        self.batch_target = max_batch
        self.max_wait_s = max_wait_s
        self.queue_size = queue_size
        self.client_queue_size = client_queue_size
        # Clients with queued requests only: one that empties is forgotten (see _enqueue).
        self._clients: dict[Hashable, _Client] = {}
        self._queued_windows = 0
        self._clock = 0.0  # the start tag of the last request taken
        self._arrival = asyncio.Event()
        self.company = CompanyRate()
        self._closed = False
        self._worker: asyncio.Task[None] | None = None
        self._executor: ThreadPoolExecutor | None = None

    @property
    def running(self) -> bool:
        return self._worker is not None and not self._closed

    @property
    def queued_windows(self) -> int:
        return self._queued_windows

    def company_wait(self, queued: int, now: float) -> float:
        """How long a batch holding ``queued`` windows waits for more: the time the rate of company
        (``self.company``) takes to bring the ``batch_target`` windows, at most ``max_wait_s``; 0
        when less than one more window is expected within ``max_wait_s``."""
        rate = self.company.rate(now)
        if rate * self.max_wait_s < 1.0:
            return 0.0
        return min(self.max_wait_s, max(0, self.batch_target - queued) / rate)

    def queued_windows_of(self, client: Hashable) -> int:
        """Windows ``client`` has queued now."""
        state = self._clients.get(client)
        return 0 if state is None else state.queued_windows

    async def start(self) -> None:
        if self._worker is not None:
            raise RuntimeError("batcher already started")
        self._executor = ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="hearo-model", initializer=self._init_model_thread
        )
        self._worker = asyncio.create_task(self._run(), name="hearo-batcher")

    def use(self, plan: BatchPlan) -> None:
        """Form batches of up to ``plan.target`` windows (at most ``max_batch``), waiting at most
        ``plan.max_wait_s``; the next batch collected follows it."""
        if not 1 <= plan.target <= self.max_batch or plan.max_wait_s < 0:
            raise ValueError(f"a batch target must be in 1..{self.max_batch} and a wait >= 0, got {plan}")
        self.batch_target = plan.target
        self.max_wait_s = plan.max_wait_s

    async def in_model_thread(self, work: Callable[[], T]) -> T:
        """``work()`` run in the model's thread (its torch thread count), between batches."""
        if self._executor is None:
            raise BatcherClosed("the batcher is not running")
        return await asyncio.get_running_loop().run_in_executor(self._executor, work)

    def submit(self, windows: torch.Tensor, client: Hashable = _SHARED_CLIENT) -> asyncio.Future[BatchedPrediction]:
        """Queue ``windows`` [n, frames, mels] for ``client`` and return the future of their prediction.

        Raises ``Overloaded`` when the request finds no room (``client_quota`` or
        ``queue_full``), ``BatcherClosed`` when not running, ValueError when n is not in
        1..max_batch. Making room may shed other clients' queued requests: their futures then
        fail with ``Overloaded`` (``shed``). Cancelling the future withdraws the request.
        """
        if not self.running:
            raise BatcherClosed("the batcher is not running")
        n = int(windows.shape[0]) if windows.dim() == 3 else 0
        if not 1 <= n <= self.max_batch:
            raise ValueError(f"expected windows [1..{self.max_batch}, frames, mels], got {tuple(windows.shape)}")
        held = self.queued_windows_of(client)
        if held + n > self.client_queue_size:
            raise self._refused(
                ShedReason.CLIENT_QUOTA, n, f"this client has {held} windows queued; its limit is {self.client_queue_size}"
            )
        if self._queued_windows + n > self.queue_size:
            victims = self._victims(client, held + n, self._queued_windows + n - self.queue_size)
            if victims is None:
                raise self._refused(
                    ShedReason.QUEUE_FULL, n,
                    f"{self._queued_windows} windows queued (the limit is {self.queue_size}) and this client holds the most",
                )  # fmt: skip
            for victim in victims:
                self._shed(victim)
        loop = asyncio.get_running_loop()
        now = loop.time()
        self.company.arrived(n, now)
        request = _Request(windows, loop.create_future(), now, self._enqueue(client))
        request.future.add_done_callback(lambda _: self._withdraw(request))
        request.client.queue.append(request)
        request.client.queued_windows += n
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

    def _refused(self, reason: ShedReason, windows: int, message: str) -> Overloaded:
        self._metrics.count_shed(reason, windows)
        return Overloaded(reason, message)

    def _victims(self, client: Hashable, load_after: int, needed: int) -> list[_Request] | None:
        """The requests to shed so that ``needed`` windows come free, newest of the heaviest
        client first, never taking a client down to below what the newcomer would hold; None
        when that cannot free enough (nothing is shed then)."""
        loads = {key: state.queued_windows for key, state in self._clients.items() if key != client}
        kept = {key: len(state.queue) for key, state in self._clients.items()}
        victims: list[_Request] = []
        while needed > 0:
            heaviest = max(loads, key=loads.__getitem__, default=None)
            if heaviest is None or loads[heaviest] <= load_after:
                return None
            kept[heaviest] -= 1
            victim = self._clients[heaviest].queue[kept[heaviest]]
            victims.append(victim)
            loads[heaviest] -= victim.size
            needed -= victim.size
        return victims

    def _shed(self, request: _Request) -> None:
        self._metrics.count_shed(ShedReason.SHED, request.size)
        # Out of the queue now (done callbacks run later), so the room is there for the newcomer.
        self._withdraw(request)
        request.future.set_exception(
            Overloaded(ShedReason.SHED, "dropped from the queue to make room for a client with less queued")
        )

    def _enqueue(self, key: Hashable) -> _Client:
        state = self._clients.get(key)
        if state is None:
            # A client becoming active starts at the current clock: idle time earns no credit,
            # and a newcomer is not behind everyone else.
            state = self._clients[key] = _Client(key, self._clock)
        return state

    def _set_queued(self, windows: int) -> None:
        self._queued_windows = windows
        self._metrics.queue_windows.set(windows)

    def _dequeue(self, request: _Request) -> None:
        request.in_queue = False
        client = request.client
        client.queued_windows -= request.size
        self._set_queued(self._queued_windows - request.size)
        if not client.queue:
            del self._clients[client.key]

    def _withdraw(self, request: _Request) -> None:
        # Runs when the future completes; only a cancelled or shed request can still be queued.
        if request.in_queue:
            request.client.queue.remove(request)
            self._dequeue(request)

    def _next(self) -> _Client | None:
        """The client whose head request is next in fair order: lowest clock; on a tie the one
        with less queued (a light client is not put behind every flooder's turn), then the oldest head."""
        return min(
            self._clients.values(), key=lambda c: (c.clock, c.queued_windows, c.queue[0].queued_at), default=None
        )

    def _take(self, client: _Client) -> _Request:
        request = client.queue.popleft()
        self._clock = client.clock
        client.clock += request.size
        self._dequeue(request)
        return request

    async def _run(self) -> None:
        try:
            while (batch := await self._collect()) is not None:
                await self._execute(batch)
        finally:
            for client in list(self._clients.values()):
                for request in list(client.queue):
                    if not request.future.done():
                        request.future.set_exception(BatcherClosed("the batcher stopped"))

    async def _collect(self) -> list[_Request] | None:
        """The next batch, or None once closed and drained."""
        while not self._clients:
            if self._closed:
                return None
            self.company.busy(False, asyncio.get_running_loop().time())  # nothing queued, nothing computing
            self._arrival.clear()
            await self._arrival.wait()
        batch: list[_Request] = []
        size = 0
        deadline: float | None = None
        while True:
            while (client := self._next()) is not None and (
                not batch or size + client.queue[0].size <= self.batch_target
            ):
                request = self._take(client)
                batch.append(request)
                size += request.size
            if self._clients or size >= self.batch_target or self._closed:
                return batch
            if deadline is None:  # everything queued is in the batch, its oldest request too
                now = asyncio.get_running_loop().time()
                deadline = min(r.queued_at for r in batch) + self.company_wait(size, now)
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
