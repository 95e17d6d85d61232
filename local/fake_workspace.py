"""A faithful local stand-in for Google Meet REST v2, Workspace Events v1 and the Directory API.

One HTTP server on 127.0.0.1 serves the three APIs; the stock ``googleapiclient`` client talks to
it unchanged through ``build(api, version, static_discovery=True, credentials=...,
client_options={"api_endpoint": server.url})``. Behaviour follows
shared/reference/google-events.md §1-§3 and §5:

- Meet (``/v2/``): conference records (newest start first, page size 25 / max 100, filters over
  ``space.meeting_code``, ``space.name``, ``start_time``, ``end_time``), participants (join time
  descending, 100 / 250, filters over ``earliest_start_time``, ``latest_end_time``),
  participant sessions (start time descending, 100 / 250, ``start_time``, ``end_time``) and
  ``spaces.get`` by id or, case-insensitively, by meeting code. Filters take ``=``, ``>=``,
  ``<=``, ``>``, ``<`` with quoted values, ``IS NULL`` / ``IS NOT NULL``, ``AND`` and
  parentheses. Page sizes above the maximum are coerced to it; page tokens are opaque and bound to
  the listing and its filter. Errors are Google's JSON (``{"error": {"code", "message",
  "status"}}``); unknown query parameters are a 400, as Google's gRPC transcoding answers.
- Readers: ``space_readers`` restricts a space to the listed subjects. The subject of a request
  is the ``<email>`` of an ``Authorization: Bearer local-subject:<email>`` header (anything else
  is anonymous). Gets and child listings of a restricted space's records, and ``spaces.get`` of
  it, answer 403 PERMISSION_DENIED to anyone else; ``conferenceRecords.list`` leaves those records
  out (Google lists only what the caller may read).
- Workspace Events (``/v1/``): subscriptions as long-running operations, ``ALREADY_EXISTS`` per
  target resource, TTL capped at 7 days, expiry computed lazily from ``clock`` (an expired
  subscription is gone: 404, not listed, may be created again), suspension and reactivation.
  An operation that is not done omits ``done`` and ``response``, as proto3 JSON does for a false
  ``done`` (read it with ``op.get("done")``).
- Directory (``/admin/directory/v1/``): ``users.get`` by id, primary email or alias;
  ``members.list`` (200 a page) and ``members.get`` by group email, alias or id.

Control endpoints (not part of Google's APIs, never logged as API requests):

- ``POST /_fake/meet`` ``{"spaces", "conference_records", "participants",
  "participant_sessions", "users", "groups", "space_readers"}`` adds or replaces resources (by
  name; users by ``id``; groups by ``email``). Items are Google's JSON (a group is ``{"email",
  "members": [emails], "id"?, "aliases"?}``); an invalid item is a 400 naming it and nothing of
  the body is applied. ``space_readers`` maps ``spaces/ID`` to a list of emails (an empty list
  lifts the restriction).
- ``POST /_fake/meet/events`` ``{"type", "data", "subscription"?, "id"?, "time"?, "token"?,
  "email"?, "audience"?, "raw"?}`` delivers a CloudEvent as a wrapped Pub/Sub push to the push
  URL, with an OIDC token from the token mint (``"token": false``: no Authorization; ``email``,
  ``audience``: mint for another identity or audience; ``raw``: post this body as-is, a string
  verbatim or anything else as JSON) and answers ``{"status": N, "id", "messageId"}`` where N is
  the endpoint's HTTP status (0 when nothing answered).
- ``GET /_fake/meet/pushes`` lists what was pushed (``{"url", "status", "body", "headers"}``).
- ``GET /_fake/meet/subscriptions`` → ``{"subscriptions": [...]}`` (the live ones);
  ``POST /_fake/meet/subscriptions/suspend`` ``{"name", "reason"}``;
  ``POST /_fake/meet/subscriptions/expire`` ``{"name"}``.
- ``POST /_fake/meet/faults`` ``{"faults": [{"path_prefix", "status", "count"?, "reason"?,
  "retry_after_s"?, "message"?}]}`` (or one such object); ``DELETE /_fake/meet/faults`` clears.
  Faults are taken first in, first out; each answers ``count`` API requests whose path starts with
  its prefix.
- ``POST /_fake/meet/config`` ``{"operation_polls_before_done": N, "push_url"?,
  "token_mint_url"?, "push_email"?, "push_audience"?}``; ``GET /_fake/meet/config`` shows it.
- ``POST /_fake/meet/reset`` clears everything (settings return to the constructor's).
- ``GET /_fake/meet/requests`` → ``[{"method", "path", "query", "status", "subject"}]``.
- ``GET /_fake/meet/health`` (and ``/_fake/health``) → ``{"ok": true}``.

Run alone with ``python -m local.fake_workspace --port P [--push-url URL] ...``. It only ever
listens on, and sends to, loopback addresses.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import copy
import dataclasses
import datetime as dt
import hashlib
import hmac
import ipaddress
import itertools
import json
import math
import re
import secrets
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from local.fake_reports import apply_fields, parse_fields, parse_rfc3339

LOOPBACK_HOST = "127.0.0.1"
MAX_TTL = dt.timedelta(days=7)
PUSH_SUBSCRIPTION = "workspace-events-push"
PUSH_TIMEOUT_S = 30.0
SUBSCRIPTION_TYPES = "type.googleapis.com/google.apps.events.subscriptions.v1."
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
LIFECYCLE_PREFIX = "google.workspace.events.subscription.v1."

MEET_EVENT_TYPES = frozenset(
    "google.workspace.meet." + suffix
    for suffix in (
        "conference.v2.started",
        "conference.v2.ended",
        "participant.v2.joined",
        "participant.v2.left",
        "recording.v2.fileGenerated",
        "recording.v2.started",
        "recording.v2.ended",
        "transcript.v2.fileGenerated",
        "transcript.v2.started",
        "transcript.v2.ended",
        "smartNote.v2.started",
        "smartNote.v2.ended",
        "smartNote.v2.fileGenerated",
    )
)
SUSPENSION_REASONS = frozenset(
    {
        "ERROR_TYPE_UNSPECIFIED",
        "USER_SCOPE_REVOKED",
        "APP_SCOPE_REVOKED",
        "RESOURCE_DELETED",
        "USER_AUTHORIZATION_FAILURE",
        "APP_AUTHORIZATION_FAILURE",
        "ENDPOINT_PERMISSION_DENIED",
        "ENDPOINT_NOT_FOUND",
        "ENDPOINT_RESOURCE_EXHAUSTED",
        "OTHER",
    }
)
TARGET_PREFIXES = ("//cloudidentity.googleapis.com/users/", "//meet.googleapis.com/spaces/")
TOPIC = re.compile(r"^projects/[^/]+/topics/[^/]+$")
DURATION = re.compile(r"^(-?)(\d+)(?:\.(\d{1,9}))?s$")
SUBJECT_PREFIX = "Bearer local-subject:"

# System parameters every Google API accepts besides its own.
SYSTEM_PARAMETERS = frozenset(
    {
        "$.xgafv",
        "access_token",
        "alt",
        "callback",
        "fields",
        "key",
        "oauth_token",
        "prettyPrint",
        "quotaUser",
        "upload_protocol",
        "uploadType",
    }
)

STATUS_NAMES: Mapping[int, str] = {
    400: "INVALID_ARGUMENT",
    401: "UNAUTHENTICATED",
    403: "PERMISSION_DENIED",
    404: "NOT_FOUND",
    409: "ABORTED",
    429: "RESOURCE_EXHAUSTED",
    499: "CANCELLED",
    500: "INTERNAL",
    501: "NOT_IMPLEMENTED",
    502: "UNAVAILABLE",
    503: "UNAVAILABLE",
    504: "DEADLINE_EXCEEDED",
}
DEFAULT_REASONS: Mapping[int, str] = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "conflict",
    429: "rateLimitExceeded",
}
DEFAULT_MESSAGES: Mapping[int, str] = {
    400: "Request contains an invalid argument.",
    401: "Request had invalid authentication credentials.",
    403: "The caller does not have permission",
    404: "Requested entity was not found.",
    409: "The operation was aborted.",
    500: "Internal error encountered.",
    503: "The service is currently unavailable.",
    504: "The request timed out.",
}
# Legacy `errors[].reason` → `google.rpc.ErrorInfo.reason`.
ERROR_INFO_REASONS: Mapping[str, str] = {
    "accessNotConfigured": "SERVICE_DISABLED",
    "rateLimitExceeded": "RATE_LIMIT_EXCEEDED",
    "userRateLimitExceeded": "RATE_LIMIT_EXCEEDED",
    "quotaExceeded": "RATE_LIMIT_EXCEEDED",
    "insufficientPermissions": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
}
SCOPES_MESSAGE = "Request had insufficient authentication scopes."
SERVICES: tuple[tuple[str, str, str], ...] = (
    ("/v2/", "meet.googleapis.com", "Google Meet REST API"),
    ("/v1/", "workspaceevents.googleapis.com", "Google Workspace Events API"),
    ("/admin/", "admin.googleapis.com", "Admin SDK API"),
)

LOAD_KEYS = (
    "spaces",
    "conference_records",
    "participants",
    "participant_sessions",
    "users",
    "groups",
    "space_readers",
)
CONFIG_KEYS = frozenset(
    {"operation_polls_before_done", "push_url", "token_mint_url", "push_email", "push_audience"}
)

SPACE_NAME = re.compile(r"^spaces/([^/]+)$")
RECORD_NAME = re.compile(r"^conferenceRecords/([^/]+)$")
PARTICIPANT_NAME = re.compile(r"^(conferenceRecords/[^/]+)/participants/([^/]+)$")
SESSION_NAME = re.compile(
    r"^(conferenceRecords/[^/]+/participants/[^/]+)/participantSessions/([^/]+)$"
)
USER_KINDS = ("signedinUser", "anonymousUser", "phoneUser")


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def format_time(when: dt.datetime) -> str:
    """RFC 3339 in UTC with 0, 3 or 6 fractional digits, as Google's JSON mapping writes it."""
    when = _utc(when)
    base = f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when:%H:%M:%S}"
    micro = when.microsecond
    if micro == 0:
        return base + "Z"
    if micro % 1000 == 0:
        return f"{base}.{micro // 1000:03d}Z"
    return f"{base}.{micro:06d}Z"


