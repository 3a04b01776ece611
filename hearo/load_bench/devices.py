"""The bench's own devices, registered, checked and erased through the gateway's REST API.

Registration is rate limited per address (``HEARO_GATEWAY_REGISTRATION_PER_IP``: 10 at once,
then one a minute by default), so the bench registers each device once, reuses it across a
ramp's runs, and says which setting to raise when the gateway refuses more. Every other call
honours the gateway's ``Retry-After``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx

MAX_RETRY_WAIT_S = 10.0
UNRESOLVED_STATES = frozenset({"pending", "dispatching", "dispatched", "failed"})


class RegistrationRefused(RuntimeError):
    """The gateway would not register another bench device."""


@dataclass(frozen=True)
class Device:
    device_id: str
    token: str


class BenchDevices:
    """Devices named ``bench-<n>``, registered as a run needs them."""

    def __init__(self, api_url: str) -> None:
        self.http = httpx.Client(base_url=api_url, timeout=10.0)
        self.devices: list[Device] = []

    def first(self, count: int) -> list[Device]:
        """``count`` devices, registering those not yet registered."""
        while len(self.devices) < count:
            body = {
                "profile": {"name": f"bench-{len(self.devices)}", "birth_year": 1940},
                "consent_recording": True,
                "consent_location": False,
                "consent_share_profile": False,
            }
            response = self._request("POST", "/v1/devices", json=body)
            if response.status_code != 201:
                raise RegistrationRefused(
                    f"registering device {len(self.devices) + 1} was refused ({response.status_code}: "
                    f"{response.text[:200]}); for more than 10 homes, start the gateway with a higher "
                    "HEARO_GATEWAY_REGISTRATION_PER_IP (--start-system does)"
                )
            credentials = response.json()
            self.devices.append(Device(credentials["device_id"], credentials["token"]))
        return self.devices[:count]

    def unresolved_incidents(self, devices: list[Device]) -> list[dict[str, Any]]:
        """The incidents of ``devices`` that are not cancelled: pending ones would be reported."""
        found = []
        for device in devices:
            response = self._request("GET", "/v1/incidents", token=device.token)
            response.raise_for_status()
            found += [i for i in response.json()["incidents"] if i["state"] in UNRESOLVED_STATES]
        return found

    def erase_all(self) -> list[str]:
        """Delete every bench device (and its incidents and clips); the refusals, if any."""
        refused = []
        for device in self.devices:
            response = self._request("DELETE", "/v1/devices/me", token=device.token)
            if response.status_code != 200:
                refused.append(f"{device.device_id}: {response.status_code} {response.text[:200]}")
        self.devices = []
        self.http.close()
        return refused

    def _request(self, method: str, path: str, token: str | None = None, **kwargs: Any) -> httpx.Response:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        while True:
            response = self.http.request(method, path, headers=headers, **kwargs)
            wait = float(response.headers.get("Retry-After", "0") or 0)
            if response.status_code not in (409, 429) or not 0 < wait <= MAX_RETRY_WAIT_S:
                return response
            time.sleep(wait)
