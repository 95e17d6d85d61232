"""The request edge: signatures, OIDC, payload parsing, routes and error → status mapping.

Everything here is a pure function of plain values (method, path, a headers mapping, body bytes,
``now``), so the entry points in ``main.py`` only adapt Flask to it and the rules are testable
without a server. Every refusal is an :class:`AppError` carrying its HTTP status; bad input never
becomes a 500.

Decisions the contract leaves open (the README repeats them):

- Webhook signatures are checked over the raw body bytes with ``hmac.compare_digest``, not through
  ``standardwebhooks.Webhook.verify``: that method reads the wall clock itself (no ``now`` to
  inject, so the 5-minute boundaries cannot be tested), decodes the body as UTF-8 (a non-UTF-8
  body would crash instead of answering) and lets malformed signature entries escape as
  ``ValueError``. The algorithm is the same, and the tests use the package as the reference
  implementation in both directions.
- ``webhook-timestamp`` must be whole Unix seconds; it may be exactly 5 minutes off either way.
  ``webhook-id`` must be 1 to 256 visible ASCII characters (it is stored for replay detection).
- The body is parsed as strict UTF-8 JSON: ``NaN``/``Infinity`` and duplicate object keys are
  refused, as is nesting too deep to parse. Unknown fields are ignored. ``null`` means absent.
- Times are RFC 3339 with a ``T``, an explicit offset (``Z`` or ``±hh:mm``), converted to UTC and
  truncated to milliseconds (the precision of the Reports API's ``id.time``).
- ``started_at`` may equal ``ended_at`` and may be at most 24 hours before it: a longer declared
  class is almost certainly a wrong date, and would make the Reports window needlessly wide.
- An empty ``calendar_event_id`` or ``organizer_email`` means absent.
- Expected participant keys follow CONTRACT §1 as the attendance module builds them: outer
  whitespace is trimmed; a ``type:`` prefix is lower-cased; ``phone_number:`` and ``device_id:``
  become ``phone:`` and ``device:``; a non-anonymous key whose identifier holds ``@`` becomes the
  lower-cased email (rule 1 applies whatever the type), e.g. ``email_address:A@B.com`` →
  ``a@b.com``. Keys are at most 1,024 characters; control characters and lone surrogates are
  refused everywhere. Duplicates after normalisation are dropped, first occurrence kept.
- A POST needs ``Content-Type: application/json`` only when it has a body (``/meetings/{id}/sync``
  is sent empty); a ``charset`` other than UTF-8 is refused with 415.
- 5xx answers carry a generic message: the details (settings, upstream errors) go to the log.
- The OIDC audience matches ``COLLECT_URL`` with or without one trailing slash: Cloud Tasks sends
  exactly the audience it was configured with, but the Scheduler job's audience and the setting are
  typed by operators, and a slash of difference would otherwise silently reject every call. Both
  forms name the same endpoint, so nothing is weakened.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import re
import unicodedata
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, TypeAlias, cast, get_args

import google.auth.exceptions
import google.auth.transport
from google.oauth2 import id_token

from functions.attendance import canonical_meeting_code, format_timestamp
from functions.errors import AppError, ConfigError, InvalidInput
from functions.model import Declared
from functions.ports import BackfillSlice, CollectReason, CollectTask

__all__ = [
    "GOOGLE_ISSUERS",
    "MAX_BODY_BYTES",
    "MAX_EXPECTED_PARTICIPANTS",
    "WEBHOOK_TOLERANCE",
    "CollectTask",
    "Declared",
    "Forbidden",
    "MethodNotAllowed",
    "Route",
    "TaskReason",
    "Unauthorized",
    "check_request",
    "collect_task_body",
    "error_response",
    "is_meeting_id",
    "meeting_ended_to_json",
    "parse_collect_task",
    "parse_meeting_ended",
    "route_ingest",
    "sign_webhook",
    "unexpected_error_response",
    "verify_oidc_token",
    "verify_webhook_signature",
]

MAX_BODY_BYTES: Final = 64 * 1024
WEBHOOK_TOLERANCE: Final = timedelta(minutes=5)
MAX_EXPECTED_PARTICIPANTS: Final = 1000
GOOGLE_ISSUERS: Final = ("https://accounts.google.com", "accounts.google.com")
GOOGLE_CERTS_URL: Final = "https://www.googleapis.com/oauth2/v1/certs"

# Reports keeps 180 days: an older meeting could never be collected.
MAX_ENDED_AGE: Final = timedelta(days=180)
# Clocks of the sender and of this function disagree a little; more than this is a wrong time.
MAX_ENDED_IN_FUTURE: Final = timedelta(minutes=5)
MAX_DECLARED_LENGTH: Final = timedelta(hours=24)

_PAYLOAD: Final = "invalid_payload"
_TASK: Final = "invalid_task"


# ------------------------------------------------------------------------------
# Errors the edge raises


class Unauthorized(AppError):
    """The caller did not prove who it is (signature, timestamp or token); answered 401."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=401, retryable=False, code="unauthorized")


