"""A session's phases: the legal ones in order, and an illegal change raises."""

from __future__ import annotations

import pytest

from services.gateway.session_state import IllegalPhaseChange, SessionPhase, SessionState


def test_a_session_goes_through_its_phases_in_order() -> None:
    phase = SessionPhase()
    assert phase.state is SessionState.HANDSHAKE
    for later in (SessionState.STREAMING, SessionState.ENDING, SessionState.FOLLOWING, SessionState.ENDED):
        phase.advance(later)
        assert phase.state is later
    phase.end()  # again is harmless
    assert phase.state is SessionState.ENDED


@pytest.mark.parametrize(
    ("path", "illegal"),
    [
        ((), SessionState.ENDING),  # no stop before streaming
        ((SessionState.STREAMING,), SessionState.HANDSHAKE),
        ((SessionState.STREAMING,), SessionState.FOLLOWING),  # only after the tail is judged
        ((SessionState.ENDED,), SessionState.STREAMING),
    ],
)
def test_an_illegal_change_raises(path: tuple[SessionState, ...], illegal: SessionState) -> None:
    phase = SessionPhase()
    for state in path:
        phase.advance(state)
    with pytest.raises(IllegalPhaseChange):
        phase.advance(illegal)
    assert phase.state is (path[-1] if path else SessionState.HANDSHAKE)