def parse_duration(text: str) -> dt.timedelta:
    """A protobuf JSON Duration (``"86400s"``, ``"1.5s"``); ValueError when malformed."""
    m = DURATION.match(text)
    if not m:
        raise ValueError(f"not a duration: {text!r}")
    frac = (m.group(3) or "").ljust(6, "0")[:6]
    value = dt.timedelta(seconds=int(m.group(2)), microseconds=int(frac or 0))
    return -value if m.group(1) else value


def _epoch_us(when: dt.datetime) -> int:
    delta = _utc(when) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _stable_id(text: str) -> str:
    """A Google-looking numeric id, stable for ``text`` (used where none was posted)."""
    digest = int.from_bytes(hashlib.sha256(text.lower().encode()).digest()[:8], "big")
    return "1" + str(digest).zfill(20)[:20]


def require_loopback(url: str, what: str) -> str:
    """``url`` when it is an http URL on a loopback address; ValueError otherwise."""
    parts = urlsplit(url)
    host = parts.hostname
    if parts.scheme != "http" or not host:
        raise ValueError(f"{what} must be an http:// URL on a loopback address (got {url!r})")
    if host != "localhost":
        try:
            loopback = ipaddress.ip_address(host).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError(f"refusing a non-loopback {what}: {url!r}")
    return url


def _subject(header: str | None) -> str | None:
    if header and header.startswith(SUBJECT_PREFIX):
        email = header[len(SUBJECT_PREFIX) :].strip()
        if email:
            return email
    return None


# --- errors --------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with Google's JSON error body."""

    def __init__(self, code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None):
        super().__init__(str(body.get("error", {}).get("message", code)))
        self.code = code
        self.body = body
        self.headers = dict(headers or {})


