"""Answering a received report through its signed ``outcome_callback``, as an agency does."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from typing import Any

import httpx

from shared.incident_state import IncidentOutcome
from shared.standard_webhooks import webhook_headers


@dataclass(frozen=True)
class OutcomeReply:
    """What the gateway answered an outcome callback: the HTTP status and ``result`` (200:
    ``recorded``, ``replaced``, ``unchanged``) or the error's ``code``."""

    status: int
    result: str
    body: Any

    @property
    def accepted(self) -> bool:
        return self.status == 200


async def send_outcome(
    report: dict[str, Any],
    outcome: IncidentOutcome | str,
    note: str | None = None,
    *,
    client: httpx.AsyncClient | None = None,
    timeout_s: float = 10.0,
) -> OutcomeReply:
    """Answer a received ``incident.reported`` ``report`` (its JSON payload) with ``outcome``,
    signed with the report's ``outcome_callback.secret`` under a fresh ``webhook-id``.

    Raises ValueError when the report carries no callback; network errors are httpx's.
    """
    data = report["data"]
    callback = data.get("outcome_callback")
    if not callback:
        raise ValueError("this report carries no outcome_callback")
    body = json.dumps(
        {"agency_id": data["agency"]["id"], "outcome": IncidentOutcome(outcome).value, "note": note}
    ).encode()
    headers = webhook_headers([callback["secret"]], f"msg_{uuid.uuid4().hex}", body)
    if client is None:
        async with httpx.AsyncClient(timeout=timeout_s) as own:
            response = await own.post(callback["url"], content=body, headers=headers)
    else:
        response = await client.post(callback["url"], content=body, headers=headers, timeout=timeout_s)
    try:
        answer = response.json()
    except ValueError:
        answer = response.text
    if response.status_code == 200 and isinstance(answer, dict):
        result = str(answer.get("result"))
    elif isinstance(answer, dict) and isinstance(answer.get("detail"), dict):
        result = str(answer["detail"].get("code"))
    else:
        result = f"http_{response.status_code}"
    return OutcomeReply(response.status_code, result, answer)
