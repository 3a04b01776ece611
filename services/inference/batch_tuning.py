"""The batcher's batch size and wait, chosen from the served model's measured throughput curve.

A bigger batch amortises the model's fixed cost per call, but every window in it waits for the
whole batch. On a CPU the gain flattens early (on the 2-core VM the default model gave about the
same windows/s at batch 8 as at 32, in a third of the time per call); on a GPU it keeps growing
far longer. One configured batch size is wrong on one of them, so at startup the service times
its own model, on its own device and thread count, at batch 1, 2, 4 ... up to the ceiling
``HEARO_INFERENCE_MAX_BATCH`` (also the most windows one request may carry), and then:

- batches up to the smallest size whose windows/s reaches ``KNEE`` (90 %) of the best measured:
  past it, a bigger batch buys little throughput for a longer wait;
- lets the oldest window wait for company at most ``HEARO_INFERENCE_MAX_WAIT_MS``, and only as
  long as the rate of company needs to fill that batch (the batcher's ``company_wait``); a model
  whose curve never gains from batching (target 1) does not wait at all.

``HEARO_INFERENCE_BATCH_TUNING=false`` keeps the configured ceiling and wait as they are.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

# The share of the best measured windows/s a batch size must reach to be chosen.
KNEE = 0.9
# Each size is timed this many times, and the fastest counts: a busy host only ever slows a run.
_REPEATS = 3


@dataclass(frozen=True)
class BatchTiming:
    """The fastest of a few model calls on ``size`` windows."""

    size: int
    seconds: float

    @property
    def windows_per_s(self) -> float:
        return self.size / self.seconds


@dataclass(frozen=True)
class BatchPlan:
    """What the batcher forms: batches of up to ``target`` windows, waiting at most ``max_wait_s``."""

    target: int
    max_wait_s: float
    timings: tuple[BatchTiming, ...] = ()

    def describe(self) -> dict[str, Any]:
        """For ``/healthz`` and the startup log: the choice and the curve it came from."""
        return {
            "batch_target": self.target,
            "max_wait_ms": round(self.max_wait_s * 1000, 2),
            "measured": {t.size: round(t.windows_per_s, 1) for t in self.timings},
        }


def batch_sizes(ceiling: int) -> list[int]:
    """1, 2, 4 ... below ``ceiling``, then ``ceiling`` itself."""
    sizes = [1]
    while sizes[-1] * 2 < ceiling:
        sizes.append(sizes[-1] * 2)
    return sizes if sizes[-1] == ceiling else [*sizes, ceiling]


def measure(predict: Callable[[torch.Tensor], Any], window: tuple[int, int], ceiling: int,
            device: torch.device | str = "cpu") -> list[BatchTiming]:  # fmt: skip
    """Time ``predict`` on random windows of shape ``window`` at every size of ``batch_sizes``.
    Run it in the thread that will run the model (its intra-op thread count is per thread)."""
    timings = []
    with torch.inference_mode():
        predict(torch.randn(1, *window, device=device))  # first-call set-up is not throughput
        for size in batch_sizes(ceiling):
            windows = torch.randn(size, *window, device=device)
            best = float("inf")
            for _ in range(_REPEATS):
                started = time.perf_counter()
                predict(windows)
                if windows.device.type == "cuda":
                    torch.cuda.synchronize(windows.device)
                best = min(best, time.perf_counter() - started)
            timings.append(BatchTiming(size, max(best, 1e-9)))
    return timings


def choose(timings: list[BatchTiming], max_wait_s: float, knee: float = KNEE) -> BatchPlan:
    """The plan for a measured curve (see the module docstring); ``max_wait_s`` is the ceiling."""
    if not timings:
        raise ValueError("no batch timings to choose from")
    best = max(t.windows_per_s for t in timings)
    chosen = min((t for t in timings if t.windows_per_s >= knee * best), key=lambda t: t.size)
    return BatchPlan(chosen.size, max_wait_s if chosen.size > 1 else 0.0, tuple(timings))
