"""`hearo bench load`'s homes stream at phases spread over the gateway's hop, as independent
homes do: the hop's work (features, the alarm pattern detector, the model request) of N homes
does not all arrive in the same 100 ms frame of each hop."""

from __future__ import annotations

import numpy as np
import pytest

from hearo.load_bench.clients import FRAME_S, stream_phase_s


@pytest.mark.parametrize("homes", [2, 10, 64, 200, 256])
def test_the_homes_phases_are_spread_over_the_hop(homes: int) -> None:
    hop_s = 0.5
    phases = np.array([stream_phase_s(i, hop_s) for i in range(homes)])
    assert ((phases >= 0) & (phases < hop_s)).all()
    # The largest gap between neighbouring phases (around the circle) is at most three even shares.
    ordered = np.sort(phases)
    gaps = np.diff(np.append(ordered, ordered[0] + hop_s))
    assert gaps.max() <= 3 * hop_s / homes
    # So each 100 ms frame of the hop starts a fair share of the homes' windows, not all of them.
    slots = np.bincount((phases // FRAME_S).astype(int), minlength=round(hop_s / FRAME_S))
    assert slots.max() <= np.ceil(homes * FRAME_S / hop_s) + 2
