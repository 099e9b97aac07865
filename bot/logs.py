"""Structured logs: one JSON object a line, with the incident, cluster, user and duration
where known, and secrets redacted (bot/redact.py) from the whole line, tracebacks included.

    {"time": "...", "level": "INFO", "logger": "bot.worker", "message": "job ... done",
     "incident": "AKE-1A2B3C", "alias": "prod-weu", "user": "U0123", "duration_ms": 8412}

Fields are bound per thread of work (`bound`, `bind`): a worker binds the incident for the
job it runs, the job adds the cluster and the user once it has read the incident.
"""

from __future__ import annotations

import contextvars
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from pythonjsonlogger.json import JsonFormatter

from bot.redact import redact

_fields: contextvars.ContextVar[dict[str, Any] | None] = contextvars.ContextVar(
    "log_fields", default=None
)


def _current() -> dict[str, Any]:
    return _fields.get() or {}


@contextmanager
def bound(**fields: Any) -> Iterator[None]:
    """These fields on every log line written inside the block (None values are left out)."""
    token = _fields.set({**_current(), **{k: v for k, v in fields.items() if v is not None}})
    try:
        yield
    finally:
        _fields.reset(token)


def bind(**fields: Any) -> None:
    """Add fields to the current block's (see `bound`)."""
    _fields.set({**_current(), **{k: v for k, v in fields.items() if v is not None}})


class _Context(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _current().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


class RedactingJsonFormatter(JsonFormatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


class RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return redact(super().format(record))


def setup(fmt: str = "json", level: int = logging.INFO) -> None:
    """Log to stderr as JSON (or `text`, for a terminal), redacted, with the bound fields."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(_Context())
    if fmt == "text":
        handler.setFormatter(RedactingFormatter("%(asctime)s %(name)s %(message)s"))
    else:
        handler.setFormatter(
            RedactingJsonFormatter(
                "%(asctime)s %(levelname)s %(name)s %(message)s",
                rename_fields={"asctime": "time", "levelname": "level", "name": "logger"},
            )
        )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # The Azure SDK logs every request's headers at INFO: requests are counted in metrics.
    logging.getLogger("azure").setLevel(logging.WARNING)
    # RQ installs its own handler on its logger unless one is configured: route it here.
    for name in ("rq.worker", "rq.queue", "rq.job"):
        logging.getLogger(name).handlers[:] = []
        logging.getLogger(name).propagate = True