def rpc_error(
    code: int,
    message: str,
    status: str | None = None,
    *,
    details: list[dict[str, Any]] | None = None,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    error: dict[str, Any] = {
        "code": code,
        "message": message,
        "status": status or STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if errors:
        error["errors"] = errors
    if details:
        error["details"] = details
    return ApiError(code, {"error": error}, headers)


def _invalid(message: str) -> ApiError:
    return rpc_error(400, message, "INVALID_ARGUMENT")


def _not_found() -> ApiError:
    return rpc_error(404, "Requested entity was not found.", "NOT_FOUND")


def _denied() -> ApiError:
    return ApiError(
        403,
        {
            "error": {
                "code": 403,
                "status": "PERMISSION_DENIED",
                "message": "The caller does not have permission",
            }
        },
    )


def _directory_error(code: int, message: str, reason: str) -> ApiError:
    detail = {"domain": "global", "reason": reason, "message": message}
    return ApiError(code, {"error": {"code": code, "message": message, "errors": [detail]}})


def _directory_not_found(key: str) -> ApiError:
    return _directory_error(404, f"Resource Not Found: {key}", "notFound")


def _directory_invalid(message: str = "Invalid Input") -> ApiError:
    return _directory_error(400, message, "invalid")


class ControlError(Exception):
    """A control-interface error: ``{"error": message}`` with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- filters (the subset of AIP-160 these APIs document) -----------------------------------------


@dataclasses.dataclass(frozen=True)
class _Field:
    kind: str  # "time" | "text" | "list"
    ops: frozenset[str]
    fold: bool = False  # compare case-insensitively


@dataclasses.dataclass(frozen=True)
class _Cmp:
    field: str
    op: str  # "=", ">=", "<=", ">", "<", ":", "null", "notnull"
    value: Any


@dataclasses.dataclass(frozen=True)
class _Bool:
    op: str  # "AND" | "OR"
    parts: tuple[_Cmp | _Bool, ...]


_Node = _Cmp | _Bool
_ORDER = frozenset({"=", ">=", "<=", ">", "<", "null", "notnull"})
_TEXT_EQ = frozenset({"=", "null", "notnull"})
_TOKEN = re.compile(
    r'(?P<lp>\()|(?P<rp>\))|(?P<str>"(?:[^"\\]|\\.)*")|(?P<op>>=|<=|!=|=|>|<|:)'
    r"|(?P<word>[A-Za-z_][A-Za-z0-9_.]*)"
)
_SPACE = re.compile(r"\s*")

RECORD_FIELDS: Mapping[str, _Field] = {
    "space.meeting_code": _Field("text", _TEXT_EQ, fold=True),
    "space.name": _Field("text", _TEXT_EQ),
    "start_time": _Field("time", _ORDER),
    "end_time": _Field("time", _ORDER),
}
PARTICIPANT_FIELDS: Mapping[str, _Field] = {
    "earliest_start_time": _Field("time", _ORDER),
    "latest_end_time": _Field("time", _ORDER),
}
SESSION_FIELDS: Mapping[str, _Field] = {
    "start_time": _Field("time", _ORDER),
    "end_time": _Field("time", _ORDER),
}
SUBSCRIPTION_FIELDS: Mapping[str, _Field] = {
    "event_types": _Field("list", frozenset({":"})),
    "target_resource": _Field("text", frozenset({"="})),
}


class _Parser:
    """expr := disj (AND disj)*; disj := term (OR term)*; term := ( expr ) | comparison.

    OR binds tighter than AND, as AIP-160 defines, so ``a OR b AND c`` is ``(a OR b) AND c``.
    """

    def __init__(self, text: str, fields: Mapping[str, _Field], *, allow_or: bool) -> None:
        self.fields = fields
        self.allow_or = allow_or
        self.tokens: list[tuple[str, str]] = []
        pos = 0
        while True:
            space = _SPACE.match(text, pos)
            pos = space.end() if space else pos
            if pos >= len(text):
                break
            m = _TOKEN.match(text, pos)
            if not m or not m.lastgroup:
                raise ValueError(f"unexpected character {text[pos]!r} at offset {pos}")
            self.tokens.append((m.lastgroup, m.group(m.lastgroup)))
            pos = m.end()
        self.pos = 0

    def parse(self) -> _Node:
        if not self.tokens:
            raise ValueError("empty filter")
        node = self._conjunction()
        if self.pos != len(self.tokens):
            raise ValueError(f"unexpected {self.tokens[self.pos][1]!r}")
        return node

    def _peek(self) -> tuple[str, str] | None:
        return self.tokens[self.pos] if self.pos < len(self.tokens) else None

    def _next(self, what: str) -> tuple[str, str]:
        token = self._peek()
        if token is None:
            raise ValueError(f"expected {what} at the end of the filter")
        self.pos += 1
        return token

    def _keyword(self, word: str) -> bool:
        token = self._peek()
        if token == ("word", word):
            self.pos += 1
            return True
        return False

    def _conjunction(self) -> _Node:
        parts = [self._disjunction()]
        while self._keyword("AND"):
            parts.append(self._disjunction())
        return parts[0] if len(parts) == 1 else _Bool("AND", tuple(parts))

    def _disjunction(self) -> _Node:
        parts = [self._term()]
        while self._peek() == ("word", "OR"):
            if not self.allow_or:
                raise ValueError("OR is not supported in this filter")
            self.pos += 1
            parts.append(self._term())
        return parts[0] if len(parts) == 1 else _Bool("OR", tuple(parts))

    def _term(self) -> _Node:
        kind, value = self._next("a field name")
        if kind == "lp":
            node = self._conjunction()
            if self._next("')'")[0] != "rp":
                raise ValueError("expected ')'")
            return node
        if kind != "word" or value in ("AND", "OR", "IS", "NOT", "NULL"):
            raise ValueError(f"expected a field name, got {value!r}")
        spec = self.fields.get(value)
        if spec is None:
            raise ValueError(f"unknown field {value!r}; filterable: {', '.join(self.fields)}")
        if self._keyword("IS"):
            negated = self._keyword("NOT")
            if not self._keyword("NULL"):
                raise ValueError("expected NULL after IS")
            op = "notnull" if negated else "null"
            if op not in spec.ops:
                raise ValueError(f"{value} cannot be compared with IS NULL")
            return _Cmp(value, op, None)
        op_kind, op = self._next("an operator")
        if op_kind != "op" or op not in spec.ops:
            raise ValueError(f"operator {op!r} is not supported for {value}")
        lit_kind, literal = self._next("a quoted value")
        if lit_kind != "str":
            raise ValueError(f"the value compared with {value} must be a quoted string")
        text = json.loads(literal)
        if not isinstance(text, str):
            raise ValueError("bad string literal")
        if spec.kind == "time":
            try:
                return _Cmp(value, op, parse_rfc3339(text))
            except ValueError:
                raise ValueError(f"{value} needs an RFC 3339 timestamp, got {text!r}") from None
        return _Cmp(value, op, text.lower() if spec.fold else text)


def compile_filter(
    text: str, fields: Mapping[str, _Field], *, allow_or: bool = False
) -> Callable[[Mapping[str, Any]], bool]:
    """A predicate over a resource's facts; ValueError when the filter is invalid."""
    node = _Parser(text, fields, allow_or=allow_or).parse()
    return lambda facts: _matches(node, facts)


def _mentions(node: _Node, field: str) -> bool:
    if isinstance(node, _Cmp):
        return node.field == field
    return any(_mentions(p, field) for p in node.parts)


_COMPARE: Mapping[str, Callable[[Any, Any], bool]] = {
    "=": lambda a, b: bool(a == b),
    ">=": lambda a, b: bool(a >= b),
    "<=": lambda a, b: bool(a <= b),
    ">": lambda a, b: bool(a > b),
    "<": lambda a, b: bool(a < b),
}


def _matches(node: _Node, facts: Mapping[str, Any]) -> bool:
    if isinstance(node, _Bool):
        results = (_matches(p, facts) for p in node.parts)
        return all(results) if node.op == "AND" else any(results)
    value = facts.get(node.field)
    if node.op == "null":
        return value is None
    if node.op == "notnull":
        return value is not None
    if value is None:
        return False
    if node.op == ":":
        return node.value in value
    return _COMPARE[node.op](value, node.value)


# --- stored resources ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Timed:
    """A Meet resource with its parsed start and end (the ordering and filter fields)."""

    item: dict[str, Any]
    start: dt.datetime
    end: dt.datetime | None

    @property
    def name(self) -> str:
        return str(self.item["name"])

    def key(self) -> tuple[int, str]:
        # Ascending order of (-start, name) is newest start first.
        return (-_epoch_us(self.start), self.name)


@dataclasses.dataclass
class _Subscription:
    name: str
    uid: str
    target: str
    event_types: list[str]
    endpoint: dict[str, Any]
    payload_options: dict[str, Any] | None
    authority: str | None
    create_time: dt.datetime
    update_time: dt.datetime
    expire_time: dt.datetime
    seq: int
    state: str = "ACTIVE"
    suspension_reason: str | None = None

    def etag(self) -> str:
        content = json.dumps(
            [
                self.name,
                self.event_types,
                self.state,
                self.suspension_reason,
                format_time(self.update_time),
                format_time(self.expire_time),
            ]
        )
        return hashlib.sha256(content.encode()).hexdigest()[:24]

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "targetResource": self.target,
            "eventTypes": list(self.event_types),
        }
        if self.payload_options is not None:
            body["payloadOptions"] = copy.deepcopy(self.payload_options)
        body["notificationEndpoint"] = copy.deepcopy(self.endpoint)
        body["state"] = self.state
        if self.suspension_reason:
            body["suspensionReason"] = self.suspension_reason
        if self.authority:
            body["authority"] = self.authority
            body["userAuthority"] = self.authority
        body.update(
            {
                "createTime": format_time(self.create_time),
                "updateTime": format_time(self.update_time),
                "reconciling": False,
                "etag": self.etag(),
                "expireTime": format_time(self.expire_time),
            }
        )
        return body


@dataclasses.dataclass
class _Operation:
    name: str
    metadata_type: str
    response: dict[str, Any]
    polls_left: int

    def answer(self) -> dict[str, Any]:
        """This poll's view: not done while polls are left (each poll uses one), then done."""
        body: dict[str, Any] = {
            "name": self.name,
            "metadata": {"@type": SUBSCRIPTION_TYPES + self.metadata_type},
        }
        if self.polls_left > 0:
            self.polls_left -= 1
            return body  # proto3 JSON leaves out a false `done`
        body["done"] = True
        body["response"] = copy.deepcopy(self.response)
        return body


@dataclasses.dataclass
class _Fault:
    path_prefix: str
    status: int
    remaining: int
    reason: str | None
    retry_after_s: float | None
    message: str | None


@dataclasses.dataclass(frozen=True)
class _Settings:
    push_url: str | None
    token_mint_url: str | None
    push_email: str
    push_audience: str | None
    project: str


# --- validation of control items -----------------------------------------------------------------


def _item_error(where: str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def _time_field(
    item: Mapping[str, Any], field: str, where: str, *, required: bool
) -> dt.datetime | None:
    if field not in item or item[field] is None:
        if required:
            raise _item_error(where, f'missing "{field}" (an RFC 3339 timestamp)')
        return None
    value = item[field]
    if not isinstance(value, str):
        raise _item_error(where, f'"{field}" must be an RFC 3339 string')
    try:
        return parse_rfc3339(value)
    except ValueError:
        raise _item_error(where, f'"{field}" is not an RFC 3339 timestamp: {value!r}') from None


def _named(item: Any, where: str, pattern: re.Pattern[str], form: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    name = item.get("name")
    if not isinstance(name, str) or not name:
        raise _item_error(where, f'missing "name" ({form})')
    if not pattern.match(name):
        raise _item_error(where, f'"name" must look like {form} (got {name!r})')
    return copy.deepcopy(item)


def _check_space(item: Any, where: str) -> dict[str, Any]:
    space = _named(item, where, SPACE_NAME, "spaces/ID")
    for field in ("meetingCode", "meetingUri"):
        if field in space and not isinstance(space[field], str):
            raise _item_error(where, f'"{field}" must be a string')
    return space


def _check_record(item: Any, where: str) -> _Timed:
    record = _named(item, where, RECORD_NAME, "conferenceRecords/ID")
    start = _time_field(record, "startTime", where, required=True)
    end = _time_field(record, "endTime", where, required=False)
    _time_field(record, "expireTime", where, required=False)
    space = record.get("space")
    if not isinstance(space, str) or not SPACE_NAME.match(space):
        raise _item_error(where, 'missing "space" (spaces/ID)')
    assert start is not None
    return _Timed(record, start, end)


def _check_participant(item: Any, where: str) -> _Timed:
    participant = _named(item, where, PARTICIPANT_NAME, "conferenceRecords/CR/participants/P")
    start = _time_field(participant, "earliestStartTime", where, required=True)
    end = _time_field(participant, "latestEndTime", where, required=False)
    kinds = [k for k in USER_KINDS if k in participant]
    if len(kinds) != 1:
        raise _item_error(where, f"needs exactly one of {', '.join(USER_KINDS)} (got {kinds})")
    if not isinstance(participant[kinds[0]], dict):
        raise _item_error(where, f'"{kinds[0]}" must be a JSON object')
    user = participant[kinds[0]].get("user")
    if kinds[0] == "signedinUser" and user is not None and not str(user).startswith("users/"):
        raise _item_error(where, f'"signedinUser.user" must look like users/ID (got {user!r})')
    assert start is not None
    return _Timed(participant, start, end)


def _check_session(item: Any, where: str) -> _Timed:
    session = _named(
        item,
        where,
        SESSION_NAME,
        "conferenceRecords/CR/participants/P/participantSessions/S",
    )
    start = _time_field(session, "startTime", where, required=True)
    end = _time_field(session, "endTime", where, required=False)
    assert start is not None
    return _Timed(session, start, end)


def _check_user(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    if not isinstance(item.get("id"), str) or not item["id"]:
        raise _item_error(where, 'missing "id"')
    email = item.get("primaryEmail")
    if not isinstance(email, str) or "@" not in email:
        raise _item_error(where, 'missing "primaryEmail"')
    for field in ("aliases", "nonEditableAliases"):
        values = item.get(field, [])
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise _item_error(where, f'"{field}" must be a list of emails')
    user = copy.deepcopy(item)
    user.setdefault("kind", "admin#directory#user")
    return user


def _check_group(item: Any, where: str) -> dict[str, Any]:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    email = item.get("email")
    if not isinstance(email, str) or "@" not in email:
        raise _item_error(where, 'missing "email"')
    members = item.get("members", [])
    if not isinstance(members, list):
        raise _item_error(where, '"members" must be a list of emails')
    normalized: list[dict[str, Any]] = []
    for j, member in enumerate(members):
        entry = {"email": member} if isinstance(member, str) else member
        if not isinstance(entry, dict) or not isinstance(entry.get("email"), str):
            raise _item_error(f"{where}.members[{j}]", "must be an email or {email, ...}")
        normalized.append(copy.deepcopy(entry))
    aliases = item.get("aliases", [])
    if not isinstance(aliases, list) or not all(isinstance(a, str) for a in aliases):
        raise _item_error(where, '"aliases" must be a list of emails')
    group_id = item.get("id", _stable_id("group:" + email))
    if not isinstance(group_id, str) or not group_id:
        raise _item_error(where, '"id" must be a string')
    return {"email": email, "id": group_id, "aliases": list(aliases), "members": normalized}


def _list_of(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f'"{key}" must be a list')
    return value


# --- the world -----------------------------------------------------------------------------------


class _World:
    """Every resource, subscription, fault and log line, shared by the handler threads."""

    def __init__(self, settings: _Settings, clock: Callable[[], dt.datetime]) -> None:
        self.lock = threading.RLock()
        self.initial = settings
        self.clock = clock
        self.secret = secrets.token_bytes(32)
        self.seq = itertools.count(1)
        self.message_ids = itertools.count(1)
        self.clear()

    def now(self) -> dt.datetime:
        return _utc(self.clock())

    def clear(self) -> None:
        with self.lock:
            self.settings = self.initial
            self.polls_before_done = 0
            self.spaces: dict[str, dict[str, Any]] = {}
            self.codes: dict[str, str] = {}  # lower-case meeting code -> space name
            self.records: dict[str, _Timed] = {}
            self.participants: dict[str, dict[str, _Timed]] = {}  # record -> name -> participant
            self.sessions: dict[str, dict[str, _Timed]] = {}  # participant -> name -> session
            self.readers: dict[str, frozenset[str]] = {}
            self.users: dict[str, dict[str, Any]] = {}
            self.user_keys: dict[str, str] = {}  # lower-case email or alias -> user id
            self.groups: dict[str, dict[str, Any]] = {}  # lower-case email -> group
            self.group_keys: dict[str, str] = {}  # lower-case email/alias, or id -> group email
            self.subscriptions: dict[str, _Subscription] = {}
            self.operations: dict[str, _Operation] = {}
            self.faults: collections.deque[_Fault] = collections.deque()
            self.log: list[dict[str, Any]] = []
            self.pushes: list[dict[str, Any]] = []

    # --- control: resources -------------------------------------------------------------------

    def load(self, body: Any) -> dict[str, int]:
        if not isinstance(body, dict):
            raise ValueError("body must be a JSON object")
        unknown = sorted(set(body) - set(LOAD_KEYS))
        if unknown:
            raise ValueError(f"unknown keys {unknown}; expected some of {list(LOAD_KEYS)}")
        spaces = [
            _check_space(item, f"spaces[{i}]") for i, item in enumerate(_list_of(body, "spaces"))
        ]
        records = [
            _check_record(item, f"conference_records[{i}]")
            for i, item in enumerate(_list_of(body, "conference_records"))
        ]
        participants = [
            _check_participant(item, f"participants[{i}]")
            for i, item in enumerate(_list_of(body, "participants"))
        ]
        sessions = [
            _check_session(item, f"participant_sessions[{i}]")
            for i, item in enumerate(_list_of(body, "participant_sessions"))
        ]
        users = [_check_user(item, f"users[{i}]") for i, item in enumerate(_list_of(body, "users"))]
        groups = [
            _check_group(item, f"groups[{i}]") for i, item in enumerate(_list_of(body, "groups"))
        ]
        readers_in = body.get("space_readers", {})
        if not isinstance(readers_in, dict):
            raise ValueError('"space_readers" must be {"spaces/ID": [emails]}')
        readers: dict[str, frozenset[str]] = {}
        for space, emails in readers_in.items():
            if not SPACE_NAME.match(space):
                raise _item_error(f"space_readers[{space!r}]", "key must look like spaces/ID")
            if not isinstance(emails, list) or not all(isinstance(e, str) for e in emails):
                raise _item_error(f"space_readers[{space!r}]", "must be a list of emails")
            readers[space] = frozenset(e.lower() for e in emails)
        with self.lock:
            record_names = set(self.records) | {r.name for r in records}
            for i, p in enumerate(participants):
                parent = PARTICIPANT_NAME.match(p.name)
                assert parent is not None
                if parent.group(1) not in record_names:
                    raise _item_error(
                        f"participants[{i}]", f"its conference record {parent.group(1)} is unknown"
                    )
            participant_names = {name for group in self.participants.values() for name in group} | {
                p.name for p in participants
            }
            for i, s in enumerate(sessions):
                parent = SESSION_NAME.match(s.name)
                assert parent is not None
                if parent.group(1) not in participant_names:
                    raise _item_error(
                        f"participant_sessions[{i}]",
                        f"its participant {parent.group(1)} is unknown",
                    )
            for space in spaces:
                name = space["name"]
                old_code = str(self.spaces.get(name, {}).get("meetingCode", "")).lower()
                if old_code and self.codes.get(old_code) == name:
                    del self.codes[old_code]
                self.spaces[name] = space
                if space.get("meetingCode"):
                    self.codes[str(space["meetingCode"]).lower()] = name
            for record in records:
                self.records[record.name] = record
            for p in participants:
                self.participants.setdefault(p.name.split("/participants/")[0], {})[p.name] = p
            for s in sessions:
                self.sessions.setdefault(s.name.split("/participantSessions/")[0], {})[s.name] = s
            for user in users:
                self.users[user["id"]] = user
            for group in groups:
                self.groups[group["email"].lower()] = group
            for space, emails in readers.items():
                if emails:
                    self.readers[space] = emails
                else:
                    self.readers.pop(space, None)
            self._index_directory()
        counts = {
            "spaces": len(spaces),
            "conference_records": len(records),
            "participants": len(participants),
            "participant_sessions": len(sessions),
            "users": len(users),
            "groups": len(groups),
            "space_readers": len(readers),
        }
        return {"added": sum(counts.values()), **counts}

    def _index_directory(self) -> None:
        keys: dict[str, str] = {}
        for user in self.users.values():
            for alias in [*user.get("aliases", []), *user.get("nonEditableAliases", [])]:
                keys[alias.lower()] = user["id"]
        for user in self.users.values():
            keys[str(user["primaryEmail"]).lower()] = user["id"]
        self.user_keys = keys
        group_keys: dict[str, str] = {}
        for email, group in self.groups.items():
            for alias in group["aliases"]:
                group_keys[alias.lower()] = email
            group_keys[group["id"]] = email
        for email in self.groups:
            group_keys[email] = email
        self.group_keys = group_keys

    # --- control: settings, faults, log ---------------------------------------------------------

    def configure(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - CONFIG_KEYS:
            raise ValueError(f"config takes some of {sorted(CONFIG_KEYS)}")
        with self.lock:
            polls = body.get("operation_polls_before_done", self.polls_before_done)
            if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
                raise ValueError("operation_polls_before_done must be a non-negative integer")
            changes: dict[str, Any] = {}
            for key in ("push_url", "token_mint_url", "push_audience"):
                if key in body:
                    value = body[key]
                    if value is not None and not isinstance(value, str):
                        raise ValueError(f"{key} must be a URL or null")
                    if key != "push_audience" and value is not None:
                        require_loopback(value, key.replace("_", " "))
                    changes[key] = value
            if "push_email" in body:
                if not isinstance(body["push_email"], str) or "@" not in body["push_email"]:
                    raise ValueError("push_email must be an email")
                changes["push_email"] = body["push_email"]
            self.settings = dataclasses.replace(self.settings, **changes)
            self.polls_before_done = polls
            return self.config()

    def config(self) -> dict[str, Any]:
        with self.lock:
            s = self.settings
            return {
                "operation_polls_before_done": self.polls_before_done,
                "push_url": s.push_url,
                "token_mint_url": s.token_mint_url,
                "push_email": s.push_email,
                "push_audience": s.push_audience,
                "project": s.project,
            }

    def add_faults(self, body: Any) -> int:
        items = body.get("faults") if isinstance(body, dict) and "faults" in body else [body]
        if not isinstance(items, list) or not items:
            raise ValueError('body must be {"faults": [{"path_prefix", "status", ...}]}')
        faults = [_fault_from(item, f"faults[{i}]") for i, item in enumerate(items)]
        with self.lock:
            self.faults.extend(faults)
        return len(faults)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def take_fault(self, path: str) -> _Fault | None:
        with self.lock:
            fault = next((f for f in self.faults if path.startswith(f.path_prefix)), None)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.remove(fault)
            return dataclasses.replace(fault)

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.log)

    # --- paging -------------------------------------------------------------------------------

    def _token(self, key: tuple[int, str], scope: str) -> str:
        payload = json.dumps({"k": list(key), "s": scope}, separators=(",", ":")).encode()
        mac = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def _cursor(self, token: str, scope: str) -> tuple[int, str] | None:
        """The key of the last item served, or None for a token that is not ours or this query's."""
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        payload, mac = raw[:-16], raw[-16:]
        expected = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, expected):
            return None
        data = json.loads(payload)
        if data.get("s") != scope:
            return None
        return int(data["k"][0]), str(data["k"][1])

    def _page(
        self,
        entries: list[tuple[tuple[int, str], dict[str, Any]]],
        q: Mapping[str, str],
        scope: str,
        *,
        default: int,
        maximum: int,
        directory: bool = False,
    ) -> tuple[list[dict[str, Any]], str | None]:
        size_key = "maxResults" if directory else "pageSize"
        raw = q.get(size_key, "")
        size = default
        if raw != "":
            try:
                size = int(raw)
            except ValueError:
                if directory:
                    raise _directory_invalid(f"Invalid value '{raw}' for {size_key}") from None
                raise _invalid(f"Invalid value at 'page_size' (TYPE_INT32), \"{raw}\"") from None
            if directory and size < 1:
                raise _directory_invalid(f"Invalid value '{raw}' for {size_key}")
            if size < 0:
                raise _invalid("page_size must not be negative.")
            size = min(size or default, maximum)
        scope_id = hashlib.sha256(scope.encode()).hexdigest()[:16]
        entries.sort(key=lambda e: e[0])
        start = 0
        token = q.get("pageToken", "")
        if token:
            cursor = self._cursor(token, scope_id)
            if cursor is None:
                if directory:
                    raise _directory_invalid("Invalid pageToken")
                raise _invalid("Invalid page token.")
            start = bisect.bisect_right([e[0] for e in entries], cursor)
        chunk = entries[start : start + size]
        more = start + size < len(entries)
        return [copy.deepcopy(e[1]) for e in chunk], (
            self._token(chunk[-1][0], scope_id) if more and chunk else None
        )

    # --- Meet -----------------------------------------------------------------------------------

    def _readable(self, space: str, subject: str | None) -> bool:
        readers = self.readers.get(space)
        return readers is None or (subject is not None and subject.lower() in readers)

    def _record(self, record_id: str, subject: str | None) -> _Timed:
        record = self.records.get(f"conferenceRecords/{record_id}")
        if record is None:
            raise _not_found()
        if not self._readable(str(record.item["space"]), subject):
            raise _denied()
        return record

    def _record_facts(self, record: _Timed) -> dict[str, Any]:
        space = str(record.item["space"])
        code = self.spaces.get(space, {}).get("meetingCode")
        return {
            "space.name": space,
            "space.meeting_code": str(code).lower() if code else None,
            "start_time": record.start,
            "end_time": record.end,
        }

    @staticmethod
    def _filter(
        q: Mapping[str, str], fields: Mapping[str, _Field]
    ) -> Callable[[Mapping[str, Any]], bool] | None:
        text = q.get("filter", "")
        if not text.strip():
            return None
        try:
            return compile_filter(text, fields)
        except ValueError as exc:
            raise _invalid(f"Invalid filter: {exc}") from None

    def list_records(self, q: Mapping[str, str], subject: str | None) -> dict[str, Any]:
        with self.lock:
            pred = self._filter(q, RECORD_FIELDS)
            entries = [
                (r.key(), r.item)
                for r in self.records.values()
                if self._readable(str(r.item["space"]), subject)
                and (pred is None or pred(self._record_facts(r)))
            ]
            items, token = self._page(
                entries, q, f"records\x00{q.get('filter', '')}", default=25, maximum=100
            )
        return _listing("conferenceRecords", items, token)

    def get_record(self, record_id: str, subject: str | None) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._record(record_id, subject).item)

    def list_participants(
        self, record_id: str, q: Mapping[str, str], subject: str | None
    ) -> dict[str, Any]:
        with self.lock:
            record = self._record(record_id, subject)
            pred = self._filter(q, PARTICIPANT_FIELDS)
            entries = [
                (p.key(), p.item)
                for p in self.participants.get(record.name, {}).values()
                if pred is None or pred({"earliest_start_time": p.start, "latest_end_time": p.end})
            ]
            items, token = self._page(
                entries,
                q,
                f"participants\x00{record.name}\x00{q.get('filter', '')}",
                default=100,
                maximum=250,
            )
        return _listing("participants", items, token)

    def _participant(self, record_id: str, participant_id: str, subject: str | None) -> _Timed:
        record = self._record(record_id, subject)
        participant = self.participants.get(record.name, {}).get(
            f"{record.name}/participants/{participant_id}"
        )
        if participant is None:
            raise _not_found()
        return participant

    def get_participant(
        self, record_id: str, participant_id: str, subject: str | None
    ) -> dict[str, Any]:
        with self.lock:
            return copy.deepcopy(self._participant(record_id, participant_id, subject).item)

    def list_sessions(
        self, record_id: str, participant_id: str, q: Mapping[str, str], subject: str | None
    ) -> dict[str, Any]:
        with self.lock:
            participant = self._participant(record_id, participant_id, subject)
            pred = self._filter(q, SESSION_FIELDS)
            entries = [
                (s.key(), s.item)
                for s in self.sessions.get(participant.name, {}).values()
                if pred is None or pred({"start_time": s.start, "end_time": s.end})
            ]
            items, token = self._page(
                entries,
                q,
                f"sessions\x00{participant.name}\x00{q.get('filter', '')}",
                default=100,
                maximum=250,
            )
        return _listing("participantSessions", items, token)

    def get_session(
        self, record_id: str, participant_id: str, session_id: str, subject: str | None
    ) -> dict[str, Any]:
        with self.lock:
            participant = self._participant(record_id, participant_id, subject)
            session = self.sessions.get(participant.name, {}).get(
                f"{participant.name}/participantSessions/{session_id}"
            )
            if session is None:
                raise _not_found()
            return copy.deepcopy(session.item)

    def list_artifacts(self, record_id: str, subject: str | None) -> dict[str, Any]:
        with self.lock:
            self._record(record_id, subject)
        return {}  # recordings, transcripts and smart notes are never generated here

    def get_space(self, key: str, subject: str | None) -> dict[str, Any]:
        with self.lock:
            name = f"spaces/{key}"
            if name not in self.spaces:
                name = self.codes.get(key.lower(), "")
            space = self.spaces.get(name)
            if space is None:
                raise _not_found()
            if not self._readable(name, subject):
                raise _denied()
            body = copy.deepcopy(space)
            if "activeConference" not in body:
                ongoing = sorted(
                    (r for r in self.records.values() if r.item["space"] == name and r.end is None),
                    key=_Timed.key,
                )
                if ongoing:
                    body["activeConference"] = {"conferenceRecord": ongoing[0].name}
            return body

    # --- Workspace Events -------------------------------------------------------------------

    def _purge(self, now: dt.datetime) -> None:
        for name in [n for n, s in self.subscriptions.items() if s.expire_time <= now]:
            del self.subscriptions[name]

    def _live(self, sub_id: str) -> _Subscription:
        self._purge(self.now())
        sub = self.subscriptions.get(f"subscriptions/{sub_id}")
        if sub is None:
            raise _not_found()
        return sub

    def _operation(self, metadata_type: str, response: dict[str, Any]) -> dict[str, Any]:
        op = _Operation(
            name=f"operations/{uuid.uuid4().hex}",
            metadata_type=metadata_type,
            response=response,
            polls_left=self.polls_before_done,
        )
        self.operations[op.name] = op
        return op.answer()

    @staticmethod
    def _subscription_response(sub: _Subscription) -> dict[str, Any]:
        return {"@type": SUBSCRIPTION_TYPES + "Subscription", **sub.to_json()}

    def _expiry(
        self, body: Mapping[str, Any], now: dt.datetime, *, ttl: bool, at: bool
    ) -> dt.datetime:
        """The expire time asked by ``ttl`` and/or ``expireTime`` of ``body``, capped at 7 days."""
        if ttl and at and "ttl" in body and "expireTime" in body:
            raise _invalid("Only one of ttl and expire_time may be set.")
        if at and body.get("expireTime") is not None:
            value = body["expireTime"]
            try:
                when = parse_rfc3339(str(value))
            except ValueError:
                raise _invalid(f"Invalid value at 'subscription.expire_time': {value!r}") from None
            if when <= now:
                raise _invalid("expire_time must be in the future.")
            return min(when, now + MAX_TTL)
        if at and not ttl:
            raise _invalid("expire_time is required by the update mask.")
        value = body.get("ttl")
        if value is None:
            return now + MAX_TTL
        try:
            duration = parse_duration(str(value))
        except ValueError:
            raise _invalid(f"Invalid value at 'subscription.ttl': {value!r}") from None
        if duration < dt.timedelta(0):
            raise _invalid("ttl must not be negative.")
        return now + (min(duration, MAX_TTL) if duration else MAX_TTL)

    def _authority(self, target: str, subject: str | None) -> str | None:
        user_prefix = TARGET_PREFIXES[0]
        if target.startswith(user_prefix):
            return "users/" + target[len(user_prefix) :]
        if subject is None:
            return None
        user_id = self.user_keys.get(subject.lower())
        return f"users/{user_id or _stable_id(subject)}"

    def create_subscription(
        self, body: Any, q: Mapping[str, str], subject: str | None
    ) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received: expected a Subscription object.")
        target = body.get("targetResource")
        if not isinstance(target, str) or not target:
            raise _invalid("target_resource is required.")
        prefix = next((p for p in TARGET_PREFIXES if target.startswith(p)), None)
        if prefix is None or not target[len(prefix) :] or "/" in target[len(prefix) :]:
            raise _invalid(
                f"Invalid target_resource {target!r}: for Google Meet use "
                "//meet.googleapis.com/spaces/SPACE or //cloudidentity.googleapis.com/users/USER."
            )
        event_types = body.get("eventTypes")
        if (
            not isinstance(event_types, list)
            or not event_types
            or not all(isinstance(t, str) for t in event_types)
        ):
            raise _invalid("event_types is required.")
        unknown = [t for t in event_types if t not in MEET_EVENT_TYPES]
        if unknown:
            raise _invalid(f"Invalid event types for the target resource: {', '.join(unknown)}")
        endpoint = body.get("notificationEndpoint")
        topic = endpoint.get("pubsubTopic") if isinstance(endpoint, dict) else None
        if not isinstance(topic, str) or not TOPIC.match(topic):
            raise _invalid(
                "notification_endpoint.pubsub_topic is required, as projects/PROJECT/topics/TOPIC."
            )
        options = body.get("payloadOptions")
        if options is not None:
            if not isinstance(options, dict):
                raise _invalid("payload_options must be an object.")
            if options.get("includeResource"):
                raise _invalid("Google Meet events cannot include resource data.")
        validate_only = q.get("validateOnly", "").lower() == "true"
        with self.lock:
            now = self.now()
            self._purge(now)
            expire = self._expiry(body, now, ttl=True, at=True)
            if any(s.target == target for s in self.subscriptions.values()):
                raise rpc_error(
                    409,
                    "Subscription already exists for the target resource.",
                    "ALREADY_EXISTS",
                    details=[
                        {
                            "@type": ERROR_INFO,
                            "reason": "SUBSCRIPTION_ALREADY_EXISTS",
                            "domain": "workspaceevents.googleapis.com",
                        }
                    ],
                )
            sub = _Subscription(
                name=f"subscriptions/{secrets.token_hex(12)}",
                uid=str(uuid.uuid4()),
                target=target,
                event_types=list(dict.fromkeys(event_types)),
                endpoint={"pubsubTopic": topic},
                payload_options=copy.deepcopy(options),
                authority=self._authority(target, subject),
                create_time=now,
                update_time=now,
                expire_time=expire,
                seq=next(self.seq),
            )
            if not validate_only:
                self.subscriptions[sub.name] = sub
            return self._operation("CreateSubscriptionMetadata", self._subscription_response(sub))

    def get_subscription(self, sub_id: str) -> dict[str, Any]:
        with self.lock:
            return self._live(sub_id).to_json()

    def list_subscriptions(self, q: Mapping[str, str]) -> dict[str, Any]:
        text = q.get("filter", "")
        if not text.strip():
            raise _invalid("filter is required: you must specify at least one event type.")
        try:
            node = _Parser(text, SUBSCRIPTION_FIELDS, allow_or=True).parse()
        except ValueError as exc:
            raise _invalid(f"Invalid filter: {exc}") from None
        if not _mentions(node, "event_types"):
            raise _invalid("Invalid filter: you must specify at least one event type.")
        with self.lock:
            self._purge(self.now())
            entries = [
                ((s.seq, s.name), s.to_json())
                for s in self.subscriptions.values()
                if _matches(node, {"event_types": s.event_types, "target_resource": s.target})
            ]
            items, token = self._page(
                entries, q, f"subscriptions\x00{text}", default=50, maximum=100
            )
        return _listing("subscriptions", items, token)

    def patch_subscription(self, sub_id: str, body: Any, q: Mapping[str, str]) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise _invalid("Invalid JSON payload received: expected a Subscription object.")
        mask = [m.strip() for m in q.get("updateMask", "").split(",") if m.strip()]
        if not mask:
            mask = [f for f in ("ttl", "expireTime") if f in body]
            if not mask:
                raise _invalid("Nothing to update: set ttl or expire_time.")
        paths = {"expireTime": "expire_time"}
        fields = {paths.get(m, m) for m in mask}
        bad = sorted(fields - {"ttl", "expire_time"})
        if bad:
            raise _invalid(f"Invalid update mask path(s): {', '.join(bad)}.")
        if fields == {"ttl", "expire_time"}:
            raise _invalid("Only one of ttl and expire_time may be updated.")
        validate_only = q.get("validateOnly", "").lower() == "true"
        with self.lock:
            sub = self._live(sub_id)
            now = self.now()
            expire = self._expiry(body, now, ttl="ttl" in fields, at="expire_time" in fields)
            if validate_only:
                sub = dataclasses.replace(sub)
            sub.expire_time = expire
            sub.update_time = now
            return self._operation("UpdateSubscriptionMetadata", self._subscription_response(sub))

    def reactivate_subscription(self, sub_id: str) -> dict[str, Any]:
        with self.lock:
            sub = self._live(sub_id)
            if sub.state != "SUSPENDED":
                raise rpc_error(
                    400,
                    f"Subscription is {sub.state}; only a SUSPENDED subscription can be "
                    "reactivated.",
                    "FAILED_PRECONDITION",
                )
            sub.state = "ACTIVE"
            sub.suspension_reason = None
            sub.update_time = self.now()
            return self._operation(
                "ReactivateSubscriptionMetadata", self._subscription_response(sub)
            )

    def delete_subscription(self, sub_id: str, q: Mapping[str, str]) -> dict[str, Any]:
        allow_missing = q.get("allowMissing", "").lower() == "true"
        validate_only = q.get("validateOnly", "").lower() == "true"
        with self.lock:
            try:
                sub = self._live(sub_id)
            except ApiError:
                if not allow_missing:
                    raise
            else:
                etag = q.get("etag")
                if etag and etag != sub.etag():
                    raise rpc_error(409, "The etag does not match the subscription.", "ABORTED")
                if not validate_only:
                    del self.subscriptions[sub.name]
            return self._operation(
                "DeleteSubscriptionMetadata", {"@type": "type.googleapis.com/google.protobuf.Empty"}
            )

    def get_operation(self, name: str) -> dict[str, Any]:
        with self.lock:
            op = self.operations.get(f"operations/{name}")
            if op is None:
                raise _not_found()
            return op.answer()

    def live_subscriptions(self) -> list[dict[str, Any]]:
        with self.lock:
            self._purge(self.now())
            ordered = sorted(self.subscriptions.values(), key=lambda s: s.seq)
            return [s.to_json() for s in ordered]

    def _control_subscription(self, body: Any) -> _Subscription:
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.startswith("subscriptions/"):
            raise ValueError('body must be {"name": "subscriptions/ID", ...}')
        self._purge(self.now())
        sub = self.subscriptions.get(name)
        if sub is None:
            raise ControlError(404, f"no live subscription {name}")
        return sub

    def suspend(self, body: Any) -> dict[str, Any]:
        with self.lock:
            sub = self._control_subscription(body)
            reason = body.get("reason", "OTHER")
            if reason not in SUSPENSION_REASONS:
                raise ValueError(f"reason must be one of {sorted(SUSPENSION_REASONS)}")
            sub.state = "SUSPENDED"
            sub.suspension_reason = reason
            sub.update_time = self.now()
            return sub.to_json()

    def expire(self, body: Any) -> dict[str, Any]:
        with self.lock:
            sub = self._control_subscription(body)
            sub.expire_time = self.now()
            self._purge(self.now())
            return {"expired": sub.name}

    # --- Directory --------------------------------------------------------------------------

    def get_user(self, key: str) -> dict[str, Any]:
        with self.lock:
            user = self.users.get(key) or self.users.get(self.user_keys.get(key.lower(), ""))
            if user is None:
                raise _directory_not_found("userKey")
            body = copy.deepcopy(user)
        body.setdefault("etag", '"' + hashlib.sha256(json.dumps(body).encode()).hexdigest() + '"')
        return body

    def _group(self, key: str) -> dict[str, Any]:
        email = self.group_keys.get(key) or self.group_keys.get(key.lower())
        if email is None:
            raise _directory_not_found("groupKey")
        return self.groups[email]

    def _member(self, entry: Mapping[str, Any]) -> dict[str, Any]:
        email = str(entry["email"])
        group_email = self.group_keys.get(email.lower())
        user_id = self.user_keys.get(email.lower())
        if group_email is not None and user_id is None:
            default_type, default_id = "GROUP", self.groups[group_email]["id"]
        else:
            default_type, default_id = "USER", user_id or _stable_id(email)
        member: dict[str, Any] = {
            "kind": "admin#directory#member",
            "email": email,
            "role": "MEMBER",
            "type": default_type,
            "status": "ACTIVE",
            "id": default_id,
        }
        member.update(entry)
        member.setdefault(
            "etag", '"' + hashlib.sha256(json.dumps(member).encode()).hexdigest()[:32] + '"'
        )
        return member

    def list_members(self, key: str, q: Mapping[str, str]) -> dict[str, Any]:
        with self.lock:
            group = self._group(key)
            entries = [((i, ""), self._member(m)) for i, m in enumerate(group["members"])]
            items, token = self._page(
                entries, q, f"members\x00{group['email']}", default=200, maximum=200, directory=True
            )
        body: dict[str, Any] = {"kind": "admin#directory#members"}
        body["etag"] = '"' + hashlib.sha256(json.dumps([items, token]).encode()).hexdigest() + '"'
        if items:
            body["members"] = items
        if token:
            body["nextPageToken"] = token
        return body

    def get_member(self, key: str, member_key: str) -> dict[str, Any]:
        with self.lock:
            group = self._group(key)
            for entry in group["members"]:
                member = self._member(entry)
                if member_key.lower() == str(member["email"]).lower() or member_key == member["id"]:
                    return member
        raise _directory_not_found("memberKey")

    # --- events -----------------------------------------------------------------------------

    def event_request(self, spec: Any) -> tuple[_Settings, dict[str, Any]]:
        """The settings to deliver with and the push to make (url, body, headers, mint)."""
        if not isinstance(spec, dict):
            raise ValueError("body must be a JSON object")
        with self.lock:
            settings = self.settings
            record_space: dict[str, str] = {
                n: str(r.item["space"]) for n, r in self.records.items()
            }
        if settings.push_url is None:
            raise ValueError("no push URL configured (constructor push_url or POST config)")
        mint = spec.get("token", True)
        if not isinstance(mint, bool):
            raise ValueError('"token" must be true or false')
        email = spec.get("email", settings.push_email)
        audience = spec.get("audience", settings.push_audience or settings.push_url)
        if not isinstance(email, str) or "@" not in email:
            raise ValueError('"email" must be an email')
        if not isinstance(audience, str) or not audience:
            raise ValueError('"audience" must be a string')
        ce_id = spec.get("id") or str(uuid.uuid4())
        message_id = str(next(self.message_ids))
        if "raw" in spec:
            raw = spec["raw"]
            body = raw.encode() if isinstance(raw, str) else json.dumps(raw).encode()
        else:
            body = json.dumps(
                self._envelope(spec, str(ce_id), message_id, settings, record_space)
            ).encode()
        return settings, {
            "body": body,
            "mint": mint,
            "email": email,
            "audience": audience,
            "id": str(ce_id),
            "messageId": message_id,
        }

    def _envelope(
        self,
        spec: Mapping[str, Any],
        ce_id: str,
        message_id: str,
        settings: _Settings,
        record_space: Mapping[str, str],
    ) -> dict[str, Any]:
        ce_type = spec.get("type")
        if not isinstance(ce_type, str) or not ce_type:
            raise ValueError('"type" (the ce-type) is required')
        data = spec.get("data", {})
        if not isinstance(data, dict):
            raise ValueError('"data" must be a JSON object')
        subscription = spec.get("subscription")
        if subscription is not None and (
            not isinstance(subscription, str) or not subscription.startswith("subscriptions/")
        ):
            raise ValueError('"subscription" must look like subscriptions/ID')
        if ce_type.startswith(LIFECYCLE_PREFIX):
            inner = data.get("subscription")
            subscription = subscription or (inner.get("name") if isinstance(inner, dict) else None)
            if not isinstance(subscription, str) or not subscription:
                raise ValueError('a lifecycle event needs "subscription": "subscriptions/ID"')
            source = subject = f"//workspaceevents.googleapis.com/{subscription}"
        else:
            record = _record_of(data)
            subject = f"//meet.googleapis.com/{record}" if record else "//meet.googleapis.com"
            space = record_space.get(record or "")
            source = f"//meet.googleapis.com/{space}" if space else "//meet.googleapis.com"
        now = self.now()
        now = now.replace(microsecond=now.microsecond // 1000 * 1000)
        when = spec.get("time", format_time(now))
        if not isinstance(when, str):
            raise ValueError('"time" must be an RFC 3339 string')
        attributes = {
            "ce-specversion": "1.0",
            "ce-type": ce_type,
            "ce-id": ce_id,
            "ce-source": str(spec.get("source", source)),
            "ce-subject": str(spec.get("subject", subject)),
            "ce-time": when,
            "ce-datacontenttype": "application/json",
        }
        publish_time = format_time(now)
        return {
            "message": {
                "attributes": attributes,
                "data": base64.b64encode(json.dumps(data).encode()).decode(),
                "messageId": message_id,
                "message_id": message_id,
                "publishTime": publish_time,
                "publish_time": publish_time,
            },
            "subscription": f"projects/{settings.project}/subscriptions/{PUSH_SUBSCRIPTION}",
        }

    def record_push(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.pushes.append(entry)

    def push_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.pushes)


def _record_of(data: Mapping[str, Any]) -> str | None:
    """The conference record an event's resource belongs to (``conferenceRecords/ID``)."""
    for key in (
        "conferenceRecord",
        "participantSession",
        "participant",
        "recording",
        "transcript",
        "smartNote",
    ):
        value = data.get(key)
        name = value.get("name") if isinstance(value, dict) else None
        if isinstance(name, str) and name.startswith("conferenceRecords/"):
            return "/".join(name.split("/")[:2])
    return None


def _listing(key: str, items: list[dict[str, Any]], token: str | None) -> dict[str, Any]:
    body: dict[str, Any] = {}
    if items:
        body[key] = items
    if token:
        body["nextPageToken"] = token
    return body


def _fault_from(item: Any, where: str) -> _Fault:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    prefix = item.get("path_prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise _item_error(where, '"path_prefix" must be a path such as "/v2/"')
    status = item.get("status")
    if isinstance(status, bool) or not isinstance(status, int) or not 400 <= status <= 599:
        raise _item_error(where, '"status" must be an HTTP error status (400-599)')
    count = item.get("count", 1)
    if isinstance(count, bool) or not isinstance(count, int) or count < 1:
        raise _item_error(where, '"count" must be a positive integer')
    retry = item.get("retry_after_s")
    if retry is not None and (isinstance(retry, bool) or not isinstance(retry, int | float)):
        raise _item_error(where, '"retry_after_s" must be a number')
    for key in ("reason", "message"):
        if item.get(key) is not None and not isinstance(item[key], str):
            raise _item_error(where, f'"{key}" must be a string')
    return _Fault(
        path_prefix=prefix,
        status=status,
        remaining=count,
        reason=item.get("reason"),
        retry_after_s=None if retry is None else max(0.0, float(retry)),
        message=item.get("message"),
    )


def fault_error(fault: _Fault, path: str, project: str) -> ApiError:
    """Google's error body for a fault on ``path``."""
    service, title = next(
        ((s, t) for prefix, s, t in SERVICES if path.startswith(prefix)), SERVICES[0][1:]
    )
    legacy = fault.reason or DEFAULT_REASONS.get(fault.status, "backendError")
    if legacy == "SERVICE_DISABLED":
        legacy = "accessNotConfigured"
    headers = {}
    if fault.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after_s))
    metadata: dict[str, str] = {"service": service, "consumer": f"projects/{project}"}
    if legacy == "accessNotConfigured":
        message = fault.message or (
            f"{title} has not been used in project {project} before or it is disabled. Enable it "
            f"by visiting https://console.developers.google.com/apis/api/{service}/overview"
            f"?project={project} then retry. If you enabled this API recently, wait a few minutes "
            "for the action to propagate to our systems and retry."
        )
        metadata["serviceTitle"] = title
        domain = "usageLimits"
    elif fault.status == 429:
        message = fault.message or (
            "Quota exceeded for quota metric 'Read requests' and limit 'Read requests per minute "
            f"per user' of service '{service}' for consumer 'project_number:{project}'."
        )
        domain = "usageLimits"
    elif legacy == "insufficientPermissions":
        message = fault.message or SCOPES_MESSAGE
        domain = "global"
    else:
        message = fault.message or DEFAULT_MESSAGES.get(fault.status, "Backend Error")
        domain = "global"
    return rpc_error(
        fault.status,
        message,
        errors=[{"message": message, "domain": domain, "reason": legacy}],
        details=[
            {
                "@type": ERROR_INFO,
                "reason": ERROR_INFO_REASONS.get(legacy, legacy),
                "domain": "googleapis.com",
                "metadata": metadata,
            }
        ],
        headers=headers,
    )


# --- HTTP ----------------------------------------------------------------------------------------

_Route = tuple[str, re.Pattern[str], str, frozenset[str] | None]


def _route(method: str, pattern: str, action: str, params: Iterable[str] | None) -> _Route:
    return (method, re.compile(pattern), action, None if params is None else frozenset(params))


_LIST = ("filter", "pageSize", "pageToken")
_CR = r"^/v2/conferenceRecords/([^/]+)"
ROUTES: tuple[_Route, ...] = (
    _route("GET", r"^/v2/conferenceRecords$", "list_records", _LIST),
    _route("GET", _CR + r"$", "get_record", ()),
    _route("GET", _CR + r"/participants$", "list_participants", _LIST),
    _route("GET", _CR + r"/participants/([^/]+)$", "get_participant", ()),
    _route("GET", _CR + r"/participants/([^/]+)/participantSessions$", "list_sessions", _LIST),
    _route("GET", _CR + r"/participants/([^/]+)/participantSessions/([^/]+)$", "get_session", ()),
    _route(
        "GET",
        _CR + r"/(?:recordings|transcripts|smartNotes)$",
        "list_artifacts",
        ("pageSize", "pageToken"),
    ),
    _route("GET", r"^/v2/spaces/([^/:]+)$", "get_space", ()),
    _route("POST", r"^/v1/subscriptions$", "create_subscription", ("validateOnly",)),
    _route("GET", r"^/v1/subscriptions$", "list_subscriptions", _LIST),
    _route("GET", r"^/v1/subscriptions/([^/:]+)$", "get_subscription", ()),
    _route(
        "PATCH",
        r"^/v1/subscriptions/([^/:]+)$",
        "patch_subscription",
        ("updateMask", "validateOnly"),
    ),
    _route(
        "DELETE",
        r"^/v1/subscriptions/([^/:]+)$",
        "delete_subscription",
        ("allowMissing", "etag", "validateOnly"),
    ),
    _route("POST", r"^/v1/subscriptions/([^/:]+):reactivate$", "reactivate_subscription", ()),
    _route("GET", r"^/v1/operations/(.+)$", "get_operation", ()),
    _route("GET", r"^/admin/directory/v1/users/([^/]+)$", "get_user", None),
    _route("GET", r"^/admin/directory/v1/groups/([^/]+)/members$", "list_members", None),
    _route("GET", r"^/admin/directory/v1/groups/([^/]+)/members/([^/]+)$", "get_member", None),
)


def _find_route(
    method: str, path: str
) -> tuple[str, frozenset[str] | None, tuple[str, ...]] | None:
    normalized = path.replace("%3A", ":").replace("%3a", ":")
    for route_method, pattern, action, params in ROUTES:
        m = pattern.match(normalized)
        if m and route_method == method:
            return action, params, tuple(m.groups())
    return None


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Keep-alive responses are small writes: without TCP_NODELAY each waits for the client's
    # delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # the request log lives in /_fake/meet/requests

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PATCH(self) -> None:
        self._dispatch("PATCH")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if split.path.startswith("/_fake/"):
            self._control(method, split.path, body)
            return
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        subject = _subject(self.headers.get("Authorization"))
        status, payload, headers = self._api(method, split.path, query, body, subject)
        # Logged before answering, so a client that has its response always finds it in the log.
        self.server.world.record(
            {
                "method": method,
                "path": split.path,
                "query": query,
                "status": status,
                "subject": subject,
            }
        )
        self._send(status, payload, headers)

    def _api(
        self, method: str, path: str, query: dict[str, str], raw: bytes, subject: str | None
    ) -> tuple[int, Any, Mapping[str, str]]:
        world = self.server.world
        try:
            fault = world.take_fault(path)
            if fault is not None:
                raise fault_error(fault, path, world.settings.project)
            return 200, self._call(method, path, query, raw, subject), {}
        except ApiError as err:
            return err.code, err.body, err.headers

    def _call(
        self, method: str, path: str, query: dict[str, str], raw: bytes, subject: str | None
    ) -> Any:
        world = self.server.world
        directory = path.startswith("/admin/")
        found = _find_route(method, path)
        if found is None:
            if directory:
                raise _directory_error(404, "Not Found", "notFound")
            raise rpc_error(404, f"Method not found: {method} {path}", "NOT_FOUND")
        action, params, groups = found
        if params is not None:
            for name in query:
                if name not in params and name not in SYSTEM_PARAMETERS:
                    raise _invalid(
                        f'Invalid JSON payload received. Unknown name "{name}": Cannot bind '
                        f"query parameter. Field '{name}' could not be found in request message."
                    )
        tree = None
        if query.get("fields"):
            try:
                tree = parse_fields(query["fields"])
            except ValueError as exc:
                if directory:
                    raise _directory_invalid(f"Invalid field selection {exc}") from None
                raise _invalid(f"Invalid field selection: {exc}") from None
        args = [unquote(g) for g in groups]
        body: Any = None
        if method in ("POST", "PATCH", "PUT"):
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise _invalid("Invalid JSON payload received.") from None
        result = self._perform(world, action, args, query, body, subject)
        return apply_fields(result, tree)

    @staticmethod
    def _perform(
        world: _World,
        action: str,
        args: list[str],
        query: dict[str, str],
        body: Any,
        subject: str | None,
    ) -> dict[str, Any]:
        if action == "list_records":
            return world.list_records(query, subject)
        if action == "get_record":
            return world.get_record(args[0], subject)
        if action == "list_participants":
            return world.list_participants(args[0], query, subject)
        if action == "get_participant":
            return world.get_participant(args[0], args[1], subject)
        if action == "list_sessions":
            return world.list_sessions(args[0], args[1], query, subject)
        if action == "get_session":
            return world.get_session(args[0], args[1], args[2], subject)
        if action == "list_artifacts":
            return world.list_artifacts(args[0], subject)
        if action == "get_space":
            return world.get_space(args[0], subject)
        if action == "create_subscription":
            return world.create_subscription(body, query, subject)
        if action == "list_subscriptions":
            return world.list_subscriptions(query)
        if action == "get_subscription":
            return world.get_subscription(args[0])
        if action == "patch_subscription":
            return world.patch_subscription(args[0], body, query)
        if action == "delete_subscription":
            return world.delete_subscription(args[0], query)
        if action == "reactivate_subscription":
            return world.reactivate_subscription(args[0])
        if action == "get_operation":
            return world.get_operation(args[0])
        if action == "get_user":
            return world.get_user(args[0])
        if action == "list_members":
            return world.list_members(args[0], query)
        if action == "get_member":
            return world.get_member(args[0], args[1])
        raise AssertionError(action)

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _control(self, method: str, path: str, raw: bytes) -> None:
        world = self.server.world
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        try:
            route = (method, path.rstrip("/"))
            if route == ("POST", "/_fake/meet"):
                self._send(200, world.load(payload))
            elif route == ("POST", "/_fake/meet/events"):
                self._send(200, publish(world, payload))
            elif route == ("GET", "/_fake/meet/pushes"):
                self._send(200, world.push_log())
            elif route == ("GET", "/_fake/meet/subscriptions"):
                self._send(200, {"subscriptions": world.live_subscriptions()})
            elif route == ("POST", "/_fake/meet/subscriptions/suspend"):
                self._send(200, world.suspend(payload))
            elif route == ("POST", "/_fake/meet/subscriptions/expire"):
                self._send(200, world.expire(payload))
            elif route == ("POST", "/_fake/meet/faults"):
                self._send(200, {"added": world.add_faults(payload)})
            elif route == ("DELETE", "/_fake/meet/faults"):
                world.clear_faults()
                self._send(200, {"ok": True})
            elif route == ("POST", "/_fake/meet/config"):
                self._send(200, world.configure(payload))
            elif route == ("GET", "/_fake/meet/config"):
                self._send(200, world.config())
            elif route == ("POST", "/_fake/meet/reset"):
                world.clear()
                self._send(200, {"ok": True})
            elif route == ("GET", "/_fake/meet/requests"):
                self._send(200, world.requests())
            elif route in (("GET", "/_fake/meet/health"), ("GET", "/_fake/health")):
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": f"no control endpoint {method} {path}"})
        except ControlError as exc:
            self._send(exc.status, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """Pub/Sub does not follow redirects, and a redirect could leave the loopback interface."""

    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        del args, kwargs


# No proxies (a loopback URL must stay on loopback whatever http_proxy says) and no redirects.
_OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}), _NoRedirect())