class Forbidden(AppError):
    """A genuine caller that is not allowed here; answered 403."""

    def __init__(self, message: str) -> None:
        super().__init__(message, status=403, retryable=False, code="forbidden")


class MethodNotAllowed(AppError):
    """Answered 405; ``allowed`` is what the entry point puts in the ``Allow`` header."""

    def __init__(self, method: str, allowed: Sequence[str]) -> None:
        self.allowed = tuple(allowed)
        super().__init__(
            f"method {method} is not allowed here (allowed: {', '.join(self.allowed)})",
            status=405,
            retryable=False,
            code="method_not_allowed",
        )


def _not_found(path: str) -> AppError:
    return AppError(f"no such resource: {_shorten(path)}", status=404, code="not_found")


# ------------------------------------------------------------------------------
# Standard Webhooks signatures

_WEBHOOK_ID: Final = re.compile(r"[\x21-\x7e]{1,256}")
_UNIX_SECONDS: Final = re.compile(r"[0-9]{1,12}")


def _secret_key(secret: str) -> bytes:
    try:
        key = base64.b64decode(secret.removeprefix("whsec_"), validate=True)
    except (binascii.Error, ValueError):
        key = b""
    if not key:
        # Settings validate secrets at start; reaching this is a deployment bug, never the caller's.
        raise ConfigError(["a webhook secret is not whsec_<base64>"])
    return key


def _signature(key: bytes, webhook_id: str, timestamp: int, body: bytes) -> bytes:
    signed = f"{webhook_id}.{timestamp}.".encode() + body
    return hmac.new(key, signed, hashlib.sha256).digest()


def sign_webhook(
    *, secret: str, webhook_id: str, timestamp: datetime, body: bytes
) -> dict[str, str]:
    """The three Standard Webhooks headers for ``body`` (for the demo, the CLI and tests)."""
    seconds = math.floor(timestamp.timestamp())
    digest = _signature(_secret_key(secret), webhook_id, seconds, body)
    return {
        "webhook-id": webhook_id,
        "webhook-timestamp": str(seconds),
        "webhook-signature": "v1," + base64.b64encode(digest).decode("ascii"),
    }


def verify_webhook_signature(
    *, headers: Mapping[str, str], body: bytes, secrets: Sequence[str], now: datetime
) -> str:
    """Check a Standard Webhooks signature; return the ``webhook-id``.

    Valid when any ``v1`` signature in the header matches any of ``secrets`` (rotation) and the
    timestamp is within 5 minutes of ``now`` either way. Raises :class:`Unauthorized`.
    """
    if not secrets:
        raise ConfigError(["no webhook secret is configured"])
    lowered = {name.lower(): value for name, value in headers.items()}
    values: dict[str, str] = {}
    for name in ("webhook-id", "webhook-timestamp", "webhook-signature"):
        value = lowered.get(name, "").strip()
        if not value:
            raise Unauthorized(f"missing {name} header")
        values[name] = value

    webhook_id = values["webhook-id"]
    if not _WEBHOOK_ID.fullmatch(webhook_id):
        raise Unauthorized("webhook-id must be 1 to 256 visible ASCII characters")
    raw_timestamp = values["webhook-timestamp"]
    if not _UNIX_SECONDS.fullmatch(raw_timestamp):
        raise Unauthorized("webhook-timestamp must be whole Unix seconds")
    timestamp = int(raw_timestamp)
    # A stale timestamp is refused before any HMAC work: it bounds how long a captured request
    # can be replayed, the id-based replay check covers the rest. Compared as numbers, so an
    # absurd timestamp cannot overflow a datetime.
    skew = timestamp - now.timestamp()
    tolerance = WEBHOOK_TOLERANCE.total_seconds()
    if skew < -tolerance:
        raise Unauthorized("webhook-timestamp is more than 5 minutes in the past")
    if skew > tolerance:
        raise Unauthorized("webhook-timestamp is more than 5 minutes in the future")

    offered: list[bytes] = []
    for entry in values["webhook-signature"].split():
        version, _, encoded = entry.partition(",")
        if version != "v1":
            continue  # other schemes (v1a: asymmetric) are not ours; another entry may match
        try:
            offered.append(base64.b64decode(encoded, validate=True))
        except (binascii.Error, ValueError):
            continue
    for secret in secrets:
        expected = _signature(_secret_key(secret), webhook_id, timestamp, body)
        # No early exit on a match inside the comparison: compare_digest is constant-time.
        if any(hmac.compare_digest(expected, candidate) for candidate in offered):
            return webhook_id
    raise Unauthorized("no webhook-signature matches")


