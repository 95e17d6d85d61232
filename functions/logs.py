"""Structured JSON logs for Cloud Logging: one line per event, constant messages, data in fields.

Cloud Logging reads ``severity``, ``message`` and ``logging.googleapis.com/trace`` from a JSON
line on stdout/stderr. Every line about a meeting carries ``meeting_id`` (and ``attempt`` and
``status`` when known): :func:`bind` puts them in a context that later lines of the request share.
"""

from __future__ import annotations

import contextvars
import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, TextIO

from functions.timestamps import format_timestamp

_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "log_context", default=()
)

_SEVERITIES = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields (``meeting_id=...``) to every line logged inside the block."""
    merged = {**dict(_context.get()), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


def trace_field(header: str | None, project: str | None) -> dict[str, str]:
    """The Cloud Logging trace field from an ``X-Cloud-Trace-Context`` header, when present."""
    if not header or not project:
        return {}
    trace_id = header.split("/", 1)[0].strip()
    if not trace_id.isalnum():
        return {}
    return {"logging.googleapis.com/trace": f"projects/{project}/traces/{trace_id}"}


def log(severity: str, message: str, *, stream: TextIO | None = None, **fields: Any) -> None:
    if severity not in _SEVERITIES:
        raise ValueError(f"unknown severity {severity!r}")
    entry: dict[str, Any] = {
        "severity": severity,
        "message": message,
        "time": format_timestamp(datetime.now(UTC)),
    }
    entry.update(dict(_context.get()))
    entry.update({k: v for k, v in fields.items() if v is not None})
    target = stream if stream is not None else sys.stderr
    target.write(json.dumps(entry, default=str, separators=(",", ":")) + "\n")
    target.flush()


def info(message: str, **fields: Any) -> None:
    log("INFO", message, **fields)


def warning(message: str, **fields: Any) -> None:
    log("WARNING", message, **fields)


def error(message: str, **fields: Any) -> None:
    log("ERROR", message, **fields)