def _post(url: str, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes]:
    require_loopback(url, "URL")
    request = urllib.request.Request(url, data=body, headers=dict(headers), method="POST")
    try:
        with _OPENER.open(request, timeout=PUSH_TIMEOUT_S) as response:
            return int(response.status), bytes(response.read())
    except urllib.error.HTTPError as error:
        return int(error.code), bytes(error.read() or b"")
    except (OSError, urllib.error.URLError):
        return 0, b""


def _mint(mint_url: str, audience: str, email: str) -> str:
    status, answer = _post(
        mint_url,
        json.dumps({"audience": audience, "email": email}).encode(),
        {"Content-Type": "application/json"},
    )
    try:
        token = json.loads(answer)["id_token"] if status == 200 else None
    except (ValueError, KeyError, TypeError):
        token = None
    if not isinstance(token, str) or not token:
        raise ControlError(502, f"the token mint at {mint_url} answered {status}, no id_token")
    return token


def publish(world: _World, spec: Any) -> dict[str, Any]:
    """``POST /_fake/meet/events``: one wrapped push to the push URL, outside the world's lock."""
    settings, push = world.event_request(spec)
    assert settings.push_url is not None
    headers = {"Content-Type": "application/json"}
    if push["mint"]:
        if settings.token_mint_url is None:
            raise ValueError(
                'no token mint URL configured; pass "token": false to push without Authorization'
            )
        headers["Authorization"] = "Bearer " + _mint(
            settings.token_mint_url, push["audience"], push["email"]
        )
    status, _ = _post(settings.push_url, push["body"], headers)
    world.record_push(
        {
            "url": settings.push_url,
            "status": status,
            "body": push["body"].decode(errors="replace"),
            "headers": headers,
        }
    )
    return {"status": status, "id": push["id"], "messageId": push["messageId"]}


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], world: _World) -> None:
        super().__init__(address, _Handler)
        self.world = world


