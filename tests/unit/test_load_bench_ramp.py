"""hearo bench load --ramp: doubling, then bisecting, to the largest N that holds."""

from __future__ import annotations

import pytest

from hearo.load_bench.ramp import find_capacity


def ramp_against(capacity: int, start: int = 1, limit: int = 200) -> tuple[int, list[int]]:
    measured: list[int] = []

    def measure(n: int) -> int:
        measured.append(n)
        return n

    found = find_capacity(measure, lambda n: n <= capacity, start, limit)
    assert [s.clients for s in found.steps] == measured
    assert all(s.held == (s.clients <= capacity) for s in found.steps)
    return found.capacity, measured


@pytest.mark.parametrize("capacity", [1, 2, 3, 37, 64, 65, 127, 199])
def test_the_search_finds_the_largest_count_that_holds(capacity: int) -> None:
    found, measured = ramp_against(capacity)
    assert found == capacity
    assert len(measured) == len(set(measured))  # no count measured twice


def test_doubling_then_bisecting() -> None:
    assert ramp_against(37)[1] == [1, 2, 4, 8, 16, 32, 64, 48, 40, 36, 38, 37]


def test_a_box_that_holds_at_the_limit_stops_there() -> None:
    assert ramp_against(1000, limit=100) == (100, [1, 2, 4, 8, 16, 32, 64, 100])


def test_nothing_holds() -> None:
    assert ramp_against(0) == (0, [1])
    assert ramp_against(0, start=4) == (0, [4, 2, 1])


def test_a_start_above_capacity_bisects_down() -> None:
    assert ramp_against(5, start=8) == (5, [8, 4, 6, 5])


def test_a_start_outside_the_limit_is_refused() -> None:
    with pytest.raises(ValueError):
        find_capacity(lambda n: n, lambda n: True, start=5, limit=4)