# ------------------------------------------------------------------------------
# JSON bodies


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            # Two parsers may pick different duplicates; refusing keeps one meaning per body.
            raise ValueError(f"duplicate key {_shorten(key)}")
        result[key] = value
    return result


def _load_object(body: bytes, *, code: str) -> dict[str, Any]:
    try:
        text = body.decode("utf-8")
        data = json.loads(text, parse_constant=_reject_constant, object_pairs_hook=_no_duplicates)
    except UnicodeDecodeError:
        raise InvalidInput("body is not valid JSON: not UTF-8", code=code) from None
    except RecursionError:
        raise InvalidInput("body is not valid JSON: nested too deeply", code=code) from None
    except ValueError as exc:  # JSONDecodeError, our hooks, integers too long to convert
        raise InvalidInput(f"body is not valid JSON: {exc}", code=code) from None
    if not isinstance(data, dict):
        raise InvalidInput("body must be a JSON object", code=code)
    return data


def _shorten(value: str, limit: int = 60) -> str:
    return repr(value if len(value) <= limit else value[:limit] + "…")


def _type_name(value: object) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, dict):
        return "an object"
    return "a string" if isinstance(value, str) else "null"


def _has_control(text: str) -> bool:
    # Cs: a JSON "\ud800" escape yields a lone surrogate that no store can encode later.
    return any(unicodedata.category(char) in ("Cc", "Cs") for char in text)


def _optional_str(data: Mapping[str, Any], name: str, *, code: str) -> str | None:
    value = data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(
            f"{name} must be a string, not {_type_name(value)}", field=name, code=code
        )
    if _has_control(value):
        raise InvalidInput(f"{name} must not contain control characters", field=name, code=code)
    return value


def _required_str(data: Mapping[str, Any], name: str, *, code: str) -> str:
    value = _optional_str(data, name, code=code)
    if value is None:
        raise InvalidInput(f"{name} is required", field=name, code=code)
    return value


# ------------------------------------------------------------------------------
# Times

_RFC3339: Final = re.compile(
    r"(?P<date>[0-9]{4}-[0-9]{2}-[0-9]{2})[Tt]"
    r"(?P<time>[0-9]{2}:[0-9]{2}:[0-9]{2})(?:\.(?P<fraction>[0-9]{1,9}))?"
    r"(?P<offset>[Zz]|[+-][0-9]{2}:[0-9]{2})?"
)


def _parse_time(raw: str, name: str) -> datetime:
    match = _RFC3339.fullmatch(raw.strip())
    if match is None:
        raise InvalidInput(
            f"{name} must be an RFC 3339 date-time such as 2026-01-15T10:45:00Z",
            field=name,
            code=_PAYLOAD,
        )
    offset = match["offset"]
    if offset is None:
        raise InvalidInput(
            f"{name} must include a UTC offset (Z or ±hh:mm)", field=name, code=_PAYLOAD
        )
    # Milliseconds are the pipeline's precision; finer digits would only split identities.
    millis = (match["fraction"] or "").ljust(3, "0")[:3]
    zone = "+00:00" if offset in ("Z", "z") else offset
    normal = f"{match['date']}T{match['time']}.{millis}{zone}"
    try:
        return datetime.fromisoformat(normal).astimezone(UTC)
    except (ValueError, OverflowError):
        raise InvalidInput(
            f"{name} is not a valid date-time: {_shorten(raw)}", field=name, code=_PAYLOAD
        ) from None