class FakeWorkspaceServer:
    """The fake Meet REST + Workspace Events + Directory server; see the module docstring."""

    def __init__(
        self,
        *,
        port: int = 0,
        push_url: str | None = None,
        token_mint_url: str | None = None,
        push_email: str = "pubsub-push@local.test",
        push_audience: str | None = None,
        project: str = "demo-attendance",
        clock: Callable[[], dt.datetime] | None = None,
    ) -> None:
        if push_url is not None:
            require_loopback(push_url, "push URL")
        if token_mint_url is not None:
            require_loopback(token_mint_url, "token mint URL")
        self._port = port
        self._world = _World(
            _Settings(
                push_url=push_url,
                token_mint_url=token_mint_url,
                push_email=push_email,
                push_audience=push_audience,
                project=project,
            ),
            clock or _utc_now,
        )
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server((LOOPBACK_HOST, self._port), self._world)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-workspace", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeWorkspaceServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{LOOPBACK_HOST}:{self._server.server_address[1]}/"

    # In-process equivalents of the control endpoints.

    def load(self, **resources: Any) -> dict[str, int]:
        """``POST /_fake/meet``: ``load(spaces=[...], conference_records=[...], ...)``."""
        return self._world.load(resources)

    def publish(self, **event: Any) -> dict[str, Any]:
        """``POST /_fake/meet/events``: ``publish(type=..., data=..., subscription=...)``."""
        try:
            return publish(self._world, event)
        except ControlError as exc:
            raise RuntimeError(str(exc)) from exc

    def subscriptions(self) -> list[dict[str, Any]]:
        return self._world.live_subscriptions()

    def suspend(self, name: str, reason: str = "OTHER") -> None:
        self._world.suspend({"name": name, "reason": reason})

    def expire(self, name: str) -> None:
        self._world.expire({"name": name})

    def add_faults(self, *faults: Mapping[str, Any]) -> None:
        self._world.add_faults({"faults": [dict(f) for f in faults]})

    def configure(self, **config: Any) -> dict[str, Any]:
        return self._world.configure(config)

    def requests(self) -> list[dict[str, Any]]:
        return self._world.requests()

    def pushes(self) -> list[dict[str, Any]]:
        return self._world.push_log()

    def reset(self) -> None:
        self._world.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.fake_workspace", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--push-url", default=None, help="where events are pushed (MEET_EVENTS_URL)"
    )
    parser.add_argument("--token-mint-url", default=None, help="the stack's token mint")
    parser.add_argument("--push-email", default="pubsub-push@local.test")
    parser.add_argument("--push-audience", default=None, help="default: the push URL")
    parser.add_argument("--project", default="demo-attendance")
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        server = FakeWorkspaceServer(
            port=args.port,
            push_url=args.push_url,
            token_mint_url=args.token_mint_url,
            push_email=args.push_email,
            push_audience=args.push_audience,
            project=args.project,
        )
    except ValueError as exc:
        print(f"fake-workspace: {exc}", file=sys.stderr)
        return 2
    server.start()
    print(f"fake-workspace ready url={server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
