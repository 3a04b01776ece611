"""The reader-to-classifier channel: stream order, bounded in windows, matches never dropped."""

from __future__ import annotations

import asyncio

import torch

from services.gateway.audio import Window
from services.gateway.heard_queue import END, HeardQueue, Queued
from shared.alarm_patterns import AlarmPatternMatch


def window(end_s: float) -> Window:
    return Window(torch.zeros(1), end_s)


def match(at_s: float) -> AlarmPatternMatch:
    return AlarmPatternMatch("temporal3", "fire", 0.9, at_s, 3100.0)


async def test_take_gives_everything_in_order_up_to_the_end() -> None:
    queue = HeardQueue(max_windows=4)
    items: list[Queued] = [window(2.0), match(2.2), window(2.5), END]
    for item in items:
        await queue.put(item)
    assert await queue.take() == items and not queue.has_windows


async def test_a_live_client_loses_the_oldest_window_never_a_match() -> None:
    queue = HeardQueue(max_windows=2)
    first, kept = window(2.0), match(2.1)
    for item in (first, kept, window(2.5)):
        assert queue.put_dropping_oldest(item) is False
    assert queue.put_dropping_oldest(window(3.0)) is True  # told once ...
    assert queue.put_dropping_oldest(window(3.5)) is False  # ... until the classifier catches up
    taken = await queue.take()
    assert first not in taken and taken[0] is kept
    assert [w.end_s for w in taken if isinstance(w, Window)] == [3.0, 3.5]
    queue.caught_up()
    for end_s in (4.0, 4.5):
        queue.put_dropping_oldest(window(end_s))
    assert queue.put_dropping_oldest(window(5.0)) is True


async def test_recorded_audio_waits_for_room_but_a_match_does_not() -> None:
    queue = HeardQueue(max_windows=1)
    await queue.put(window(2.0))
    await queue.put(match(2.1))  # a match gets in however full
    waiting = asyncio.create_task(queue.put(window(2.5)))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    assert len(await queue.take()) == 2
    await asyncio.wait_for(waiting, 1.0)
    assert queue.full
