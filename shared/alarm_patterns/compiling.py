"""numba compilation for the alarm pattern detector's per-frame stages (``spectral``,
``soundings``): ahead, at import, for the one signature each is called with, so that no
session waits for a compiler mid-stream.

A compilation takes a few seconds; numba's cache keeps it (``NUMBA_CACHE_DIR``, else the
package's ``__pycache__``, else the user's cache folder). Where none is writable (a read-only
image with no home) numba refuses to cache, and the function is compiled at every start.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from numba import njit

F = TypeVar("F", bound=Callable[..., object])


def compiled(signature: str) -> Callable[[F], F]:
    """Compile the decorated function for ``signature`` now, cached on disk where possible."""

    def compile_now(function: F) -> F:
        try:
            return njit(signature, cache=True)(function)  # type: ignore[return-value]
        except RuntimeError:  # "cannot cache function ...: no locator available"
            return njit(signature)(function)  # type: ignore[return-value]

    return compile_now


def inlined(function: F) -> F:
    """A helper of compiled functions, inlined into each (so cached with them, never on its own)."""
    return njit(inline="always")(function)  # type: ignore[return-value]
