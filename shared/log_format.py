"""How every service writes its log, and the ids that ride on each line.

Two formats, one per audience (``HEARO_LOG_FORMAT``):

* ``text`` (the embedded default): one readable line for a person at a terminal;
* ``json`` (docker-compose and k8s set it): one JSON object per line for a log pipeline, with
  ``timestamp``, ``level``, ``logger``, ``event`` and, on a failure, ``exception``.

Either way, the ids bound with :func:`bind_log_ids` (``session_id``, ``device_id``,
``incident_id``) are added to every line written while they are bound, so an operator can
follow one stream or one incident through the gateway and the alerting workers without each
log call repeating them. They live in context variables: an asyncio task started after the
binding inherits it, and a binding inside a task stays in that task.

What never reaches a line (audio, tokens, clip signatures) is :mod:`shared.log_hygiene`'s job:
its filters run on the records before either format sees them.
"""

from __future__ import annotations

import logging
from typing import Literal

import structlog

__all__ = ["LogFormat", "bind_log_ids", "bound_log_ids", "configure_logging", "log_ids"]

LogFormat = Literal["text", "json"]

_TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"

bind_log_ids = structlog.contextvars.bind_contextvars
"""Bind ids (``session_id=...``) for the rest of the current context."""

bound_log_ids = structlog.contextvars.bound_contextvars
"""Bind ids for the duration of a ``with`` block."""


def log_ids() -> dict[str, object]:
    """The ids bound in the current context."""
    return structlog.contextvars.get_contextvars()


class _TextWithIds(logging.Formatter):
    """The readable line, with the bound ids appended as ``[key=value ...]``."""

    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        ids = log_ids()
        if not ids:
            return line
        return f"{line} [{' '.join(f'{k}={v}' for k, v in sorted(ids.items()))}]"


def _json_formatter() -> logging.Formatter:
    return structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=[
            structlog.contextvars.merge_contextvars,
            structlog.stdlib.add_log_level,
            structlog.stdlib.add_logger_name,
            structlog.processors.TimeStamper(fmt="iso", utc=True, key="timestamp"),
        ],
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            structlog.processors.dict_tracebacks,
            structlog.processors.JSONRenderer(),
        ],
    )


def configure_logging(log_format: LogFormat = "text", level: str | int = logging.INFO) -> None:
    """Route every stdlib logger (ours, uvicorn's, Celery's) to stderr in ``log_format``.

    Replaces the root logger's handlers, so calling it again switches the format instead of
    doubling each line.
    """
    handler = logging.StreamHandler()
    handler.setFormatter(_json_formatter() if log_format == "json" else _TextWithIds(_TEXT_FORMAT))
    root = logging.getLogger()
    for existing in list(root.handlers):
        root.removeHandler(existing)
    root.addHandler(handler)
    root.setLevel(level)
