"""The drill agency's received deliveries and the answers it sent, in SQLite."""

from __future__ import annotations

import json
import sqlite3
import threading
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from hearo.agency_outcome import OutcomeReply


class ReportStore:
    """Received deliveries, one row per idempotency key, with an attempt count. Thread-safe."""

    def __init__(self, path: str) -> None:
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False)
        self._db.executescript(
            """
            CREATE TABLE IF NOT EXISTS deliveries (
                key TEXT PRIMARY KEY,
                channel TEXT NOT NULL,
                agency TEXT NOT NULL,
                type TEXT NOT NULL,
                payload TEXT NOT NULL,
                received_at TEXT NOT NULL,
                attempts INTEGER NOT NULL
            );
            CREATE TABLE IF NOT EXISTS outcomes (
                key TEXT PRIMARY KEY,
                outcome TEXT NOT NULL,
                status INTEGER NOT NULL,
                result TEXT NOT NULL,
                answered_at TEXT NOT NULL
            );
            """
        )

    def record(self, key: str, channel: str, agency: str, kind: str, payload: Any) -> bool:
        """Store a delivery; False (and one more attempt counted) when ``key`` was seen before."""
        now = datetime.now(timezone.utc).isoformat()
        with self._lock, self._db:
            cursor = self._db.execute(
                "INSERT INTO deliveries VALUES (?, ?, ?, ?, ?, ?, 1) ON CONFLICT(key) DO NOTHING",
                (key, channel, agency, kind, json.dumps(payload, ensure_ascii=False), now),
            )
            if cursor.rowcount == 1:
                return True
            self._db.execute("UPDATE deliveries SET attempts = attempts + 1 WHERE key = ?", (key,))
            return False

    def list(self, channel: str | None = None) -> list[dict[str, Any]]:
        """Deliveries, newest first; ``channel`` is ``webhook`` or ``sms`` to filter."""
        query = "SELECT key, channel, agency, type, payload, received_at, attempts FROM deliveries"
        args: tuple[str, ...] = ()
        if channel is not None:
            query += " WHERE channel = ?"
            args = (channel,)
        with self._lock:
            rows = self._db.execute(query + " ORDER BY received_at DESC", args).fetchall()
        return [
            {"key": r[0], "channel": r[1], "agency": r[2], "type": r[3], "payload": json.loads(r[4]),
             "received_at": r[5], "attempts": r[6]}
            for r in rows
        ]

    def get(self, key: str) -> dict[str, Any] | None:
        """One delivery by its idempotency key, or None."""
        return next((d for d in self.list() if d["key"] == key), None)

    def record_outcome(self, key: str, outcome: str, reply: OutcomeReply) -> None:
        """Keep the latest answer sent for the report ``key`` and what the gateway said."""
        now = datetime.now(timezone.utc).isoformat()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO outcomes VALUES (?, ?, ?, ?, ?) ON CONFLICT(key) DO UPDATE SET "
                "outcome = excluded.outcome, status = excluded.status, result = excluded.result, "
                "answered_at = excluded.answered_at",
                (key, outcome, reply.status, reply.result, now),
            )

    def outcomes(self) -> dict[str, dict[str, Any]]:
        """Report key -> the latest answer sent for it."""
        with self._lock:
            rows = self._db.execute("SELECT key, outcome, status, result, answered_at FROM outcomes").fetchall()
        return {r[0]: {"outcome": r[1], "status": r[2], "result": r[3], "answered_at": r[4]} for r in rows}

    def close(self) -> None:
        with self._lock:
            self._db.close()
