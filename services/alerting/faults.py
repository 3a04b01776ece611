"""Fault injection for the chaos suite: the worker SIGKILLs itself at a named step.

Off unless ``HEARO_ALERTING_FAULT_KILL_AT`` names steps. The steps, in the order a
delivery meets them:

* ``after_incident_claim``: the sweeper committed ``dispatching`` and the outbox rows,
  nothing is published yet;
* ``after_claim``: a sender holds a row's lease, nothing is sent;
* ``after_send``: the receiver has the request, the worker has its answer, nothing is recorded;
* ``before_record``: the outcome is computed and about to be written;
* ``after_record``: the outcome is committed, the Celery message is not yet acknowledged.

A kill is ``SIGKILL`` to the worker's own process: no ``finally``, no ``atexit``, no
acknowledgement, the same as ``kill -9`` or the OOM killer. With a ``first_kill_marker``
file the first step reached (by any worker sharing the file) kills for certain, so a test
knows the fault fired; the marker records that it did.
"""

from __future__ import annotations

import os
import random
import signal
from pathlib import Path

STEPS = ("after_incident_claim", "after_claim", "after_send", "before_record", "after_record")


class FaultInjector:
    """Kills the process at configured steps with probability ``probability``."""

    def __init__(
        self,
        steps: frozenset[str],
        probability: float,
        rng: random.Random | None = None,
        first_kill_marker: Path | None = None,
    ) -> None:
        unknown = steps - set(STEPS)
        if unknown:
            raise ValueError(f"unknown fault steps {sorted(unknown)}; known: {', '.join(STEPS)}")
        self.steps = steps
        self.probability = probability
        self._rng = rng or random.Random()
        self.first_kill_marker = first_kill_marker

    def step(self, name: str) -> None:
        """Called by the worker at step ``name``; returns unless this is where it dies."""
        if name not in self.steps:
            return
        if self.first_kill_marker is not None and not self.first_kill_marker.exists():
            self.first_kill_marker.parent.mkdir(parents=True, exist_ok=True)
            self.first_kill_marker.touch()
            os.kill(os.getpid(), signal.SIGKILL)
        if self._rng.random() < self.probability:
            os.kill(os.getpid(), signal.SIGKILL)
