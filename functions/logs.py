"""Structured JSON logs for Cloud Logging: one line per event, constant messages, data in fields.

Cloud Logging reads ``severity``, ``message``, ``logging.googleapis.com/trace``,
``logging.googleapis.com/spanId`` and ``logging.googleapis.com/trace_sampled`` from a JSON line on
stdout/stderr; everything else lands in ``jsonPayload``. Every line about a meeting carries
``meeting_id`` (and ``attempt`` and ``status`` when known): :func:`bind` puts them in a context
that later lines of the request share.

Errors go to Error Reporting through :func:`report_error`: the line carries Error Reporting's
``@type``, a Python traceback in ``stack_trace`` (frames and the exception type, never its message:
a message may hold the data the code choked on) and ``serviceContext`` when the caller knows it.

Trace ids come from request headers, which anyone may send to a public function:
:func:`trace_fields` keeps only well-formed ids and never copies header text into a line otherwise.
"""

from __future__ import annotations

import contextvars
import json
import re
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any, Final, TextIO

from functions.timestamps import format_timestamp

__all__ = [
    "ERROR_EVENT_TYPE",
    "bind",
    "error",
    "info",
    "log",
    "minimum_severity",
    "report_error",
    "set_minimum_severity",
    "stack_trace",
    "trace_fields",
    "warning",
]

_context: contextvars.ContextVar[tuple[tuple[str, Any], ...]] = contextvars.ContextVar(
    "log_context", default=()
)

_SEVERITIES: Final = ("DEBUG", "INFO", "NOTICE", "WARNING", "ERROR", "CRITICAL")
_RANK: Final = {severity: rank for rank, severity in enumerate(_SEVERITIES)}
_minimum: str = "INFO"

#: What makes Error Reporting take a JSON line as an error event, stack trace or not.
ERROR_EVENT_TYPE: Final = (
    "type.googleapis.com/google.devtools.clouderrorreporting.v1beta1.ReportedErrorEvent"
)
#: Innermost frames kept in a stack trace, and its length at most (a log entry holds 256 KiB).
MAX_FRAMES: Final = 40
MAX_STACK_CHARS: Final = 8000

TRACE_KEY: Final = "logging.googleapis.com/trace"
SPAN_KEY: Final = "logging.googleapis.com/spanId"
SAMPLED_KEY: Final = "logging.googleapis.com/trace_sampled"

# X-Cloud-Trace-Context: TRACE_ID/SPAN_ID;o=OPTIONS, TRACE_ID 32 hex digits, SPAN_ID a decimal
# unsigned 64-bit integer; the span and the options may be missing.
_CLOUD_TRACE: Final = re.compile(r"([0-9a-f]{32})(?:/([0-9]{1,20}))?(?:;o=([0-9]))?", re.ASCII)
# W3C traceparent, version 00: 00-TRACE_ID-PARENT_ID-FLAGS, lower-case hex only.
_TRACEPARENT: Final = re.compile(r"00-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})", re.ASCII)
_MAX_SPAN: Final = 2**64 - 1


def set_minimum_severity(severity: str) -> None:
    """Drop every later line below ``severity`` (``INFO`` unless changed), in this process.

    For the operator CLI: ``WARNING`` keeps its output to what needs attention."""
    if severity not in _RANK:
        raise ValueError(f"unknown severity {severity!r}")
    global _minimum
    _minimum = severity


def minimum_severity() -> str:
    return _minimum


@contextmanager
def bind(**fields: Any) -> Iterator[None]:
    """Add fields (``meeting_id=...``) to every line logged inside the block."""
    merged = {**dict(_context.get()), **{k: v for k, v in fields.items() if v is not None}}
    token = _context.set(tuple(merged.items()))
    try:
        yield
    finally:
        _context.reset(token)


def trace_fields(
    *, cloud_trace: str | None, traceparent: str | None, project: str | None
) -> dict[str, Any]:
    """The trace, span and sampled fields from a W3C ``traceparent`` or, failing that, an
    ``X-Cloud-Trace-Context`` header; ``{}`` when neither is well-formed or the project is unknown.

    A malformed header is ignored as a whole: nothing of what a caller sent reaches a line unless
    it parsed as hex or decimal ids. An all-zero trace or span id is invalid in both formats."""
    if not project:
        return {}
    parsed = _parse_traceparent(traceparent) or _parse_cloud_trace(cloud_trace)
    if parsed is None:
        return {}
    trace_id, span_id, sampled = parsed
    fields: dict[str, Any] = {TRACE_KEY: f"projects/{project}/traces/{trace_id}"}
    if span_id is not None:
        fields[SPAN_KEY] = span_id
    if sampled is not None:
        fields[SAMPLED_KEY] = sampled
    return fields


def _parse_traceparent(header: str | None) -> tuple[str, str | None, bool | None] | None:
    match = _TRACEPARENT.fullmatch(header.strip()) if header else None
    if match is None:
        return None
    trace_id, span_id, flags = match.groups()
    if _zero(trace_id) or _zero(span_id):
        return None
    return trace_id, span_id, bool(int(flags, 16) & 1)


def _parse_cloud_trace(header: str | None) -> tuple[str, str | None, bool | None] | None:
    match = _CLOUD_TRACE.fullmatch(header.strip().lower()) if header else None
    if match is None:
        return None
    trace_id, span, option = match.groups()
    if _zero(trace_id):
        return None
    span_id = None
    if span is not None:
        number = int(span)
        if not 0 < number <= _MAX_SPAN:
            return None
        span_id = f"{number:016x}"  # Cloud Logging wants the span id as 16 hex digits
    sampled = None if option is None else option == "1"
    return trace_id, span_id, sampled


def _zero(hex_id: str) -> bool:
    return not hex_id.strip("0")


def stack_trace(exception: BaseException) -> str:
    """The traceback as Python prints it, as Error Reporting parses it, without the message.

    ``Traceback (most recent call last):``, one ``  File "...", line N, in name`` line per frame
    (innermost last; source lines left out), then the exception's qualified type alone."""
    frames = traceback.extract_tb(exception.__traceback__)[-MAX_FRAMES:]
    lines = ["Traceback (most recent call last):"]
    lines += [f'  File "{f.filename}", line {f.lineno}, in {f.name}' for f in frames]
    kind = type(exception)
    name = kind.__qualname__
    if kind.__module__ not in ("builtins", "__main__"):
        name = f"{kind.__module__}.{name}"
    while len("\n".join(lines)) + len(name) + 1 > MAX_STACK_CHARS and len(lines) > 1:
        del lines[1]  # the outermost frames go first; the header and the type always stay
    return "\n".join([*lines, name])


def report_error(
    message: str,
    exception: BaseException,
    *,
    service: str | None = None,
    version: str | None = None,
    **fields: Any,
) -> None:
    """An ERROR line that Error Reporting takes as an event of ``exception``, grouped by its
    traceback; ``service`` (the function) and ``version`` (its revision) when known."""
    event: dict[str, Any] = {
        "@type": ERROR_EVENT_TYPE,
        "error": type(exception).__name__,
        "stack_trace": stack_trace(exception),
    }
    if service:
        event["serviceContext"] = {"service": service, **({"version": version} if version else {})}
    log("ERROR", message, **{**fields, **event})


def log(severity: str, message: str, *, stream: TextIO | None = None, **fields: Any) -> None:
    if severity not in _RANK:
        raise ValueError(f"unknown severity {severity!r}")
    if _RANK[severity] < _RANK[_minimum]:
        return
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
