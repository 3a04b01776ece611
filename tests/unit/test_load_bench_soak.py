"""The soak's growth: medians of the first and last thirds, so the allocator's jitter is not a
leak and a steady rise is."""

from __future__ import annotations

import pytest

from hearo.load_bench.soak import Footprint, growth


def footprints(rss: list[float], tasks: list[int | None]) -> list[Footprint]:
    return [Footprint(60.0 * i, r, 140, 108, t, 5, 520.0, 15) for i, (r, t) in enumerate(zip(rss, tasks))]


def test_jitter_up_and_down_is_not_growth() -> None:
    rss = [719.0, 732.0, 835.0, 836.0, 837.0, 745.0, 735.0, 815.0, 727.0, 819.0, 811.0, 828.0]
    grown = growth(footprints(rss, [520] * len(rss)))
    assert grown["gateway_rss_mib"] == pytest.approx(815.0 / 783.5 - 1.0, abs=1e-4) and grown["gateway_rss_mib"] < 0.05
    assert grown["gateway_tasks"] == 0.0 and grown["gateway_db_connections"] == 0.0


def test_a_steady_rise_is_growth_and_an_unread_measure_is_none() -> None:
    rss = [700.0 + 10.0 * i for i in range(9)]  # a leak: every round a little more
    grown = growth(footprints(rss, [None] * 9))
    assert grown["gateway_rss_mib"] == pytest.approx(770.0 / 710.0 - 1.0, abs=1e-4)
    assert grown["gateway_rss_mib"] > 0.05
    assert grown["gateway_tasks"] is None
    assert growth(footprints([700.0], [1])) == {}


def test_a_count_that_moved_by_one_is_flat_and_by_two_is_not() -> None:
    rss = [700.0] * 3
    assert growth(footprints(rss, [7, 7, 8]))["gateway_tasks"] == 0.0
    assert growth(footprints(rss, [7, 7, 6]))["gateway_tasks"] == 0.0
    assert growth(footprints(rss, [7, 7, 9]))["gateway_tasks"] == pytest.approx(2 / 7, abs=1e-4)
    assert growth(footprints([700.0, 700.0, 701.0], [7, 7, 7]))["gateway_rss_mib"] == pytest.approx(1 / 700, abs=1e-4)