def parse_time_argument(raw: str, name: str) -> datetime:
    """An RFC 3339 date-time with an offset, as the webhook requires (CLI and backfill use it)."""
    return _parse_time(raw, name)


@dataclass(frozen=True, slots=True)
class BackfillRequest:
    """A backfill call: the scheduler's ``{"since"?, "until"?}``, or one slice of a fanned-out run
    (``{"slice": {"since", "until", "range_since", "range_until"}}``)."""

    since: datetime | None = None
    until: datetime | None = None
    part: BackfillSlice | None = None


def parse_backfill_request(body: bytes) -> BackfillRequest:
    if not body.strip():
        return BackfillRequest()
    data = _load_object(body, code=_PAYLOAD)
    raw_slice = data.get("slice")
    if raw_slice is not None:
        if not isinstance(raw_slice, dict):
            raise InvalidInput("slice must be an object", field="slice", code=_PAYLOAD)
        bounds = {
            name: _parse_time(_required_str(raw_slice, name, code=_PAYLOAD), f"slice.{name}")
            for name in ("since", "until", "range_since", "range_until")
        }
        if not bounds["range_since"] <= bounds["since"] <= bounds["until"] <= bounds["range_until"]:
            raise InvalidInput("slice must lie within its range", field="slice", code=_PAYLOAD)
        return BackfillRequest(part=BackfillSlice(**bounds))
    times: list[datetime | None] = []
    for name in ("since", "until"):
        raw = _optional_str(data, name, code=_PAYLOAD)
        times.append(_parse_time(raw, name) if raw else None)
    return BackfillRequest(since=times[0], until=times[1])


def backfill_slice_body(part: BackfillSlice) -> bytes:
    """The task body of one slice; ``parse_backfill_request`` reads it back."""
    bounds = {
        "since": part.since,
        "until": part.until,
        "range_since": part.range_since,
        "range_until": part.range_until,
    }
    payload = {"slice": {name: format_timestamp(value) for name, value in bounds.items()}}
    return json.dumps(payload, separators=(",", ":")).encode()


# ------------------------------------------------------------------------------
# Participant keys (CONTRACT §1) and emails

_EMAIL: Final = re.compile(
    r"(?=.{3,254}\Z)"
    r"(?=[^@]{1,64}@)"
    r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
    r"@(?:[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\.)+[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
)
_KEY_PREFIX: Final = re.compile(r"(?P<prefix>[A-Za-z][A-Za-z0-9_]*):(?P<rest>.*)", re.DOTALL)
# Identifier types the attendance rules abbreviate (CONTRACT §1 rule 2).
_PREFIX_ALIASES: Final = {"phone_number": "phone", "device_id": "device"}
# Keys built from a display name or an endpoint id, which the email rule never looks at.
_VERBATIM_PREFIXES: Final = frozenset({"anon", "endpoint"})
MAX_KEY_LENGTH: Final = 1024


def normalise_email(raw: str) -> str | None:
    """Trimmed, lower-cased ``raw`` when it is a plausible address; else None."""
    email = raw.strip().lower()
    return email if _EMAIL.fullmatch(email) else None


def normalise_participant_key(raw: str) -> str:
    """A participant key as CONTRACT §1 builds it; ValueError saying why when it cannot be one."""
    # Checked before trimming: a newline or NUL anywhere means the sender built the key wrongly.
    if _has_control(raw):
        raise ValueError("must not contain control characters")
    key = raw.strip()
    if not key:
        raise ValueError("must not be empty")
    if len(key) > MAX_KEY_LENGTH:
        raise ValueError(f"must be at most {MAX_KEY_LENGTH} characters")
    match = _KEY_PREFIX.fullmatch(key)
    if match is not None:
        prefix = match["prefix"].lower()
        rest = match["rest"].strip()
        if not rest:
            raise ValueError(f"has nothing after {prefix}:")
        if prefix in _VERBATIM_PREFIXES:
            return f"{prefix}:{rest}"
        if prefix == "email_address" or "@" in rest:
            email = normalise_email(rest)
            if email is None:
                raise ValueError(f"is not a valid email address: {_shorten(rest)}")
            return email
        return f"{_PREFIX_ALIASES.get(prefix, prefix)}:{rest}"
    if "@" in key:
        email = normalise_email(key)
        if email is None:
            raise ValueError(f"is not a valid email address: {_shorten(key)}")
        return email
    raise ValueError(
        "must be an email or a '<type>:<identifier>' key (phone:, device:, anon:, endpoint:, …)"
    )


