"""What tests of the duress cancel compare: a device's view of two incidents, without what
always differs between two incidents (ids, times, a clip link's expiry and signature)."""

from __future__ import annotations

import json
import re
from typing import Any

_ID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_TIME = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|Z)?")
# A clip link's expiry and signature (in the link, and in the audit of its issue).
_LINK = re.compile(r"(exp=|sig=)[^&\"]+")
_EXPIRY = re.compile(r'"link_expires_at": \d+')


def masked(value: Any) -> Any:
    """``value`` as JSON with every id, time and link signature replaced: what two incidents
    may differ by."""
    text = json.dumps(value, sort_keys=True, default=str)
    text = _EXPIRY.sub('"link_expires_at": 0', _LINK.sub(r"\1<link>", text))
    return json.loads(_TIME.sub("<time>", _ID.sub("<id>", text)))
