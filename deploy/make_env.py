"""Print a docker compose ``.env`` with fresh secrets: ``python3 deploy/make_env.py > .env``.

Reads ``.env.example`` (beside the compose file) and fills every empty required value with a
new random secret, so no two deployments share one and none is a public default. The drill
agency's 112 and 119 become ``HEARO_ALERTING_AGENCIES``, signed with the generated webhook
secret: replace them with the real agencies before going live (docs/operations.md).
Standard library only: it runs before any virtual environment exists.
"""

from __future__ import annotations

import base64
import json
import secrets
import sys
from pathlib import Path

EXAMPLE = Path(__file__).resolve().parents[1] / ".env.example"
# Values left empty in .env.example that stay empty (optional settings).
OPTIONAL = frozenset({"HEARO_ALERTING_OPS_WEBHOOK_URL"})
DRILL_AGENCY_URL = "http://agency:8090"


def drill_agencies(webhook_secret: str) -> str:
    """112 and 119 as webhooks to the drill agency (``hearo agency``), as JSON."""
    def agency(agency_id: str, name: str) -> dict[str, object]:
        channel = {"kind": "webhook", "url": f"{DRILL_AGENCY_URL}/webhooks/{agency_id}", "secrets": [webhook_secret]}
        return {"name": name, "channels": [channel]}

    return json.dumps({"112": agency("112", "112 (drill agency)"), "119": agency("119", "119 (drill agency)")})


def generated() -> dict[str, str]:
    """A fresh value for every secret of ``.env.example``."""
    webhook_secret = "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()
    values = {
        "POSTGRES_PASSWORD": secrets.token_urlsafe(24),
        "REDIS_PASSWORD": secrets.token_urlsafe(24),
        "MINIO_ROOT_PASSWORD": secrets.token_urlsafe(24),
        "MINIO_KMS_SECRET_KEY": "hearo-clips:" + base64.b64encode(secrets.token_bytes(32)).decode(),
        "HEARO_SECRET_KEY": secrets.token_urlsafe(32),
        "HEARO_INFERENCE_TOKEN": secrets.token_urlsafe(32),
        "HEARO_GATEWAY_ENROLMENT_KEY": secrets.token_urlsafe(24),
        "HEARO_WEBHOOK_SECRET": webhook_secret,
        "HEARO_AGENCY_PASSWORD": secrets.token_urlsafe(18),
    }
    values["HEARO_ALERTING_AGENCIES"] = drill_agencies(webhook_secret)
    return values


def render(example: str, values: dict[str, str]) -> str:
    """``example`` with each empty ``KEY=`` line filled from ``values`` (single-quoted: literal to compose)."""
    lines = []
    for line in example.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.startswith("#") and not value and key not in OPTIONAL:
            if key not in values:
                raise SystemExit(f"make_env.py: no generator for {key}; add one")
            line = f"{key}='{values[key]}'"
        lines.append(line)
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, str]:
    """The variables of an env file as compose reads this one (``KEY=value``, ``KEY='literal'``)."""
    variables = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not line.lstrip().startswith("#"):
            if len(value) >= 2 and value[0] == value[-1] == "'":
                value = value[1:-1]
            variables[key.strip()] = value
    return variables


if __name__ == "__main__":
    sys.stdout.write(render(EXAMPLE.read_text(), generated()))
