"""Keep the objects a service made at startup out of the garbage collector's full passes.

A gateway or inference process holds a few hundred thousand objects from startup (torch,
numpy, the model, SQLAlchemy's mappers) that live as long as it does. Python's oldest
generation is collected whenever enough new long-lived objects pile up, and each such pass
walks every tracked object: under `hearo bench load` at 64 homes the gateway's full passes took
up to 211 ms (375,000 objects), and the event loop, which every session's audio shares, stood
still meanwhile. ``gc.freeze`` moves what exists now into a permanent generation that those
passes skip; what sessions create later is collected as before.
"""

from __future__ import annotations

import gc
import logging

log = logging.getLogger(__name__)


def freeze_startup_objects() -> None:
    """Collect once, then exempt every surviving object from later collections. Called by
    ``hearo serve`` once the service's app is built (its imports done), before it serves: not
    in ``create_app``, whose apps tests make and drop by the hundred in one process (a frozen
    object in a reference cycle is never freed)."""
    gc.collect()
    gc.freeze()
    log.info("%d startup objects exempted from garbage collection", gc.get_freeze_count())
