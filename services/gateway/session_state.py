"""A stream session's phase, and the ways a session ends early.

    HANDSHAKE ──> STREAMING ──> ENDING ──> FOLLOWING ──> ENDED
        │             │            │                       ^
        └─────────────┴────────────┴───────────────────────┘

* ``HANDSHAKE``: waiting for ``start``, authenticating, admitting;
* ``STREAMING``: ``ready`` sent; audio in, windows classified;
* ``ENDING``: ``stop`` came or the client left; the stream's tail is being judged;
* ``FOLLOWING``: ``stopped`` sent; the session stays while an incident it follows is
  unresolved (only after ``stop``: a client that left is not followed);
* ``ENDED``: closed, from any phase (an error, a disconnect, the gateway ending it).

Exceptions that end a session (caught by ``StreamSession.run``):

    SessionFatal     the client gets a fatal ``error`` with its code, and the code's close
    ClientLeft       the client closed the socket or went away
"""

from __future__ import annotations

import enum

from shared.protocol import ErrorCode


class SessionState(enum.Enum):
    HANDSHAKE = "handshake"
    STREAMING = "streaming"
    ENDING = "ending"
    FOLLOWING = "following"
    ENDED = "ended"

    def can_become(self, later: SessionState) -> bool:
        return later in _NEXT[self]


_NEXT: dict[SessionState, frozenset[SessionState]] = {
    SessionState.HANDSHAKE: frozenset({SessionState.STREAMING, SessionState.ENDED}),
    SessionState.STREAMING: frozenset({SessionState.ENDING, SessionState.ENDED}),
    SessionState.ENDING: frozenset({SessionState.FOLLOWING, SessionState.ENDED}),
    SessionState.FOLLOWING: frozenset({SessionState.ENDED}),
    SessionState.ENDED: frozenset(),
}


class IllegalPhaseChange(RuntimeError):
    """A session was asked to move to a phase its current phase cannot lead to (a bug)."""

    def __init__(self, current: SessionState, wanted: SessionState) -> None:
        super().__init__(f"a session cannot go from {current.value} to {wanted.value}")
        self.current = current
        self.wanted = wanted


class SessionPhase:
    """The phase of one session; ``advance`` to a later one, or raise ``IllegalPhaseChange``.

    >>> phase = SessionPhase()
    >>> phase.advance(SessionState.STREAMING)
    >>> phase.advance(SessionState.HANDSHAKE)
    Traceback (most recent call last):
    ...
    services.gateway.session_state.IllegalPhaseChange: a session cannot go from streaming to handshake
    """

    def __init__(self) -> None:
        self.state = SessionState.HANDSHAKE

    def advance(self, later: SessionState) -> None:
        if not self.state.can_become(later):
            raise IllegalPhaseChange(self.state, later)
        self.state = later

    def end(self) -> None:
        """Move to ``ENDED`` (again is harmless: every path out of a session ends it)."""
        if self.state is not SessionState.ENDED:
            self.advance(SessionState.ENDED)


REVOKED_MESSAGE = "the device token was rotated or the device deleted; reconnect with a current token"


class SessionFatal(Exception):
    """Ends the session with an ``error`` (fatal) and the code's close."""

    def __init__(self, code: ErrorCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class ClientLeft(Exception):
    """The client closed the socket or went away."""


class StreamEnd(enum.Enum):
    """How a stream's audio ended: its tail is judged either way."""

    STOPPED = enum.auto()  # the client sent ``stop``
    LEFT = enum.auto()  # the client closed the socket or went away
