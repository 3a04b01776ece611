"""The search for capacity: the largest number of homes a box holds.

Doubling from ``start`` until a run fails (or ``limit`` is reached), then bisecting between
the last count that held and the first that did not. It assumes that holding is monotone in
N, which load is, up to noise; each count is measured once and remembered.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

ResultT = TypeVar("ResultT")


@dataclass(frozen=True)
class RampStep(Generic[ResultT]):
    clients: int
    held: bool
    result: ResultT


@dataclass(frozen=True)
class Ramp(Generic[ResultT]):
    """Every step in the order it was run, and the largest count that held (0: none did)."""

    steps: list[RampStep[ResultT]]
    capacity: int


def find_capacity(
    measure: Callable[[int], ResultT], holds: Callable[[ResultT], bool], start: int = 1, limit: int = 200
) -> Ramp[ResultT]:
    """Run ``measure(n)`` for the counts the search needs and return what it found.

    ``holds`` judges one result. With ``start`` failing the capacity is 0 (or, where ``start``
    is above 1, the search bisects down to 1)."""
    if not 1 <= start <= limit:
        raise ValueError(f"start ({start}) must lie in 1..limit ({limit})")
    steps: list[RampStep[ResultT]] = []

    def held(n: int) -> bool:
        result = measure(n)
        steps.append(RampStep(n, holds(result), result))
        return steps[-1].held

    good, bad = 0, None
    n = start
    while True:
        if held(n):
            good = n
            if n == limit:
                break
            n = min(2 * n, limit)
        else:
            bad = n
            break
    if bad is not None:
        while bad - good > 1:
            middle = (good + bad) // 2
            if held(middle):
                good = middle
            else:
                bad = middle
    return Ramp(steps, good)
