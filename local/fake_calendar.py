"""A faithful local stand-in for the Google Calendar API v3 (events and push channels).

One HTTP server on 127.0.0.1 serves Calendar under ``/calendar/v3/`` (Calendar's servicePath), so
the stock ``googleapiclient`` client talks to it unchanged through ``build("calendar", "v3",
static_discovery=True, credentials=..., client_options={"api_endpoint": server.url +
"calendar/v3/"})`` (``api_endpoint`` replaces rootUrl + servicePath, so it must end in
``calendar/v3/``; shared/reference/google-events.md §5). Behaviour follows google-events.md §4:

- ``events.list`` (``GET /calendar/v3/calendars/{calendarId}/events``). Each stored event is one
  instance (a recurring event is posted as its instances, with ``recurringEventId`` and
  ``originalStartTime``), so ``singleEvents`` changes nothing but is required by
  ``orderBy=startTime``, as Google requires it. An event is listed when it ends after ``timeMin``
  and starts before ``timeMax`` (all-day events use ``date``, in the calendar's zone, UTC;
  ``timeMax <= timeMin`` is Google's 400 ``timeRangeEmpty``). Cancelled events are listed only
  with ``showDeleted=true`` (or ``updatedMin``, or in incremental sync) and then as Google returns
  deleted events: exactly ``{"kind", "etag", "id", "status": "cancelled", "updated"}``.
  ``maxResults`` defaults to 250 and is capped at 2500; page tokens are opaque and bound to the
  calendar and every parameter but ``pageToken``/``maxResults``. The last page carries
  ``nextSyncToken``, every other page ``nextPageToken`` only. ``syncToken`` returns every event
  changed since the token was issued (cancellations included, whatever ``showDeleted`` says); it
  cannot be combined with ``iCalUID``, ``orderBy``, ``privateExtendedProperty``, ``q``,
  ``sharedExtendedProperty``, ``timeMin``, ``timeMax`` or ``updatedMin`` (400, reason
  ``invalid``). A token issued before ``/_fake/calendar/expire-sync-tokens`` or a reset, one of
  another calendar, or one that is not ours answers 410 ``fullSyncRequired`` (Google answers 410
  to a tampered token too). A full listing's ``nextSyncToken`` is the change point of its first
  page, so a change made while paging is delivered again by the next incremental sync (at least
  once, never lost). Also supported: ``orderBy=updated``, ``iCalUID``, ``updatedMin``, ``q`` (a
  case-insensitive substring of summary, description, location, organizer or attendee email or
  name), ``eventTypes`` (repeated), ``privateExtendedProperty``/``sharedExtendedProperty``
  (``name=value``), ``maxAttendees`` and ``fields``; ``timeZone``, ``alwaysIncludeEmail`` and
  ``showHiddenInvitations`` are accepted and ignored. ``primary`` is the subject's calendar.
- ``events.watch`` (``POST .../calendars/{calendarId}/events/watch``): ``id`` (at most 64 of
  ``A-Za-z0-9-_+/=``, never used before on this server: 400 ``channelIdNotUnique``), ``type``
  ``web_hook``/``webhook``, ``address`` (http or https on a loopback IP address, anything else is
  400 ``push.webhookUrlUnauthorized``: this fake only ever sends to loopback), ``token`` (at most
  256 characters, a limit Google does not document), ``expiration`` (Unix ms) and
  ``params.ttl`` (seconds, default 604800). The lifetime is capped at 7 days: Google documents
  the default only, the maximum is unconfirmed (google-events.md §4.1). Watching a calendar the
  fake does not know creates it, empty. The answer is ``{"kind": "api#channel", "id",
  "resourceId" (opaque, stable per calendar), "resourceUri", "token"?, "expiration": "<ms>"}``;
  right after answering, a ``sync`` notification is sent.
- ``channels.stop`` (``POST /calendar/v3/channels/stop`` ``{"id", "resourceId"}``): 204 with no
  body; a channel that is unknown, stopped, expired or of another resource is 404.
- Notifications: ``POST <address>`` with no body and ``X-Goog-Channel-ID``,
  ``X-Goog-Channel-Token`` (when set), ``X-Goog-Channel-Expiration`` (RFC 1123, e.g. ``Tue, 08
  Dec 2026 10:00:00 GMT``), ``X-Goog-Resource-ID``, ``X-Goog-Resource-URI``,
  ``X-Goog-Resource-State`` (``sync`` first, then ``exists``) and ``X-Goog-Message-Number``
  (``sync`` is 1, then increasing per channel). Each channel delivers in order. A channel past its
  expiration (by ``clock``) or stopped sends nothing more.
- Requests need ``Authorization: Bearer ...`` (else Google's 401); the subject is the ``<email>``
  of ``Bearer local-subject:<email>``. Errors are Calendar's JSON (``{"error": {"code",
  "message", "errors": [{"domain", "reason", "message", ...}]}}``).

Control endpoints (not part of Google's API, never logged as API requests):

- ``POST /_fake/calendar/events`` ``{"calendar_id": C, "events": [<Event JSON>]}`` adds, replaces
  (same ``id``) or cancels (``"status": "cancelled"``) events. The fake sets ``kind``, ``etag``,
  ``updated`` (and ``created`` on first sight) and defaults ``status`` (``confirmed``), ``id`` and
  ``iCalUID`` (``<recurringEventId or id>@google.com``). A cancellation keeps the rest of what it
  cancels (its times for ``timeMin``/``timeMax``, its type, ...). An invalid item is a 400 naming it
  and nothing is applied. Then an ``exists`` notification goes to every open channel on C,
  synchronously; the answer is ``{"notified": [{"channel": id, "status": N}]}`` (N is the
  receiver's HTTP status, 0 when nothing answered; ``"status": null, "held": true`` while pushes
  are held). Posting no events only makes sure C exists (nothing changed, nothing is notified).
- ``GET /_fake/calendar/events?calendar_id=C`` → ``{"events": [...]}`` as stored.
- ``POST /_fake/calendar/expire-sync-tokens`` → ``{"ok": true}``: every sync token issued so far
  answers 410 from now on.
- ``GET /_fake/calendar/channels`` → ``{"channels": [{"id", "resourceId", "calendar_id",
  "address", "token", "expiration"}]}``, the open channels (``expiration`` in Unix ms as a string,
  as the API writes it; ``token`` null when unset).
- ``POST /_fake/calendar/notify`` ``{"channel": id, "state"?: "exists", "headers"?: {name: value
  or null}, "address"?}`` sends a hand-made notification through the channel (next message
  number, even when it is stopped or expired), the headers overriding (null: removing) the
  computed ones; for a channel the fake never opened, ``address`` is required. Answers
  ``{"status": N, "headers": {...}}`` (or ``"held": true``).
- ``POST /_fake/calendar/config`` ``{"push": false}`` holds notifications (queued in order per
  channel); ``{"push": true}`` sends the held ones and answers them under ``"flushed"``.
  ``GET /_fake/calendar/config`` shows it.
- ``GET /_fake/calendar/pushes`` → ``[{"channel", "address", "state", "message_number", "status",
  "outcome", "headers"}]``: every notification sent or dropped (``outcome`` ``delivered``,
  ``expired``, ``stopped``).
- ``POST /_fake/calendar/faults`` ``{"faults": [{"path_prefix", "status", "count"?, "reason"?,
  "message"?, "retry_after_s"?}]}`` (or one such object): Calendar-shaped errors for the next
  ``count`` API requests whose path starts with the prefix, first in first out;
  ``DELETE /_fake/calendar/faults`` clears them.
- ``POST /_fake/calendar/reset`` clears everything (and invalidates every token) once the
  notifications already promised are sent;
  ``GET /_fake/calendar/requests`` → ``[{"method", "path", "query", "status", "subject"}]``;
  ``GET /_fake/calendar/health`` (and ``/_fake/health``) → ``{"ok": true}``.

Run alone with ``python -m local.fake_calendar --port P``. It only ever listens on, and sends to,
loopback addresses.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import copy
import dataclasses
import datetime as dt
import email.utils
import hashlib
import hmac
import http.client
import ipaddress
import itertools
import json
import math
import re
import secrets
import signal
import ssl
import sys
import threading
import zoneinfo
from collections.abc import Callable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, quote, unquote, urlsplit

from local.fake_reports import apply_fields, parse_fields, parse_rfc3339

LOOPBACK_HOST = "127.0.0.1"
API_PREFIX = "/calendar/v3/"
GOOGLE_API = "https://www.googleapis.com/calendar/v3/"
DEFAULT_TTL = dt.timedelta(seconds=604_800)
# Google documents the default lifetime only; the maximum is unconfirmed (google-events.md §4.1).
MAX_TTL = dt.timedelta(days=7)
DEFAULT_PAGE = 250
MAX_PAGE = 2500
PUSH_TIMEOUT_S = 30.0
MAX_TOKEN_CHARS = 256  # the channel token's limit; not in Google's documentation
MAX_EVENT_ID_CHARS = 1024
CHANNEL_ID = re.compile(r"^[A-Za-z0-9\-_+/=]{1,64}$")
DATE = re.compile(r"^\d{4}-\d\d-\d\d$")
SUBJECT_PREFIX = "Bearer local-subject:"
USER_AGENT = "APIs-Google; (+https://developers.google.com/webmasters/APIs-Google.html)"
STATES = frozenset({"sync", "exists", "not_exists"})
EVENT_STATUSES = frozenset({"confirmed", "tentative", "cancelled"})
EVENT_TYPES = frozenset(
    {"default", "birthday", "focusTime", "fromGmail", "outOfOffice", "workingLocation"}
)
BASE32HEX = "0123456789abcdefghijklmnopqrstuv"

# The parameters a syncToken cannot be combined with (events.list reference, google-events.md §4.3).
SYNC_INCOMPATIBLE = (
    "iCalUID",
    "orderBy",
    "privateExtendedProperty",
    "q",
    "sharedExtendedProperty",
    "timeMin",
    "timeMax",
    "updatedMin",
)
BOOLEANS = ("alwaysIncludeEmail", "showDeleted", "showHiddenInvitations", "singleEvents")
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
        "userIp",
    }
)
# What a page token is not bound to: everything else must be the same on the next page.
UNBOUND = SYSTEM_PARAMETERS | {"pageToken", "maxResults"}

DEFAULT_REASONS: Mapping[int, str] = {
    400: "badRequest",
    401: "authError",
    403: "forbidden",
    404: "notFound",
    409: "duplicate",
    410: "fullSyncRequired",
    412: "conditionNotMet",
    429: "rateLimitExceeded",
}
REASON_MESSAGES: Mapping[str, str] = {
    "badRequest": "Bad Request",
    "authError": "Invalid Credentials",
    "forbidden": "Forbidden",
    "notFound": "Not Found",
    "duplicate": "The requested identifier already exists.",
    "fullSyncRequired": "Sync token is no longer valid, a full sync is required.",
    "conditionNotMet": "Precondition Failed",
    "rateLimitExceeded": "Rate Limit Exceeded",
    "userRateLimitExceeded": "User Rate Limit Exceeded",
    "quotaExceeded": "Calendar usage limits exceeded.",
    "backendError": "Backend Error",
    "accessNotConfigured": (
        "Google Calendar API has not been used in project 123456789012 before or it is disabled. "
        "Enable it by visiting https://console.developers.google.com/apis/api/"
        "calendar-json.googleapis.com/overview?project=123456789012 then retry."
    ),
    "insufficientPermissions": "Request had insufficient authentication scopes.",
}
USAGE_LIMITS = frozenset(
    {
        "rateLimitExceeded",
        "userRateLimitExceeded",
        "quotaExceeded",
        "dailyLimitExceeded",
        "accessNotConfigured",
    }
)
FULL_SYNC_MESSAGE = REASON_MESSAGES["fullSyncRequired"]


def _utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)


def format_time(when: dt.datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as Calendar writes ``updated`` and ``created``."""
    when = _utc(when)
    return (
        f"{when.year:04d}-{when.month:02d}-{when.day:02d}T{when:%H:%M:%S}"
        f".{when.microsecond // 1000:03d}Z"
    )


