"""The channel from a session's reader to its classifier: what the ``AudioPipeline`` heard
(model windows and alarm pattern matches, in stream order), then the end of the stream.

Bounded in windows only: a match is a few bytes and must never be lost, and the end must
always get in. When the windows fill it, the reader either waits (``put``: recorded audio,
or the stream's tail) or drops the oldest window (``put_dropping_oldest``: a live client,
whose audio cannot wait); matches keep their place in stream order either way.

>>> queue = HeardQueue(max_windows=8)
>>> await queue.put(window)
>>> await queue.put(END)
>>> await queue.take()       # [window, END]: everything waiting, up to the end
"""

from __future__ import annotations

import asyncio
import enum
from collections import deque

from services.gateway.audio import Heard, Window
from services.gateway.metrics import GATEWAY_METRICS, DropReason


class _End(enum.Enum):
    END = "end"


# Put after the stream's last window and match, at ``stop`` or when the client leaves.
END = _End.END
Queued = Heard | _End


class HeardQueue:
    """Windows, matches and the end marker in stream order, at most ``max_windows`` windows."""

    def __init__(self, max_windows: int) -> None:
        if max_windows < 1:
            raise ValueError(f"max_windows must be >= 1, got {max_windows}")
        self.max_windows = max_windows
        self._items: deque[Queued] = deque()
        self._windows = 0
        self._changed = asyncio.Event()  # set when items are added or taken
        self._dropping = False  # windows were dropped since the consumer last caught up

    @property
    def has_windows(self) -> bool:
        return self._windows > 0

    @property
    def full(self) -> bool:
        return self._windows >= self.max_windows

    async def put(self, item: Queued) -> None:
        """Queue ``item``; a window waits while the queue is full."""
        while isinstance(item, Window) and self.full:
            self._changed.clear()
            await self._changed.wait()
        self._append(item)

    def put_dropping_oldest(self, item: Queued) -> bool:
        """Queue ``item`` now; when a window finds the queue full, the oldest window goes
        first, and is counted (``DropReason.BEHIND``). Returns True for the first window
        dropped since the consumer last ``caught_up`` (the client is told once)."""
        if not (isinstance(item, Window) and self.full):
            self._append(item)
            return False
        oldest = next(i for i, queued in enumerate(self._items) if isinstance(queued, Window))
        del self._items[oldest]
        self._windows -= 1
        GATEWAY_METRICS.windows_dropped(DropReason.BEHIND)
        self._append(item)
        first, self._dropping = not self._dropping, True
        return first

    def caught_up(self) -> None:
        """The consumer kept up: no window waits. A later drop is told again."""
        if not self._windows:
            self._dropping = False

    async def take(self) -> list[Queued]:
        """Everything queued, up to and including the end marker; waits for at least one item."""
        while not self._items:
            self._changed.clear()
            await self._changed.wait()
        taken: list[Queued] = []
        while self._items and (not taken or taken[-1] is not END):
            taken.append(self._items.popleft())
        self._windows -= sum(1 for item in taken if isinstance(item, Window))
        self._changed.set()
        return taken

    def _append(self, item: Queued) -> None:
        self._items.append(item)
        if isinstance(item, Window):
            self._windows += 1
        self._changed.set()