# ------------------------------------------------------------------------------
# POST / — meeting ended

_CODE_CHARACTERS: Final = re.compile(r"[A-Za-z0-9 -]+")


def parse_meeting_ended(body: bytes, *, now: datetime) -> Declared:
    """Validate a ``meeting.ended`` body.

    Raises :class:`InvalidInput` with code ``invalid_payload`` and the offending ``field``.
    """
    data = _load_object(body, code=_PAYLOAD)

    kind = _required_str(data, "type", code=_PAYLOAD)
    if kind != "meeting.ended":
        raise InvalidInput(
            f"type must be 'meeting.ended', not {_shorten(kind)}", field="type", code=_PAYLOAD
        )

    raw_code = _required_str(data, "meeting_code", code=_PAYLOAD)
    if not _CODE_CHARACTERS.fullmatch(raw_code):
        raise InvalidInput(
            "meeting_code may hold only letters, digits, dashes and spaces",
            field="meeting_code",
            code=_PAYLOAD,
        )
    meeting_code = canonical_meeting_code(raw_code)
    if not 3 <= len(meeting_code) <= 64:
        raise InvalidInput(
            "meeting_code must have 3 to 64 characters without spaces",
            field="meeting_code",
            code=_PAYLOAD,
        )

    ended_at = _parse_time(_required_str(data, "ended_at", code=_PAYLOAD), "ended_at")
    if ended_at > now + MAX_ENDED_IN_FUTURE:
        raise InvalidInput(
            "ended_at is more than 5 minutes in the future", field="ended_at", code=_PAYLOAD
        )
    if ended_at < now - MAX_ENDED_AGE:
        raise InvalidInput(
            "ended_at is more than 180 days ago (the Reports API keeps 180 days)",
            field="ended_at",
            code=_PAYLOAD,
        )

    started_at: datetime | None = None
    raw_start = _optional_str(data, "started_at", code=_PAYLOAD)
    if raw_start is not None:
        started_at = _parse_time(raw_start, "started_at")
        if started_at > ended_at:
            raise InvalidInput(
                "started_at must not be after ended_at", field="started_at", code=_PAYLOAD
            )
        if ended_at - started_at > MAX_DECLARED_LENGTH:
            raise InvalidInput(
                "started_at must be at most 24 hours before ended_at",
                field="started_at",
                code=_PAYLOAD,
            )

    external_id = _optional_str(data, "external_id", code=_PAYLOAD)
    if external_id is not None and not (
        external_id.strip() and len(external_id) <= 256 and external_id.isprintable()
    ):
        raise InvalidInput(
            "external_id must be 1 to 256 printable characters",
            field="external_id",
            code=_PAYLOAD,
        )

    calendar_event_id = _optional_str(data, "calendar_event_id", code=_PAYLOAD) or None
    if calendar_event_id is not None and len(calendar_event_id) > 1024:
        raise InvalidInput(
            "calendar_event_id must be at most 1024 characters",
            field="calendar_event_id",
            code=_PAYLOAD,
        )

    organizer_email: str | None = None
    raw_organizer = _optional_str(data, "organizer_email", code=_PAYLOAD)
    if raw_organizer:
        organizer_email = normalise_email(raw_organizer)
        if organizer_email is None:
            raise InvalidInput(
                f"organizer_email is not a valid email address: {_shorten(raw_organizer)}",
                field="organizer_email",
                code=_PAYLOAD,
            )

    return Declared(
        meeting_code=meeting_code,
        ended_at=ended_at,
        started_at=started_at,
        external_id=external_id,
        calendar_event_id=calendar_event_id,
        organizer_email=organizer_email,
        expected_participants=_expected_participants(data.get("expected_participants")),
    )


