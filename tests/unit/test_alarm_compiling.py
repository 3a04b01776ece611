"""shared.alarm_patterns.compiling: the detector's stages are compiled at import, cached where
numba can, and compiled anyway where it cannot (a read-only image with no writable home)."""

from __future__ import annotations

from typing import Any

from shared.alarm_patterns import pieces, soundings, spectral
from shared.alarm_patterns.compiling import compiled


def test_the_stages_are_compiled_for_their_one_signature_at_import() -> None:
    stages: list[Any] = [spectral.spectral_stage, soundings.follow_rows, pieces.cut_pulses]  # numba dispatchers
    for stage in stages:
        assert len(stage.signatures) == 1
        assert stage._cache is not None  # numba caches them


def test_a_function_numba_cannot_cache_is_compiled_all_the_same() -> None:
    # Code with no file on disk has no cache locator: numba raises at decoration with cache=True.
    namespace: dict[str, object] = {}
    exec("def twice(x):\n    return 2 * x\n", namespace)
    twice = compiled("int64(int64)")(namespace["twice"])  # type: ignore[type-var]
    assert twice(21) == 42  # type: ignore[operator]