def format_http_date(when: dt.datetime) -> str:
    """RFC 1123 in GMT (``Tue, 08 Dec 2026 10:00:00 GMT``), as ``X-Goog-Channel-Expiration``."""
    return email.utils.format_datetime(_utc(when).replace(microsecond=0), usegmt=True)


def _epoch_us(when: dt.datetime) -> int:
    delta = _utc(when) - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


def _epoch_ms(when: dt.datetime) -> int:
    return _epoch_us(when) // 1000


def _from_ms(ms: int) -> dt.datetime:
    return dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(milliseconds=ms)


def resource_id(calendar_id: str) -> str:
    """The opaque ``resourceId`` of a calendar's events: stable for the calendar."""
    digest = hashlib.sha256(("calendar-events:" + calendar_id).encode()).digest()[:20]
    return base64.urlsafe_b64encode(digest).decode().rstrip("=")


def resource_uri(calendar_id: str) -> str:
    return f"{GOOGLE_API}calendars/{quote(calendar_id, safe='@')}/events?alt=json"


def loopback_address(address: str) -> bool:
    """Whether ``address`` is an http(s) URL on a loopback IP address (the only place we send)."""
    try:
        parts = urlsplit(address)
        host = parts.hostname
        _ = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not host or parts.username is not None:
        return False
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _subject(header: str | None) -> str | None:
    if header and header.startswith(SUBJECT_PREFIX):
        email_address = header[len(SUBJECT_PREFIX) :].strip()
        if email_address:
            return email_address
    return None


def _new_event_id() -> str:
    return "".join(secrets.choice(BASE32HEX) for _ in range(26))


# --- errors --------------------------------------------------------------------------------------