def _expected_participants(value: object) -> tuple[str, ...]:
    name = "expected_participants"
    if value is None:
        return ()
    if not isinstance(value, list):
        raise InvalidInput(
            f"{name} must be an array of strings, not {_type_name(value)}",
            field=name,
            code=_PAYLOAD,
        )
    if len(value) > MAX_EXPECTED_PARTICIPANTS:
        raise InvalidInput(
            f"{name} may hold at most {MAX_EXPECTED_PARTICIPANTS} entries (got {len(value)})",
            field=name,
            code=_PAYLOAD,
        )
    keys: dict[str, None] = {}  # an ordered set: first occurrence wins
    for index, item in enumerate(value):
        where = f"{name}[{index}]"
        if not isinstance(item, str):
            raise InvalidInput(
                f"{where} must be a string, not {_type_name(item)}", field=where, code=_PAYLOAD
            )
        try:
            keys.setdefault(normalise_participant_key(item), None)
        except ValueError as exc:
            raise InvalidInput(f"{where} {exc}", field=where, code=_PAYLOAD) from None
    return tuple(keys)


def meeting_ended_to_json(meeting: Declared) -> dict[str, Any]:
    """The webhook body for ``meeting``; ``parse_meeting_ended`` reads it back to an equal value."""
    return {
        "type": "meeting.ended",
        "meeting_code": meeting.meeting_code,
        "ended_at": format_timestamp(meeting.ended_at),
        "started_at": None if meeting.started_at is None else format_timestamp(meeting.started_at),
        "external_id": meeting.external_id,
        "calendar_event_id": meeting.calendar_event_id,
        "organizer_email": meeting.organizer_email,
        "expected_participants": list(meeting.expected_participants),
    }


# ------------------------------------------------------------------------------
# HTTP plumbing


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
        raise AppError(
            f"request body is larger than {MAX_BODY_BYTES} bytes",
            status=413,
            code="payload_too_large",
        )
    if method.upper() == "POST" and size > 0 and not _is_json_media_type(content_type or ""):
        raise AppError(
            "request body must be application/json (UTF-8)",
            status=415,
            code="unsupported_media_type",
        )


def error_response(error: AppError) -> tuple[int, dict[str, Any]]:
    """``(status, {"error": {"code", "message", "field"?}})`` as CONTRACT §4 shows."""
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
    return error.status, {"error": detail}


def unexpected_error_response() -> tuple[int, dict[str, Any]]:
    """The answer to a bug: 500 with nothing about its cause (that goes to the log)."""
    return 500, {"error": {"code": "internal", "message": "internal error"}}


# ------------------------------------------------------------------------------
# Routes of ``ingest`` (CONTRACT §4)

MeetingEndedRoute: TypeAlias = tuple[Literal["meeting_ended"]]
SyncRoute: TypeAlias = tuple[Literal["sync"], str]
GetRoute: TypeAlias = tuple[Literal["get"], str]
Route: TypeAlias = MeetingEndedRoute | SyncRoute | GetRoute

_MEETING_ID: Final = re.compile(r"[A-Za-z0-9_-]{1,128}")
_MEETING_PATH: Final = re.compile(r"/meetings/(?P<id>[^/]*)(?P<sync>/sync)?")


def is_meeting_id(value: str) -> bool:
    """Path-safe meeting ids: letters, digits, ``_`` and ``-``, 1 to 128 of them."""
    return _MEETING_ID.fullmatch(value) is not None


def route_ingest(method: str, path: str) -> Route:
    """Which handler serves ``method path``; 404 for unknown paths, 405 for known ones."""
    method = method.upper()
    if path in ("", "/"):
        if method != "POST":
            raise MethodNotAllowed(method, ("POST",))
        return ("meeting_ended",)
    match = _MEETING_PATH.fullmatch(path.removesuffix("/"))
    if match is None or not is_meeting_id(match["id"]):
        raise _not_found(path)
    meeting_id = match["id"]
    if match["sync"]:
        if method != "POST":
            raise MethodNotAllowed(method, ("POST",))
        return ("sync", meeting_id)
    if method != "GET":
        raise MethodNotAllowed(method, ("GET",))
    return ("get", meeting_id)


# ------------------------------------------------------------------------------
# OIDC for the private functions (collect, backfill)


def _audiences(audience: str) -> list[str]:
    bare = audience.rstrip("/")
    return sorted({audience, bare, bare + "/"})


