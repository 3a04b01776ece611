"""The listening mode in the device routes (``PATCH``/``GET /v1/devices/me``; docs/anomaly.md):
setting it, and the anomaly model's state shown beside it."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from services.gateway.schemas import DeviceOut, DeviceUpdate
from shared.anomaly.policy import AnomalyPolicy
from shared.anomaly.store import anomaly_state
from shared.db import Database, Device
from shared.device_modes import ListeningMode


def anomaly_policy_of(request: Request) -> AnomalyPolicy:
    """The app's anomaly policy (``app.state.anomaly_policy``; the default when unset)."""
    policy: AnomalyPolicy = getattr(request.app.state, "anomaly_policy", AnomalyPolicy())
    return policy


AnomalyPolicyDep = Annotated[AnomalyPolicy, Depends(anomaly_policy_of)]


def set_listening_mode(device: Device, body: DeviceUpdate) -> bool:
    """Apply the body's ``listening_mode`` and ``inactivity_span_s``; True when the mode or
    span changed (the device's live sessions must hear of it)."""
    given = body.model_fields_set
    before = (device.listening_mode, device.inactivity_span_s)
    if body.listening_mode is not None:
        device.listening_mode = ListeningMode(body.listening_mode)
    if "inactivity_span_s" in given:
        device.inactivity_span_s = body.inactivity_span_s
    return (device.listening_mode, device.inactivity_span_s) != before


async def with_anomaly_state(out: DeviceOut, db: Database, policy: AnomalyPolicy) -> DeviceOut:
    """``out`` with its anomaly model's state (learning since, share heard, version, budget)."""
    return out.model_copy(update={"anomaly": await anomaly_state(db, out.id, policy)})