class ApiError(Exception):
    """An error answered with Calendar's JSON error body."""

    def __init__(self, code: int, body: dict[str, Any], headers: Mapping[str, str] | None = None):
        super().__init__(str(body.get("error", {}).get("message", code)))
        self.code = code
        self.body = body
        self.headers = dict(headers or {})


def calendar_error(
    code: int,
    message: str,
    reason: str,
    *,
    domain: str = "global",
    location: str | None = None,
    location_type: str = "parameter",
    headers: Mapping[str, str] | None = None,
) -> ApiError:
    detail: dict[str, Any] = {"domain": domain, "reason": reason, "message": message}
    if location is not None:
        detail["locationType"] = location_type
        detail["location"] = location
    return ApiError(
        code, {"error": {"code": code, "message": message, "errors": [detail]}}, headers
    )


def _invalid(message: str, location: str | None = None) -> ApiError:
    return calendar_error(400, message, "invalid", location=location)


def _bad_request(location: str | None = None) -> ApiError:
    return calendar_error(400, "Bad Request", "badRequest", location=location)


def _not_found(message: str = "Not Found") -> ApiError:
    return calendar_error(404, message, "notFound")


def _full_sync() -> ApiError:
    # Google's observed body names the calendar domain and the syncToken parameter.
    return calendar_error(
        410, FULL_SYNC_MESSAGE, "fullSyncRequired", domain="calendar", location="syncToken"
    )