def _token_problem(exc: Exception) -> str:
    # google-auth's messages quote the token and the expected audience; answer with the kind only.
    text = str(exc).lower()
    if "expired" in text:
        return "token expired"
    if "too early" in text:
        return "token not valid yet"
    if "audience" in text:
        return "token audience does not match"
    return "token signature or format is invalid"


def verify_oidc_token(
    *,
    authorization: str | None,
    audience: str,
    allowed_emails: Collection[str],
    certs_url: str | None,
    request: google.auth.transport.Request,
) -> dict[str, Any]:
    """Verify a Google-signed OIDC bearer token and return its claims.

    401 (:class:`Unauthorized`) when the token is missing, malformed, badly signed, expired, not
    from Google or for another audience; 403 (:class:`Forbidden`) when it is genuine but its
    ``email`` is not allowed or not verified; 503 (retryable) when the signing certificates cannot
    be fetched.
    """
    scheme, _, token = (authorization or "").strip().partition(" ")
    if not scheme:
        raise Unauthorized("missing Authorization header")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise Unauthorized("Authorization must be 'Bearer <OIDC token>'")
    try:
        claims = dict(
            id_token.verify_token(
                token,
                request,
                audience=_audiences(audience),
                certs_url=certs_url or GOOGLE_CERTS_URL,
                # Google's token server and this instance may disagree by a few seconds.
                clock_skew_in_seconds=10,
            )
        )
    except google.auth.exceptions.TransportError as exc:
        raise AppError(
            "could not fetch the OIDC signing certificates",
            status=503,
            retryable=True,
            code="unavailable",
        ) from exc
    except (google.auth.exceptions.GoogleAuthError, ValueError, TypeError, KeyError) as exc:
        # TypeError/KeyError: google-auth trusts claim types once the signature checks out.
        raise Unauthorized(f"invalid OIDC token: {_token_problem(exc)}") from exc

    if claims.get("iss") not in GOOGLE_ISSUERS:
        raise Unauthorized("invalid OIDC token: not issued by Google")
    email = claims.get("email")
    allowed = {allowed_email.lower() for allowed_email in allowed_emails}
    if not isinstance(email, str) or email.lower() not in allowed:
        raise Forbidden("this identity may not call this function")
    if claims.get("email_verified") is not True:
        raise Forbidden("the token's email is not verified")
    return claims


# ------------------------------------------------------------------------------
# Tasks for ``collect``

TaskReason: TypeAlias = CollectReason
_TASK_REASONS: Final[tuple[str, ...]] = get_args(CollectReason)
MAX_ATTEMPT: Final = 1000


def parse_collect_task(body: bytes) -> CollectTask:
    """Validate a task body; :class:`InvalidInput` with code ``invalid_task`` names the field.

    Unknown fields are ignored, so a task queued by a newer version still runs on an older one.
    """
    data = _load_object(body, code=_TASK)
    meeting_id = _required_str(data, "meeting_id", code=_TASK)
    if not is_meeting_id(meeting_id):
        raise InvalidInput(
            "meeting_id must be 1 to 128 letters, digits, '_' or '-'",
            field="meeting_id",
            code=_TASK,
        )
    attempt = data.get("attempt")
    if attempt is None:
        raise InvalidInput("attempt is required", field="attempt", code=_TASK)
    if not isinstance(attempt, int) or isinstance(attempt, bool):
        raise InvalidInput(
            f"attempt must be an integer, not {_type_name(attempt)}", field="attempt", code=_TASK
        )
    if not 1 <= attempt <= MAX_ATTEMPT:
        raise InvalidInput(
            f"attempt must be between 1 and {MAX_ATTEMPT}", field="attempt", code=_TASK
        )
    reason = _optional_str(data, "reason", code=_TASK) or "poll"
    if reason not in _TASK_REASONS:
        raise InvalidInput(
            f"reason must be one of {', '.join(_TASK_REASONS)}", field="reason", code=_TASK
        )
    return CollectTask(meeting_id=meeting_id, attempt=attempt, reason=cast(TaskReason, reason))


def collect_task_body(task: CollectTask) -> bytes:
    """Compact JSON for a Cloud Tasks body; ``parse_collect_task`` reads it back."""
    payload = {"meeting_id": task.meeting_id, "attempt": task.attempt, "reason": task.reason}
    return json.dumps(payload, separators=(",", ":")).encode()
