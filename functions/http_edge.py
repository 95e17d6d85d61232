"""The request edge: which handler serves a request, what no handler should see, and how an error
becomes an answer. Pure functions of plain values (method, path, sizes, media type).

Bodies are parsed by ``functions.payloads``, signatures checked by ``functions.signatures``, ID
tokens by the ``IdTokenVerifier`` port; ``functions.app`` puts them together.

Decisions the contract leaves open (the README repeats them):

- A POST needs ``Content-Type: application/json`` only when it has a body (``/meetings/{id}/sync``
  is sent empty); a ``charset`` other than UTF-8 is refused with 415.
- Checks run in the order 405, 413, 415, so a refusal names the first thing wrong.
- 5xx answers carry a generic message: the details (settings, upstream errors) go to the log.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any, Final, Literal, TypeAlias

from functions.errors import (
    AppError,
    InvalidInput,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    UnsupportedMediaType,
    quoted,
)
from functions.limits import MAX_BODY_BYTES
from functions.model import is_meeting_id

__all__ = [
    "Route",
    "check_request",
    "error_response",
    "route_api",
    "route_ingest",
    "unexpected_error_response",
]

Answer: TypeAlias = tuple[int, dict[str, Any]]


def _is_json_media_type(content_type: str) -> bool:
    media_type, *parameters = content_type.split(";")
    if media_type.strip().lower() != "application/json":
        return False
    for parameter in parameters:
        name, _, value = parameter.partition("=")
        # Bodies are decoded as UTF-8; accepting another charset would misread them.
        charset = value.strip().strip('"').lower()
        if name.strip().lower() == "charset" and charset not in ("utf-8", "utf8"):
            return False
    return True


def check_request(
    *,
    method: str,
    allowed: Sequence[str],
    content_type: str | None,
    content_length: int | None,
    body: bytes | None,
) -> None:
    """Refuse what no handler should see: 405, then 413, then 415.

    ``body`` may be None when the entry point checks before reading it (by ``Content-Length``).
    """
    if method.upper() not in {name.upper() for name in allowed}:
        raise MethodNotAllowed(method.upper(), allowed)
    size = len(body) if body is not None else (content_length or 0)
    if (content_length or 0) > MAX_BODY_BYTES or size > MAX_BODY_BYTES:
        raise PayloadTooLarge(MAX_BODY_BYTES)
    if method.upper() == "POST" and size > 0 and not _is_json_media_type(content_type or ""):
        raise UnsupportedMediaType()


def error_response(error: AppError) -> Answer:
    """``(status, {"error": {"code", "message", "field"?}})`` as docs/api.md shows."""
    if error.status >= 500:
        message = (
            "temporarily unavailable; retry later"
            if error.retryable
            else "the service cannot handle this request"
        )
    else:
        message = error.message
    detail: dict[str, Any] = {"code": error.code, "message": message}
    if isinstance(error, InvalidInput) and error.field is not None:
        detail["field"] = error.field
    if isinstance(error, MethodNotAllowed):
        detail["allowed"] = list(error.allowed)  # main.py sends them as the Allow header
    return error.status, {"error": detail}


def unexpected_error_response() -> Answer:
    """The answer to a bug: 500 with nothing about its cause (that goes to the log)."""
    return 500, {"error": {"code": "internal", "message": "internal error"}}


# ------------------------------------------------------------------------------
# Routes of ``ingest`` (docs/api.md "ingest") and ``api`` (§4.2)

MeetingEndedRoute: TypeAlias = tuple[Literal["meeting_ended"]]
IngestRoute: TypeAlias = tuple[Literal["meeting_ended", "calendar_notification"]]
#: Where Google Calendar pushes notifications (docs/api.md "ingest").
CALENDAR_NOTIFICATIONS_PATH: Final = "/calendar/notifications"
DeclareAndSyncRoute: TypeAlias = tuple[Literal["declare_and_sync"]]
EraseRoute: TypeAlias = tuple[Literal["erase"]]
SyncRoute: TypeAlias = tuple[Literal["sync"], str]
GetRoute: TypeAlias = tuple[Literal["get"], str]
ReportRoute: TypeAlias = tuple[Literal["report"], str]
Route: TypeAlias = DeclareAndSyncRoute | EraseRoute | SyncRoute | GetRoute | ReportRoute

_MEETING_PATH: Final = re.compile(
    r"/meetings/(?P<id>[^/]*)(?:(?P<sync>/sync)|(?P<report>/report))?"
)


def _only(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(method, (allowed,))


def route_ingest(method: str, path: str) -> IngestRoute:
    """``ingest`` serves ``POST /`` and ``POST /calendar/notifications`` only: 404 for any other
    path, 405 for another method."""
    if path.removesuffix("/") == CALENDAR_NOTIFICATIONS_PATH:
        _only(method.upper(), "POST")
        return ("calendar_notification",)
    if path not in ("", "/"):
        raise NotFound(f"no such resource: {quoted(path)}")
    _only(method.upper(), "POST")
    return ("meeting_ended",)


def route_root(method: str, path: str) -> MeetingEndedRoute:
    """A function that serves ``POST /`` only (``meet_events``)."""
    if path not in ("", "/"):
        raise NotFound(f"no such resource: {quoted(path)}")
    _only(method.upper(), "POST")
    return ("meeting_ended",)


def route_api(method: str, path: str) -> Route:
    """Which handler of ``api`` serves ``method path``; 404 for unknown paths (and meeting ids
    that cannot exist), 405 for known ones."""
    method = method.upper()
    path = path.removesuffix("/")
    if path == "/erasures":
        _only(method, "POST")
        return ("erase",)
    if path == "/meetings/sync" and method == "POST":
        return ("declare_and_sync",)
    match = _MEETING_PATH.fullmatch(path)
    if match is None or not is_meeting_id(match["id"]):
        raise NotFound(f"no such resource: {quoted(path)}")
    meeting_id = match["id"]
    if match["sync"]:
        if method != "POST":
            raise MethodNotAllowed(method, ("POST",))
        return ("sync", meeting_id)
    if method != "GET":
        raise MethodNotAllowed(method, ("GET",))
    if match["report"]:
        return ("report", meeting_id)
    return ("get", meeting_id)