def _login_required() -> ApiError:
    message = (
        "Request is missing required authentication credential. Expected OAuth 2 access token, "
        "login cookie or other valid authentication credential. See "
        "https://developers.google.com/identity/sign-in/web/devconsole-project."
    )
    detail = {
        "message": "Login Required.",
        "domain": "global",
        "reason": "required",
        "location": "Authorization",
        "locationType": "header",
    }
    return ApiError(
        401,
        {
            "error": {
                "code": 401,
                "message": message,
                "errors": [detail],
                "status": "UNAUTHENTICATED",
            }
        },
        {"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
    )


class ControlError(Exception):
    """A control-interface error: ``{"error": message}`` with this HTTP status."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


# --- stored resources ----------------------------------------------------------------------------


@dataclasses.dataclass
class _Event:
    item: dict[str, Any]
    start: dt.datetime | None
    end: dt.datetime | None
    updated: dt.datetime
    seq: int

    @property
    def id(self) -> str:
        return str(self.item["id"])

    @property
    def cancelled(self) -> bool:
        return self.item.get("status") == "cancelled"

    def tombstone(self) -> dict[str, Any]:
        """A deleted event as Google returns it: only id, status and updated are guaranteed."""
        return {
            "kind": "calendar#event",
            "etag": self.item["etag"],
            "id": self.id,
            "status": "cancelled",
            "updated": self.item["updated"],
        }

    def shown(self, max_attendees: int | None) -> dict[str, Any]:
        if self.cancelled:
            return self.tombstone()
        item = copy.deepcopy(self.item)
        attendees = item.get("attendees")
        if (
            max_attendees is not None
            and isinstance(attendees, list)
            and len(attendees) > max_attendees
        ):
            # "only the participant is returned" (the attendee that is the calendar's owner)
            item["attendees"] = [a for a in attendees if isinstance(a, dict) and a.get("self")]
            item["attendeesOmitted"] = True
        return item


@dataclasses.dataclass
class _Calendar:
    id: str
    resource_id: str
    created: dt.datetime
    updated: dt.datetime
    events: dict[str, _Event] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class _Notice:
    channel: str
    address: str
    state: str
    message_number: int
    headers: dict[str, str]
    forced: bool
    done: threading.Event = dataclasses.field(default_factory=threading.Event)
    status: int | None = None
    outcome: str | None = None


@dataclasses.dataclass
class _Channel:
    id: str
    resource_id: str
    calendar_id: str
    address: str
    token: str | None
    expiration: dt.datetime
    params: dict[str, list[str]]
    messages: int = 0
    stopped: bool = False
    queue: collections.deque[_Notice] = dataclasses.field(default_factory=collections.deque)
    deliver_lock: threading.Lock = dataclasses.field(default_factory=threading.Lock)

    def open_at(self, now: dt.datetime) -> bool:
        return not self.stopped and now < self.expiration

    def expiration_ms(self) -> str:
        return str(_epoch_ms(self.expiration))

    def headers(self, state: str, number: int) -> dict[str, str]:
        headers = {"X-Goog-Channel-ID": self.id}
        if self.token is not None:
            headers["X-Goog-Channel-Token"] = self.token
        headers.update(
            {
                "X-Goog-Channel-Expiration": format_http_date(self.expiration),
                "X-Goog-Resource-ID": self.resource_id,
                "X-Goog-Resource-URI": resource_uri(self.calendar_id),
                "X-Goog-Resource-State": state,
                "X-Goog-Message-Number": str(number),
            }
        )
        return headers


@dataclasses.dataclass
class _Fault:
    path_prefix: str
    status: int
    remaining: int
    reason: str | None
    retry_after_s: float | None
    message: str | None


# --- validation of control items -----------------------------------------------------------------


def _item_error(where: str, problem: str) -> ValueError:
    return ValueError(f"{where}: {problem}")


def _parse_event_time(value: Any, where: str) -> dt.datetime:
    """The instant of an EventDateTime (``date``: midnight UTC, the calendar's zone)."""
    if not isinstance(value, dict):
        raise _item_error(where, "must be an EventDateTime object")
    has_date, has_time = "date" in value, "dateTime" in value
    if has_date == has_time:
        raise _item_error(where, 'needs exactly one of "date" and "dateTime"')
    if has_date:
        text = value["date"]
        if not isinstance(text, str) or not DATE.match(text):
            raise _item_error(where, f'"date" must be YYYY-MM-DD (got {text!r})')
        try:
            day = dt.date.fromisoformat(text)
        except ValueError:
            raise _item_error(where, f'"date" is not a date: {text!r}') from None
        return dt.datetime(day.year, day.month, day.day, tzinfo=dt.UTC)
    text = value["dateTime"]
    if not isinstance(text, str):
        raise _item_error(where, '"dateTime" must be an RFC 3339 string')
    try:
        return parse_rfc3339(text)
    except ValueError:
        pass
    # "A time zone offset is required unless a time zone is explicitly specified in timeZone."
    try:
        naive = dt.datetime.fromisoformat(text)
    except ValueError:
        raise _item_error(where, f'"dateTime" is not RFC 3339: {text!r}') from None
    zone = value.get("timeZone")
    if naive.tzinfo is not None or "T" not in text:
        raise _item_error(where, f'"dateTime" is not RFC 3339: {text!r}')
    if zone is None:
        return naive.replace(tzinfo=dt.UTC)
    try:
        return naive.replace(tzinfo=zoneinfo.ZoneInfo(str(zone)))
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise _item_error(where, f'unknown "timeZone" {zone!r}') from None


def _check_event(
    item: Any, where: str, previous: _Event | None, now: dt.datetime, seq: int
) -> _Event:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    event = copy.deepcopy(item)
    if event.get("status") == "cancelled" and previous is not None:
        # A deletion keeps the rest of what it deletes (its times, type, iCalUID, ...): only the
        # tombstone is shown, but filters still see the event it was.
        event = {**copy.deepcopy(previous.item), **event}
    event_id = event.get("id", _new_event_id())
    if not isinstance(event_id, str) or not event_id or len(event_id) > MAX_EVENT_ID_CHARS:
        raise _item_error(where, '"id" must be a non-empty string')
    status = event.get("status", "confirmed")
    if status not in EVENT_STATUSES:
        raise _item_error(where, f'"status" must be one of {sorted(EVENT_STATUSES)}')
    start = end = None
    if "start" in event or "end" in event or status != "cancelled":
        for field in ("start", "end"):
            if field not in event:
                raise _item_error(where, f'missing "{field}" (an EventDateTime)')
        start = _parse_event_time(event["start"], f"{where}.start")
        end = _parse_event_time(event["end"], f"{where}.end")
        if end < start:
            raise _item_error(where, "ends before it starts")
    recurring, original = event.get("recurringEventId"), event.get("originalStartTime")
    if (recurring is None) != (original is None):
        raise _item_error(
            where, 'an instance needs both "recurringEventId" and "originalStartTime"'
        )
    if recurring is not None:
        if not isinstance(recurring, str) or not recurring:
            raise _item_error(where, '"recurringEventId" must be a non-empty string')
        _parse_event_time(original, f"{where}.originalStartTime")
    event_type = event.get("eventType", "default")
    if event_type not in EVENT_TYPES:
        raise _item_error(where, f'"eventType" must be one of {sorted(EVENT_TYPES)}')
    for field in ("summary", "description", "location", "iCalUID"):
        if field in event and not isinstance(event[field], str):
            raise _item_error(where, f'"{field}" must be a string')
    if "attendees" in event and not (
        isinstance(event["attendees"], list)
        and all(isinstance(a, dict) for a in event["attendees"])
    ):
        raise _item_error(where, '"attendees" must be a list of objects')
    created = event.get("created")
    if created is None:
        created = previous.item["created"] if previous is not None else format_time(now)
    elif not isinstance(created, str):
        raise _item_error(where, '"created" must be an RFC 3339 string')
    stored: dict[str, Any] = {
        "kind": "calendar#event",
        "etag": f'"{_epoch_us(now)}{seq % 1000:03d}"',
        "id": event_id,
        "status": status,
    }
    event.pop("kind", None)
    event.pop("etag", None)
    event.pop("updated", None)
    stored.update(event)
    stored.update({"id": event_id, "status": status, "created": created})
    stored["updated"] = format_time(now)
    stored.setdefault("iCalUID", f"{recurring or event_id}@google.com")
    return _Event(stored, start, end, now, seq)


def _list_of(body: Mapping[str, Any], key: str) -> list[Any]:
    value = body.get(key, [])
    if not isinstance(value, list):
        raise ValueError(f'"{key}" must be a list')
    return value


def _fault_from(item: Any, where: str) -> _Fault:
    if not isinstance(item, dict):
        raise _item_error(where, "must be a JSON object")
    prefix = item.get("path_prefix")
    if not isinstance(prefix, str) or not prefix.startswith("/"):
        raise _item_error(where, '"path_prefix" must be a path such as "/calendar/v3/"')
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


def fault_error(fault: _Fault) -> ApiError:
    """Calendar's error body for a fault."""
    reason = fault.reason or DEFAULT_REASONS.get(fault.status, "backendError")
    message = fault.message or REASON_MESSAGES.get(reason, "Backend Error")
    headers = {}
    if fault.retry_after_s is not None:
        headers["Retry-After"] = str(math.ceil(fault.retry_after_s))
    if reason == "fullSyncRequired":
        return calendar_error(
            fault.status,
            message,
            reason,
            domain="calendar",
            location="syncToken",
            headers=headers,
        )
    domain = "usageLimits" if reason in USAGE_LIMITS else "global"
    return calendar_error(fault.status, message, reason, domain=domain, headers=headers)


# --- query parameters ----------------------------------------------------------------------------


class _Query:
    """events.list parameters (repeated ones keep every value)."""

    def __init__(self, multi: Mapping[str, list[str]]) -> None:
        self.multi = multi

    def has(self, name: str) -> bool:
        return name in self.multi

    def one(self, name: str) -> str | None:
        values = self.multi.get(name)
        return values[-1] if values else None

    def many(self, name: str) -> list[str]:
        return list(self.multi.get(name, []))

    def boolean(self, name: str) -> bool | None:
        text = self.one(name)
        if text is None:
            return None
        if text.lower() in ("true", "false"):
            return text.lower() == "true"
        raise _invalid(f"Invalid boolean value: '{text}'.", name)

    def positive(self, name: str) -> int | None:
        text = self.one(name)
        if text is None:
            return None
        try:
            value = int(text)
        except ValueError:
            raise _invalid(f"Invalid value '{text}'. Values must be integers.", name) from None
        if value < 1:
            raise _invalid(
                f"Invalid value '{text}'. Values must be within the range: [1, 2147483647]", name
            )
        return value

    def time(self, name: str) -> dt.datetime | None:
        text = self.one(name)
        if text is None:
            return None
        try:
            when = parse_rfc3339(text)
        except ValueError:
            raise _bad_request(name) from None
        return when.replace(microsecond=0)  # "Milliseconds may be provided but are ignored."

    def properties(self, name: str) -> list[tuple[str, str]]:
        pairs = []
        for text in self.many(name):
            key, sep, value = text.partition("=")
            if not sep or not key:
                raise _invalid(f"Invalid value for {name}: '{text}' (propertyName=value).", name)
            pairs.append((key, value))
        return pairs

    def scope(self, calendar_id: str) -> str:
        bound = sorted((k, v) for k, vs in self.multi.items() if k not in UNBOUND for v in vs)
        text = json.dumps([calendar_id, bound], separators=(",", ":"))
        return hashlib.sha256(text.encode()).hexdigest()[:24]


def _searchable(item: Mapping[str, Any]) -> str:
    parts: list[str] = [
        str(item.get(field, "")) for field in ("summary", "description", "location")
    ]
    people = [item.get("organizer"), item.get("creator"), *(item.get("attendees") or [])]
    for person in people:
        if isinstance(person, dict):
            parts.extend(str(person.get(f, "")) for f in ("email", "displayName"))
    return "\n".join(parts).lower()


def _properties_match(item: Mapping[str, Any], kind: str, wanted: list[tuple[str, str]]) -> bool:
    props = item.get("extendedProperties")
    values = props.get(kind) if isinstance(props, dict) else None
    if not wanted:
        return True
    if not isinstance(values, dict):
        return False
    return all(values.get(k) == v for k, v in wanted)


# --- the world -----------------------------------------------------------------------------------


class _World:
    """Every calendar, channel, fault and log line, shared by the handler threads."""

    def __init__(self, clock: Callable[[], dt.datetime]) -> None:
        self.lock = threading.RLock()
        self.clock = clock
        self.seq = itertools.count(1)
        self.pending = 0  # deliveries promised (a watch answered) and not finished
        self.idle = threading.Condition(self.lock)
        self.clear()

    def now(self) -> dt.datetime:
        return _utc(self.clock())

    def clear(self) -> None:
        with self.lock:
            self.secret = secrets.token_bytes(32)  # every token issued before is no longer ours
            self.last_seq = 0
            self.sync_epoch = 0
            self.push = True
            self.calendars: dict[str, _Calendar] = {}
            self.channels: dict[str, _Channel] = {}
            self.faults: collections.deque[_Fault] = collections.deque()
            self.log: list[dict[str, Any]] = []
            self.pushes: list[dict[str, Any]] = []

    def _calendar(self, calendar_id: str, now: dt.datetime) -> _Calendar:
        calendar = self.calendars.get(calendar_id)
        if calendar is None:
            calendar = _Calendar(calendar_id, resource_id(calendar_id), now, now)
            self.calendars[calendar_id] = calendar
        return calendar

    @staticmethod
    def _resolve(calendar_id: str, subject: str | None) -> str:
        if calendar_id == "primary":
            if subject is None:
                raise _not_found()
            return subject
        return calendar_id

    # --- tokens ---------------------------------------------------------------------------------

    def _sign(self, data: Mapping[str, Any]) -> str:
        payload = json.dumps(data, separators=(",", ":")).encode()
        mac = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def _unsign(self, token: str) -> dict[str, Any] | None:
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            return None
        payload, mac = raw[:-16], raw[-16:]
        expected = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, expected):
            return None
        data = json.loads(payload)
        return data if isinstance(data, dict) else None

    def _sync_token(self, calendar_id: str, watermark: int) -> str:
        return self._sign({"t": "sync", "c": calendar_id, "w": watermark, "e": self.sync_epoch})

    def _since(self, token: str, calendar_id: str) -> int:
        """The change point of a sync token; 410 when it expired or is not this calendar's."""
        data = self._unsign(token)
        if (
            data is None
            or data.get("t") != "sync"
            or data.get("c") != calendar_id
            or data.get("e") != self.sync_epoch
            or not isinstance(data.get("w"), int)
        ):
            raise _full_sync()
        return int(data["w"])

    def _page_token(self, scope: str, key: tuple[int, str], watermark: int) -> str:
        return self._sign({"t": "page", "s": scope, "k": list(key), "w": watermark})

    def _cursor(self, token: str, scope: str) -> tuple[tuple[int, str], int]:
        data = self._unsign(token)
        if data is None or data.get("t") != "page" or data.get("s") != scope:
            raise _invalid("Invalid page token value.", "pageToken")
        key = data["k"]
        return (int(key[0]), str(key[1])), int(data["w"])

    # --- events.list ----------------------------------------------------------------------------

    def list_events(
        self, calendar_id: str, multi: Mapping[str, list[str]], subject: str | None
    ) -> dict[str, Any]:
        q = _Query(multi)
        with self.lock:
            calendar = self.calendars.get(self._resolve(calendar_id, subject))
            if calendar is None:
                raise _not_found()
            flags = {name: q.boolean(name) for name in BOOLEANS}
            size = min(q.positive("maxResults") or DEFAULT_PAGE, MAX_PAGE)
            max_attendees = q.positive("maxAttendees")
            event_types = q.many("eventTypes")
            for value in event_types:
                if value not in EVENT_TYPES:
                    raise _invalid(f"Invalid event type: {value}", "eventTypes")
            sync, since = q.one("syncToken"), 0
            if sync is not None:
                for name in SYNC_INCOMPATIBLE:
                    if q.has(name):
                        raise _invalid(
                            f"The '{name}' parameter cannot be used together with 'syncToken'.",
                            name,
                        )
                since = self._since(sync, calendar.id)
            order = q.one("orderBy")
            if order not in (None, "startTime", "updated"):
                raise _invalid(f"Invalid value for orderBy: {order}", "orderBy")
            if order == "startTime" and not flags["singleEvents"]:
                raise calendar_error(
                    400,
                    "The requested ordering is not available for the particular query.",
                    "badRequest",
                )
            time_min, time_max = q.time("timeMin"), q.time("timeMax")
            if time_min is not None and time_max is not None and time_max <= time_min:
                raise calendar_error(
                    400,
                    "The specified time range is empty.",
                    "timeRangeEmpty",
                    domain="calendar",
                    location="timeMax",
                )
            updated_min = q.time("updatedMin")
            private = q.properties("privateExtendedProperty")
            shared = q.properties("sharedExtendedProperty")
            text = (q.one("q") or "").lower()
            ical = q.one("iCalUID")
            scope = q.scope(calendar.id)
            watermark, cursor = self.last_seq, None
            token = q.one("pageToken")
            if token:
                cursor, watermark = self._cursor(token, scope)

            def wanted(event: _Event) -> bool:
                if event_types and event.item.get("eventType", "default") not in event_types:
                    return False
                if sync is not None:
                    return since < event.seq <= watermark
                if event.cancelled and not (
                    flags["showDeleted"]
                    or (updated_min is not None and event.updated >= updated_min)
                ):
                    return False
                if updated_min is not None and event.updated < updated_min:
                    return False
                if time_min is not None or time_max is not None:
                    if event.start is None or event.end is None:
                        return False
                    if time_min is not None and not event.end > time_min:
                        return False
                    if time_max is not None and not event.start < time_max:
                        return False
                if ical is not None and event.item.get("iCalUID") != ical:
                    return False
                if text and text not in _searchable(event.item):
                    return False
                return _properties_match(event.item, "private", private) and _properties_match(
                    event.item, "shared", shared
                )

            def key(event: _Event) -> tuple[int, str]:
                if sync is not None:
                    return (event.seq, event.id)
                if order == "updated":
                    return (_epoch_us(event.updated), event.id)
                start = event.start
                return (_epoch_us(start) if start is not None else -(2**62), event.id)

            entries = sorted(
                ((key(e), e) for e in calendar.events.values() if wanted(e)),
                key=lambda pair: pair[0],
            )
            first = 0 if cursor is None else bisect.bisect_right([k for k, _ in entries], cursor)
            chunk = entries[first : first + size]
            more = first + size < len(entries)
            body: dict[str, Any] = {
                "kind": "calendar#events",
                "etag": '"p'
                + hashlib.sha256(f"{scope}:{watermark}".encode()).hexdigest()[:14]
                + '"',
                "summary": calendar.id,
                "description": "",
                "updated": format_time(calendar.updated),
                "timeZone": "UTC",
                "accessRole": "reader",
                "defaultReminders": [],
                "items": [e.shown(max_attendees) for _, e in chunk],
            }
            if more and chunk:
                body["nextPageToken"] = self._page_token(scope, chunk[-1][0], watermark)
            else:
                body["nextSyncToken"] = self._sync_token(calendar.id, watermark)
            return body

    # --- events.watch and channels.stop ---------------------------------------------------------

    def watch(
        self,
        calendar_id: str,
        multi: Mapping[str, list[str]],
        body: Any,
        subject: str | None,
    ) -> tuple[dict[str, Any], _Channel]:
        if not isinstance(body, dict):
            raise _invalid("Invalid channel.")
        channel_id = body.get("id")
        if not isinstance(channel_id, str) or not channel_id:
            raise calendar_error(400, "Required", "required", location="id")
        if not CHANNEL_ID.match(channel_id):
            raise _invalid(
                f"Invalid channel id '{channel_id}': at most 64 characters of "
                "A-Z a-z 0-9 - _ + / =.",
                "id",
            )
        kind = body.get("type")
        if kind is None:
            raise calendar_error(400, "Required", "required", location="type")
        if kind not in ("web_hook", "webhook"):
            raise _invalid(f"Invalid value for type: {kind}", "type")
        address = body.get("address")
        if not isinstance(address, str) or not address:
            raise calendar_error(400, "Required", "required", location="address")
        if not loopback_address(address):
            raise calendar_error(
                400,
                f"Unauthorized WebHook callback channel: {address} (this fake only sends to "
                "http(s) URLs on a loopback address)",
                "push.webhookUrlUnauthorized",
                domain="global",
            )
        token = body.get("token")
        if token is not None and (not isinstance(token, str) or len(token) > MAX_TOKEN_CHARS):
            raise _invalid(f"Invalid channel token: at most {MAX_TOKEN_CHARS} characters.", "token")
        params = body.get("params") or {}
        if not isinstance(params, dict):
            raise _invalid("Invalid channel params.", "params")
        ttl = DEFAULT_TTL
        if params.get("ttl") is not None:
            try:
                seconds = int(str(params["ttl"]))
            except ValueError:
                raise _invalid(f"Invalid ttl value: {params['ttl']}", "params.ttl") from None
            if seconds < 1:
                raise _invalid(f"Invalid ttl value: {params['ttl']}", "params.ttl")
            ttl = dt.timedelta(seconds=seconds)
        with self.lock:
            now = self.now()
            expiration = now + min(ttl, MAX_TTL)
            if body.get("expiration") is not None:
                try:
                    asked = _from_ms(int(str(body["expiration"])))
                except (ValueError, OverflowError):
                    raise _invalid(
                        f"Invalid expiration: {body['expiration']}", "expiration"
                    ) from None
                if asked <= now:
                    raise _invalid("Channel expiration must be in the future.", "expiration")
                expiration = min(expiration, asked)
            expiration = _from_ms(_epoch_ms(expiration))
            if channel_id in self.channels:
                raise calendar_error(
                    400, f"Channel id {channel_id} not unique", "channelIdNotUnique"
                )
            calendar = self._calendar(self._resolve(calendar_id, subject), now)
            channel = _Channel(
                id=channel_id,
                resource_id=calendar.resource_id,
                calendar_id=calendar.id,
                address=address,
                token=token,
                expiration=expiration,
                params={k: list(v) for k, v in multi.items() if k not in SYSTEM_PARAMETERS},
            )
            self.channels[channel_id] = channel
            self._enqueue(channel, "sync", None, forced=False)
            answer: dict[str, Any] = {
                "kind": "api#channel",
                "id": channel.id,
                "resourceId": channel.resource_id,
                "resourceUri": resource_uri(channel.calendar_id),
            }
            if token is not None:
                answer["token"] = token
            answer["expiration"] = channel.expiration_ms()
            return answer, channel

    def stop_channel(self, body: Any) -> None:
        if not isinstance(body, dict):
            raise _invalid("Invalid channel.")
        channel_id, resource = body.get("id"), body.get("resourceId")
        if not isinstance(channel_id, str) or not channel_id:
            raise calendar_error(400, "Required", "required", location="id")
        if not isinstance(resource, str) or not resource:
            raise calendar_error(400, "Required", "required", location="resourceId")
        with self.lock:
            channel = self.channels.get(channel_id)
            if (
                channel is None
                or channel.resource_id != resource
                or not channel.open_at(self.now())
            ):
                raise _not_found(f"Channel '{channel_id}' not found for project 'local'")
            channel.stopped = True

    # --- notifications --------------------------------------------------------------------------

    def _enqueue(
        self,
        channel: _Channel,
        state: str,
        overrides: Mapping[str, str | None] | None,
        *,
        forced: bool,
    ) -> _Notice:
        channel.messages += 1
        headers = channel.headers(state, channel.messages)
        for name, value in (overrides or {}).items():
            for existing in [h for h in headers if h.lower() == name.lower()]:
                del headers[existing]
            if value is not None:
                headers[name] = value
        notice = _Notice(channel.id, channel.address, state, channel.messages, headers, forced)
        channel.queue.append(notice)
        return notice

    def deliver(self, channel: _Channel) -> None:
        """Sends the channel's queued notices in order (unless pushes are held)."""
        with channel.deliver_lock:
            while True:
                with self.lock:
                    if not self.push or not channel.queue:
                        return
                    notice = channel.queue.popleft()
                    outcome = "delivered"
                    if not notice.forced:
                        if channel.stopped:
                            outcome = "stopped"
                        elif not channel.open_at(self.now()):
                            outcome = "expired"
                status = _post(notice.address, notice.headers) if outcome == "delivered" else None
                self._finish(notice, status, outcome)

    def _finish(self, notice: _Notice, status: int | None, outcome: str) -> None:
        notice.status, notice.outcome = status, outcome
        with self.lock:
            self.pushes.append(
                {
                    "channel": notice.channel,
                    "address": notice.address,
                    "state": notice.state,
                    "message_number": notice.message_number,
                    "status": status,
                    "outcome": outcome,
                    "headers": dict(notice.headers),
                }
            )
        notice.done.set()

    def deliver_later(self, channel: _Channel) -> Callable[[], None]:
        """What starts delivering ``channel``'s queue in the background; counted from now, so a
        reset or stop after this call waits for it."""
        with self.lock:
            self.pending += 1

        def run() -> None:
            try:
                self.deliver(channel)
            finally:
                with self.lock:
                    self.pending -= 1
                    self.idle.notify_all()

        return threading.Thread(target=run, name="fake-calendar-push", daemon=True).start

    def _outcome(self, channel: _Channel, notice: _Notice) -> dict[str, Any]:
        """Delivers now (unless held) and says what became of ``notice``."""
        self.deliver(channel)
        if not notice.done.is_set():
            with self.lock:
                held = not self.push
            if held:
                return {"status": None, "held": True}
            notice.done.wait(PUSH_TIMEOUT_S + 5)
        answer: dict[str, Any] = {"status": notice.status}
        if notice.outcome != "delivered":
            answer["outcome"] = notice.outcome
        return answer

    # --- control --------------------------------------------------------------------------------

    def add_events(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise ValueError('body must be {"calendar_id": C, "events": [...]}')
        unknown = sorted(set(body) - {"calendar_id", "events"})
        if unknown:
            raise ValueError(f"unknown keys {unknown}; expected calendar_id and events")
        calendar_id = body.get("calendar_id")
        if not isinstance(calendar_id, str) or not calendar_id or calendar_id == "primary":
            raise ValueError("\"calendar_id\" must be the calendar's id (its owner's email)")
        items = _list_of(body, "events")
        notices: list[tuple[_Channel, _Notice]] = []
        with self.lock:
            now = self.now()
            calendar = self.calendars.get(calendar_id)
            known = dict(calendar.events) if calendar is not None else {}
            checked: list[_Event] = []
            for i, item in enumerate(items):
                if isinstance(item, dict) and "id" not in item:
                    item = {**item, "id": _new_event_id()}
                previous = known.get(item["id"]) if isinstance(item, dict) else None
                # Each change has its own number; numbers drawn for a refused body are skipped.
                event = _check_event(item, f"events[{i}]", previous, now, next(self.seq))
                checked.append(event)
                known[event.id] = event
            calendar = self._calendar(calendar_id, now)
            if checked:
                for event in checked:
                    calendar.events[event.id] = event
                self.last_seq = checked[-1].seq
                calendar.updated = now
                for channel in self.channels.values():
                    if channel.calendar_id == calendar_id and channel.open_at(now):
                        notice = self._enqueue(channel, "exists", None, forced=False)
                        notices.append((channel, notice))
        notified = []
        for channel, notice in notices:
            notified.append({"channel": channel.id, **self._outcome(channel, notice)})
        return {"notified": notified}

    def stored_events(self, calendar_id: str) -> dict[str, Any]:
        with self.lock:
            calendar = self.calendars.get(calendar_id)
            if calendar is None:
                raise ControlError(404, f"no calendar {calendar_id!r}")
            events = sorted(calendar.events.values(), key=lambda e: e.seq)
            return {"events": [copy.deepcopy(e.item) for e in events]}

    def expire_sync_tokens(self) -> None:
        with self.lock:
            self.sync_epoch += 1

    def open_channels(self) -> list[dict[str, Any]]:
        with self.lock:
            now = self.now()
            return [
                {
                    "id": c.id,
                    "resourceId": c.resource_id,
                    "calendar_id": c.calendar_id,
                    "address": c.address,
                    "token": c.token,
                    "expiration": c.expiration_ms(),
                }
                for c in self.channels.values()
                if c.open_at(now)
            ]

    def notify(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or not isinstance(body.get("channel"), str):
            raise ValueError('body must be {"channel": id, "state"?, "headers"?, "address"?}')
        state = body.get("state", "exists")
        if state not in STATES:
            raise ValueError(f'"state" must be one of {sorted(STATES)}')
        overrides = body.get("headers") or {}
        if not isinstance(overrides, dict) or not all(
            isinstance(k, str) and (v is None or isinstance(v, str)) for k, v in overrides.items()
        ):
            raise ValueError('"headers" must map header names to strings (or null to remove)')
        address = body.get("address")
        if address is not None and (not isinstance(address, str) or not loopback_address(address)):
            raise ValueError(f"refusing a non-loopback address: {address!r}")
        with self.lock:
            channel = self.channels.get(body["channel"])
            if channel is not None:
                notice = self._enqueue(channel, state, overrides, forced=True)
                if address is not None:
                    notice.address = address
        if channel is not None:
            return {**self._outcome(channel, notice), "headers": dict(notice.headers)}
        if address is None:
            raise ControlError(404, f"no channel {body['channel']!r}; pass an address")
        headers = {
            "X-Goog-Channel-ID": body["channel"],
            "X-Goog-Resource-State": state,
            "X-Goog-Message-Number": "1",
        }
        for name, value in overrides.items():
            headers.pop(name, None)
            if value is not None:
                headers[name] = value
        forged = _Notice(body["channel"], address, state, 1, headers, True)
        self._finish(forged, _post(address, headers), "delivered")
        return {"status": forged.status, "headers": headers}

    def configure(self, body: Any) -> dict[str, Any]:
        if not isinstance(body, dict) or set(body) - {"push"}:
            raise ValueError('body must be {"push": true|false}')
        push = body.get("push")
        if push is not None and not isinstance(push, bool):
            raise ValueError('"push" must be true or false')
        if push is None:
            return self.config()
        with self.lock:
            self.push = push
            pending = (
                [(c, list(c.queue)) for c in self.channels.values() if c.queue] if push else []
            )
        flushed = []
        for channel, notices in pending:
            self.deliver(channel)
            for notice in notices:
                notice.done.wait(PUSH_TIMEOUT_S + 5)
                flushed.append(
                    {
                        "channel": channel.id,
                        "state": notice.state,
                        "message_number": notice.message_number,
                        "status": notice.status,
                        "outcome": notice.outcome,
                    }
                )
        return {**self.config(), "flushed": flushed}

    def config(self) -> dict[str, Any]:
        with self.lock:
            held = sum(len(c.queue) for c in self.channels.values())
            return {"push": self.push, "held": held}

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

    def push_log(self) -> list[dict[str, Any]]:
        with self.lock:
            return copy.deepcopy(self.pushes)

    def quiesce(self, timeout_s: float) -> None:
        """Waits (at most ``timeout_s``) until no background delivery is left."""
        with self.lock:
            self.idle.wait_for(lambda: self.pending == 0, timeout=timeout_s)

    def reset(self) -> None:
        """Clears everything once nothing promised before is still on its way."""
        self.quiesce(PUSH_TIMEOUT_S)
        self.clear()


# --- sending -------------------------------------------------------------------------------------


def _post(address: str, headers: Mapping[str, str]) -> int:
    """POSTs a notification (no body) to a loopback address; its HTTP status, 0 when none.

    http.client directly: no proxies, no redirects, and no Content-Type on an empty body."""
    if not loopback_address(address):
        raise ValueError(f"refusing a non-loopback address: {address!r}")
    parts = urlsplit(address)
    host = parts.hostname or LOOPBACK_HOST
    path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    connection: http.client.HTTPConnection
    if parts.scheme == "https":
        connection = http.client.HTTPSConnection(
            host, parts.port, timeout=PUSH_TIMEOUT_S, context=ssl.create_default_context()
        )
    else:
        connection = http.client.HTTPConnection(host, parts.port, timeout=PUSH_TIMEOUT_S)
    try:
        connection.request(
            "POST", path, body=b"", headers={"User-Agent": USER_AGENT, **dict(headers)}
        )
        response = connection.getresponse()
        response.read()
        return int(response.status)
    except (OSError, http.client.HTTPException):
        return 0
    finally:
        connection.close()


# --- HTTP ----------------------------------------------------------------------------------------

_EVENTS = re.compile(r"^/calendar/v3/calendars/([^/]+)/events$")
_WATCH = re.compile(r"^/calendar/v3/calendars/([^/]+)/events/watch$")
_STOP = "/calendar/v3/channels/stop"


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Keep-alive responses are small writes: without TCP_NODELAY each waits for the client's
    # delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # the request log lives in /_fake/calendar/requests

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
        raw = self.rfile.read(length) if length else b""
        multi: dict[str, list[str]] = {}
        for name, value in parse_qsl(split.query, keep_blank_values=True):
            multi.setdefault(name, []).append(value)
        if split.path.startswith("/_fake/"):
            self._control(method, split.path, multi, raw)
            return
        authorization = self.headers.get("Authorization")
        subject = _subject(authorization)
        world = self.server.world
        after: Callable[[], None] | None = None
        try:
            fault = world.take_fault(split.path)
            if fault is not None:
                raise fault_error(fault)
            if not authorization or not authorization.startswith("Bearer "):
                raise _login_required()
            status, payload, after = self._call(method, split.path, multi, raw, subject)
            headers: Mapping[str, str] = {}
        except ApiError as err:
            status, payload, headers = err.code, err.body, err.headers
        # Logged before answering, so a client that has its response always finds it in the log.
        world.record(
            {
                "method": method,
                "path": split.path,
                "query": {k: v[0] if len(v) == 1 else list(v) for k, v in multi.items()},
                "status": status,
                "subject": subject,
            }
        )
        self._send(status, payload, headers)
        if after is not None:
            after()

    def _call(
        self,
        method: str,
        path: str,
        multi: dict[str, list[str]],
        raw: bytes,
        subject: str | None,
    ) -> tuple[int, Any, Callable[[], None] | None]:
        world = self.server.world
        tree = None
        fields = (multi.get("fields") or [""])[-1]
        if fields:
            try:
                tree = parse_fields(fields)
            except ValueError:
                raise _invalid(f"Invalid field selection {fields}", "fields") from None
        body: Any = None
        if method == "POST":
            try:
                body = json.loads(raw) if raw else {}
            except ValueError:
                raise calendar_error(400, "Parse Error", "parseError") from None
        events = _EVENTS.match(path)
        if events and method == "GET":
            result = world.list_events(unquote(events.group(1)), multi, subject)
            return 200, apply_fields(result, tree), None
        watch = _WATCH.match(path)
        if watch and method == "POST":
            answer, channel = world.watch(unquote(watch.group(1)), multi, body, subject)
            return 200, apply_fields(answer, tree), world.deliver_later(channel)
        if path == _STOP and method == "POST":
            world.stop_channel(body)
            return 204, None, None
        if not path.startswith(API_PREFIX):
            raise _not_found(
                "Not Found (Calendar is served under /calendar/v3/: the client's api_endpoint "
                "must end in calendar/v3/)"
            )
        raise _not_found()

    def _send(self, status: int, payload: Any, headers: Mapping[str, str] | None = None) -> None:
        data = b"" if status == 204 else json.dumps(payload).encode()
        self.send_response(status)
        if status != 204:
            self.send_header("Content-Type", "application/json; charset=UTF-8")
        self.send_header("Content-Length", str(len(data)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        try:
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True

    def _control(self, method: str, path: str, multi: dict[str, list[str]], raw: bytes) -> None:
        world = self.server.world
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        try:
            route = (method, path.rstrip("/"))
            if route == ("POST", "/_fake/calendar/events"):
                self._send(200, world.add_events(payload))
            elif route == ("GET", "/_fake/calendar/events"):
                calendar_id = (multi.get("calendar_id") or [""])[-1]
                self._send(200, world.stored_events(calendar_id))
            elif route == ("POST", "/_fake/calendar/expire-sync-tokens"):
                world.expire_sync_tokens()
                self._send(200, {"ok": True})
            elif route == ("GET", "/_fake/calendar/channels"):
                self._send(200, {"channels": world.open_channels()})
            elif route == ("POST", "/_fake/calendar/notify"):
                self._send(200, world.notify(payload))
            elif route == ("POST", "/_fake/calendar/config"):
                self._send(200, world.configure(payload))
            elif route == ("GET", "/_fake/calendar/config"):
                self._send(200, world.config())
            elif route == ("GET", "/_fake/calendar/pushes"):
                self._send(200, world.push_log())
            elif route == ("POST", "/_fake/calendar/faults"):
                self._send(200, {"added": world.add_faults(payload)})
            elif route == ("DELETE", "/_fake/calendar/faults"):
                world.clear_faults()
                self._send(200, {"ok": True})
            elif route == ("POST", "/_fake/calendar/reset"):
                world.reset()
                self._send(200, {"ok": True})
            elif route == ("GET", "/_fake/calendar/requests"):
                self._send(200, world.requests())
            elif route in (("GET", "/_fake/calendar/health"), ("GET", "/_fake/health")):
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": f"no control endpoint {method} {path}"})
        except ControlError as exc:
            self._send(exc.status, {"error": str(exc)})
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], world: _World) -> None:
        super().__init__(address, _Handler)
        self.world = world


class FakeCalendarServer:
    """The fake Calendar API v3 server; see the module docstring."""

    def __init__(self, *, port: int = 0, clock: Callable[[], dt.datetime] | None = None) -> None:
        self._port = port
        self._world = _World(clock or _utc_now)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server((LOOPBACK_HOST, self._port), self._world)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-calendar", daemon=True
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
        self._world.quiesce(timeout_s=5)

    def __enter__(self) -> FakeCalendarServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        return f"http://{LOOPBACK_HOST}:{self._server.server_address[1]}/"

    @property
    def api_endpoint(self) -> str:
        """What ``client_options={"api_endpoint": ...}`` must be (it ends in calendar/v3/)."""
        return self.url + API_PREFIX.lstrip("/")

    # In-process equivalents of the control endpoints.

    def add_events(self, calendar_id: str, events: list[dict[str, Any]]) -> dict[str, Any]:
        """``POST /_fake/calendar/events``."""
        return self._world.add_events({"calendar_id": calendar_id, "events": events})

    def expire_sync_tokens(self) -> None:
        self._world.expire_sync_tokens()

    def channels(self) -> list[dict[str, Any]]:
        return self._world.open_channels()

    def notify(self, channel: str, state: str = "exists", **extra: Any) -> dict[str, Any]:
        try:
            return self._world.notify({"channel": channel, "state": state, **extra})
        except ControlError as exc:
            raise RuntimeError(str(exc)) from exc

    def configure(self, **config: Any) -> dict[str, Any]:
        return self._world.configure(config)

    def add_faults(self, *faults: Mapping[str, Any]) -> None:
        self._world.add_faults({"faults": [dict(f) for f in faults]})

    def requests(self) -> list[dict[str, Any]]:
        return self._world.requests()

    def pushes(self) -> list[dict[str, Any]]:
        return self._world.push_log()

    def reset(self) -> None:
        self._world.reset()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.fake_calendar", description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = FakeCalendarServer(port=args.port)
    server.start()
    print(f"fake-calendar ready url={server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
