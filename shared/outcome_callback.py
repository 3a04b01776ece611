"""The outcome callback: where an agency answers a report, and the credential it signs with.

Each report tells its agency (``data.outcome_callback`` of ``incident.reported``)::

    {"url": "<public base URL>/v1/incidents/<id>/outcome",
     "secret": "whsec_...",                      # for this incident and this agency only
     "outcomes": ["confirmed_emergency", "no_emergency_found", "unable_to_reach"]}

The agency posts ``{"agency_id", "outcome", "note"?}`` to ``url`` signed as a Standard
Webhook with ``secret`` (:func:`shared.standard_webhooks.webhook_headers`: a fresh
``webhook-id`` per answer, the current ``webhook-timestamp``).

The secret is not stored: it is ``HMAC-SHA256(root, "hearo outcome callback v1" NUL
incident_id NUL agency_id)``, where ``root`` is the deployment's clip-signing secret
(``HEARO_CLIPS_SECRET_KEY`` or ``HEARO_SECRET_KEY``), which the alerting worker and every
gateway already share. The label keeps it apart from the clip links signed with the same
root (those sign ``key\\nexpiry``). So the worker can hand it out and any gateway can check it
without a table or a second secret to distribute; it opens one incident's ledger entry for
one agency and nothing else. A rotation of the root (``HEARO_CLIPS_PREVIOUS_SECRET_KEYS``)
keeps earlier callbacks valid until the previous root is dropped.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import uuid
from collections.abc import Sequence
from typing import Any

from shared.clips import ClipStorageSettings
from shared.incident_state import IncidentOutcome
from shared.standard_webhooks import SECRET_PREFIX

CALLBACK_PATH = "/v1/incidents/{incident_id}/outcome"
_LABEL = b"hearo outcome callback v1\x00"


def callback_secret(root: str, incident_id: uuid.UUID, agency_id: str) -> str:
    """The ``whsec_`` secret with which ``agency_id`` signs its outcome for ``incident_id``."""
    message = _LABEL + str(incident_id).encode() + b"\x00" + agency_id.encode()
    return SECRET_PREFIX + base64.b64encode(hmac.new(root.encode(), message, hashlib.sha256).digest()).decode()


class OutcomeCallbacks:
    """Builds the callback a report carries and the secrets a callback is checked against.

    ``roots`` are the clip-signing secrets, current first. Build it with :meth:`from_settings`;
    the roots are read on first use (in development that generates the shared secret under
    ``HEARO_DATA_DIR``), so building an app for its schema writes nothing.
    """

    def __init__(self, public_base_url: str, roots: Sequence[str] | None = None, *, clips: ClipStorageSettings | None = None) -> None:
        self.public_base_url = public_base_url.rstrip("/")
        self._roots = None if roots is None else tuple(roots)
        self._clips = clips

    @classmethod
    def from_settings(cls, clips: ClipStorageSettings) -> OutcomeCallbacks:
        return cls(clips.public_base_url, clips=clips)

    @property
    def roots(self) -> tuple[str, ...]:
        """The roots, current first; empty when none is configured (S3 clips outside
        development without ``HEARO_CLIPS_SECRET_KEY``): then no callback is offered or accepted."""
        if self._roots is None:
            try:
                self._roots = tuple(self._clips.signing_secrets()) if self._clips is not None else ()
            except ValueError:  # outside development with no key: no callbacks
                self._roots = ()
        return self._roots

    def url(self, incident_id: uuid.UUID) -> str:
        return self.public_base_url + CALLBACK_PATH.format(incident_id=incident_id)

    def for_report(self, incident_id: uuid.UUID, agency_id: str) -> dict[str, Any] | None:
        """The ``outcome_callback`` of a report to ``agency_id``, or None when none can be offered."""
        if not self.roots:
            return None
        return {
            "url": self.url(incident_id),
            "secret": callback_secret(self.roots[0], incident_id, agency_id),
            "outcomes": [outcome.value for outcome in IncidentOutcome],
        }

    def secrets(self, incident_id: uuid.UUID, agency_id: str) -> list[str]:
        """Every secret a callback for ``incident_id`` from ``agency_id`` may be signed with."""
        return [callback_secret(root, incident_id, agency_id) for root in self.roots]
