"""A faithful local stand-in for the Admin SDK Reports API (`activities.list`, application `meet`).

The stock `googleapiclient` client talks to it unchanged through
``client_options={"api_endpoint": server.url}``. Behaviour follows shared/reference/google-apis.md:
newest first, opaque page tokens, inclusive `startTime`/`endTime` on `id.time`, `eventName`, the six
filter operators, `fields` partial responses and Google's JSON error bodies.

Control endpoints (not part of Google's API, never logged as Reports requests):

- ``POST /_fake/activities`` ``{"activities": [...], "visible_after_s": 0}``; an item may carry its
  own ``visible_after_s`` (stripped before serving). An item may also carry ``list_time`` (RFC
  3339, stripped before serving): the time it is listed under (order, ``startTime``/``endTime``)
  instead of its ``id.time``, so that items whose ``id.time`` is missing or malformed — which
  Google never sends, and clients must survive — can be served.
- ``POST /_fake/reset`` clears activities, faults, the configuration and the request log.
- ``GET /_fake/requests`` → ``[{"method", "path", "query", "status"}]`` where ``query`` is a dict
  of parameter name → value (a repeated parameter keeps its last value) and ``path`` has no query
  string.
- ``POST /_fake/faults`` ``{"kind", "count", "retry_after_s", "delay_s", "after_pages"}``;
  ``DELETE /_fake/faults`` clears them. Faults are taken first in, first out; each answers
  ``count`` requests. ``after_pages: N`` (default 0) makes a fault wait until N pages of one
  listing were served: it fires only for a request carrying the ``pageToken`` of page N + 1 or a
  later one, so ``after_pages: 1`` is a failure mid-pagination, after a successful first page.
  Requests it does not apply to pass it by (an earlier fault that applies is taken instead).
  Kinds: ``quota`` (503), ``rate_limit_403``, ``rate_limit_429``, ``server_error`` (500),
  ``not_admin`` (401), ``not_authorized`` (403, an admin without the Reports privilege),
  ``api_disabled`` (403 ``accessNotConfigured`` / ``SERVICE_DISABLED``), ``insufficient_scopes``
  (403 ``insufficientPermissions`` / ``ACCESS_TOKEN_SCOPE_INSUFFICIENT``) and ``slow``.
- ``POST /_fake/config`` ``{"max_page_size": N}`` (1…1000, ``null`` for 1000) caps every page
  at N items whatever ``maxResults`` asks (the real API may serve fewer items than
  ``maxResults``), so tests can page through a few activities; ``GET /_fake/config`` shows it.
- ``GET /_fake/health`` → ``{"ok": true}``.

Run alone with ``python -m local.fake_reports --port P``.
"""

from __future__ import annotations

import argparse
import base64
import bisect
import collections
import dataclasses
import datetime as dt
import hashlib
import hmac
import itertools
import json
import math
import re
import secrets
import signal
import sys
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

RETENTION = dt.timedelta(days=180)
MAX_RESULTS = 1000
REPORTS_PATH = re.compile(r"^/admin/reports/v1/activity/users/([^/]+)/applications/([^/]+)$")
RFC3339 = re.compile(
    r"^(\d{4})-(\d\d)-(\d\d)[Tt](\d\d):(\d\d):(\d\d)(\.\d+)?([Zz]|[-+]\d\d:\d\d)$",
)
FILTER = re.compile(r"^\s*([A-Za-z0-9_]+)\s*(==|<>|<=|>=|<|>)(.*)$")


def _names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# Applications the real API accepts: anything else is a 400, these answer an empty list here.
APPLICATIONS = _names(
    """access_evaluation access_transparency admin admin_data_action assignments calendar chat
    chrome classroom cloud_search contacts context_aware_access data_studio data_migration
    directory_sync drive gcp gmail gplus graduation groups groups_enterprise jamboard keep ldap
    login
    meet meet_hardware mobile profile rules saml token user_accounts vault gemini_in_workspace_apps
    tasks takeout voice chrome_sync workspace_studio gemini_notebook"""
)

CALL_ENDED_PARAMETERS = _names(
    """identifier identifier_type display_name endpoint_id device_type is_external meeting_code
    conference_id calendar_event_id organizer_email duration_seconds ip_address location_country
    location_region product_type network_transport_protocol network_congestion
    network_estimated_download_kbps_mean
    network_estimated_upload_kbps_mean network_recv_jitter_msec_max network_recv_jitter_msec_mean
    network_rtt_msec_mean network_send_jitter_msec_mean audio_recv_seconds audio_send_seconds
    audio_recv_packet_loss_max audio_recv_packet_loss_mean audio_send_bitrate_kbps_mean
    audio_send_packet_loss_max audio_send_packet_loss_mean video_recv_seconds video_send_seconds
    video_recv_fps_mean video_send_fps_mean video_recv_long_side_median_pixels
    video_recv_short_side_median_pixels video_send_long_side_median_pixels
    video_send_short_side_median_pixels video_recv_packet_loss_max video_recv_packet_loss_mean
    video_send_bitrate_kbps_mean video_send_packet_loss_max video_send_packet_loss_mean
    screencast_recv_seconds screencast_send_seconds screencast_recv_fps_mean
    screencast_send_fps_mean
    screencast_recv_bitrate_kbps_mean screencast_send_bitrate_kbps_mean
    screencast_recv_long_side_median_pixels screencast_recv_short_side_median_pixels
    screencast_recv_packet_loss_max screencast_recv_packet_loss_mean
    screencast_send_long_side_median_pixels screencast_send_short_side_median_pixels
    screencast_send_packet_loss_max screencast_send_packet_loss_mean"""
)

# Parameters of other Meet events (best effort: the reference only lists call_ended in full).
# They matter because a known parameter that does not belong to the requested event empties the
# result, whereas a parameter unknown to every Meet event is ignored.
OTHER_MEET_PARAMETERS = _names(
    """livestream_view_page_id streaming_session_state action_description action_reason
    target_display_names target_email target_phone_number target_user_count
    is_recurring_meeting broadcast_state"""
)

KNOWN_EVENT_PARAMETERS: Mapping[str, frozenset[str]] = {"call_ended": CALL_ENDED_PARAMETERS}

FAULT_KINDS = frozenset(
    {
        "quota",
        "rate_limit_403",
        "rate_limit_429",
        "server_error",
        "not_admin",
        "not_authorized",
        "api_disabled",
        "insufficient_scopes",
        "slow",
    }
)
ERROR_INFO = "type.googleapis.com/google.rpc.ErrorInfo"
#: The project number the ``api_disabled`` fault names, as Google's message names the consumer.
FAKE_PROJECT_NUMBER = "123456789012"


class ApiError(Exception):
    """An error answered as Google's JSON error body."""

    def __init__(
        self,
        code: int,
        message: str,
        *,
        reason: str,
        status: str,
        domain: str = "global",
        headers: Mapping[str, str] | None = None,
        extra: Mapping[str, str] | None = None,
        details: list[dict[str, Any]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.reason = reason
        self.status = status
        self.domain = domain
        self.headers = dict(headers or {})
        self.extra = dict(extra or {})
        self.details = list(details or [])

    def body(self) -> dict[str, Any]:
        detail: dict[str, Any] = {"message": self.message, "domain": self.domain}
        detail["reason"] = self.reason
        detail.update(self.extra)
        error: dict[str, Any] = {
            "code": self.code,
            "message": self.message,
            "errors": [detail],
            "status": self.status,
        }
        if self.details:
            error["details"] = self.details
        return {"error": error}


def _invalid(message: str) -> ApiError:
    return ApiError(400, message, reason="invalid", status="INVALID_ARGUMENT")


def parse_rfc3339(text: str) -> dt.datetime:
    """Parses an RFC 3339 timestamp into an aware datetime; ValueError when malformed."""
    m = RFC3339.match(text)
    if not m:
        raise ValueError(f"not an RFC 3339 timestamp: {text!r}")
    frac = m.group(7) or ""
    micro = int((frac[1:] + "000000")[:6]) if frac else 0
    zone = m.group(8)
    if zone in ("Z", "z"):
        tz = dt.UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = dt.timezone(sign * dt.timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    return dt.datetime(
        int(m.group(1)),
        int(m.group(2)),
        int(m.group(3)),
        int(m.group(4)),
        int(m.group(5)),
        int(m.group(6)),
        micro,
        tzinfo=tz,
    )


def _epoch_us(when: dt.datetime) -> int:
    delta = when - dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
    return (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds


# --- fields= partial responses -------------------------------------------------------------------

FieldTree = dict[str, "FieldTree | None"]


def parse_fields(text: str) -> FieldTree:
    """Parses Google's partial-response syntax: ``a,b/c,d(e,f(g))``; ``*`` selects everything.

    Returns a tree mapping a key to its sub-selection, ``None`` meaning "the whole value".
    """
    pos = 0

    def merge(tree: FieldTree, path: list[str], sub: FieldTree | None) -> None:
        node = tree
        for key in path[:-1]:
            child = node.get(key, {})
            if child is None:
                return  # already selected whole
            node[key] = child
            node = child
        last = path[-1]
        if sub is None or node.get(last, {}) is None:
            node[last] = None
            return
        existing = node.get(last)
        if existing is None:
            node[last] = sub
        else:
            for k, v in sub.items():
                merge(existing, [k], v)

    def selection(depth: int) -> FieldTree:
        nonlocal pos
        tree: FieldTree = {}
        while True:
            m = re.compile(r"[A-Za-z0-9_*]+(?:/[A-Za-z0-9_*]+)*").match(text, pos)
            if not m:
                raise ValueError(f"invalid field selection at {pos}")
            path = m.group(0).split("/")
            pos = m.end()
            sub: FieldTree | None = None
            if pos < len(text) and text[pos] == "(":
                pos += 1
                sub = selection(depth + 1)
                if pos >= len(text) or text[pos] != ")":
                    raise ValueError("unbalanced parentheses in field selection")
                pos += 1
            merge(tree, path, sub)
            if pos >= len(text):
                if depth:
                    raise ValueError("unbalanced parentheses in field selection")
                return tree
            if text[pos] == ",":
                pos += 1
                continue
            if text[pos] == ")" and depth:
                return tree
            raise ValueError(f"invalid field selection at {pos}")

    text = text.replace(" ", "")
    if not text:
        raise ValueError("empty field selection")
    return selection(0)


def apply_fields(value: Any, tree: FieldTree | None) -> Any:
    if tree is None:
        return value
    if isinstance(value, list):
        return [apply_fields(v, tree) for v in value]
    if not isinstance(value, dict):
        return value
    if "*" in tree:
        sub = tree["*"]
        return {k: apply_fields(v, tree.get(k, sub)) for k, v in value.items()}
    return {k: apply_fields(value[k], sub) for k, sub in tree.items() if k in value}


# --- storage -------------------------------------------------------------------------------------


@dataclasses.dataclass(slots=True)
class _Stored:
    # Ascending order of (-time, seq) is newest first, ties in the order they were posted.
    key: tuple[int, int]
    visible_at: float
    item: dict[str, Any]
    actor_email: str
    profile_id: str
    event_names: frozenset[str]


def _sort_key(s: _Stored) -> tuple[int, int]:
    return s.key


@dataclasses.dataclass(frozen=True)
class _Filter:
    name: str
    op: str
    value: str

    def matches(self, parameters: Iterable[Mapping[str, Any]]) -> bool:
        for p in parameters:
            if p.get("name") != self.name:
                continue
            if "intValue" in p:
                try:
                    left: Any = int(p["intValue"])
                    right: Any = int(self.value)
                except (TypeError, ValueError):
                    return False
            elif "boolValue" in p:
                left, right = str(bool(p["boolValue"])).lower(), self.value.lower()
            elif "value" in p:
                left, right = str(p["value"]), self.value
            else:
                return False
            return bool(_OPS[self.op](left, right))
        return False


_OPS: Mapping[str, Any] = {
    "==": lambda a, b: a == b,
    "<>": lambda a, b: a != b,
    "<": lambda a, b: a < b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    ">=": lambda a, b: a >= b,
}


@dataclasses.dataclass
class _Fault:
    kind: str
    remaining: int
    retry_after_s: float | None
    delay_s: float
    after_pages: int = 0


class _State:
    """Activities, faults and the request log, shared by the handler threads."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.seq = itertools.count()
        self.secret = secrets.token_bytes(32)
        self.clear()

    def clear(self) -> None:
        with self.lock:
            # Lists are replaced, never mutated, so readers can use a snapshot without the lock.
            self.ordered: list[_Stored] = []
            self.by_code: dict[str, list[_Stored]] = {}
            self.seen_parameters: dict[str, frozenset[str]] = {}
            self.faults: collections.deque[_Fault] = collections.deque()
            self.log: list[dict[str, Any]] = []
            self.max_page_size = MAX_RESULTS

    def add(self, items: list[dict[str, Any]], visible_after_s: float) -> None:
        now = time.monotonic()
        stored: list[_Stored] = []
        codes: dict[str, list[_Stored]] = {}
        seen: dict[str, set[str]] = {}
        for raw in items:
            if not isinstance(raw, dict):
                raise ValueError("each activity must be a JSON object")
            item = dict(raw)
            delay = item.pop("visible_after_s", visible_after_s)
            listed = item.pop("list_time", None)
            try:
                when = parse_rfc3339(listed if listed is not None else item["id"]["time"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(
                    f"activity needs an RFC 3339 id.time (or list_time): {exc}"
                ) from exc
            actor = item.get("actor") or {}
            events = [e for e in item.get("events") or [] if isinstance(e, dict)]
            entry = _Stored(
                key=(-_epoch_us(when), next(self.seq)),
                visible_at=now + float(delay or 0),
                item=item,
                actor_email=str(actor.get("email", "")).lower(),
                profile_id=str(actor.get("profileId", "")),
                event_names=frozenset(str(e.get("name")) for e in events),
            )
            stored.append(entry)
            entry_codes: set[str] = set()
            for event in events:
                names = seen.setdefault(str(event.get("name")), set())
                for p in event.get("parameters") or []:
                    names.add(str(p.get("name")))
                    if p.get("name") == "meeting_code" and "value" in p:
                        entry_codes.add(str(p["value"]))
            for code in entry_codes:
                codes.setdefault(code, []).append(entry)
        with self.lock:
            self.ordered = sorted([*self.ordered, *stored], key=_sort_key)
            by_code = dict(self.by_code)
            for code, entries in codes.items():
                by_code[code] = sorted([*by_code.get(code, []), *entries], key=_sort_key)
            self.by_code = by_code
            merged = dict(self.seen_parameters)
            for name, params in seen.items():
                merged[name] = merged.get(name, frozenset()) | params
            self.seen_parameters = merged

    def add_fault(self, fault: _Fault) -> None:
        with self.lock:
            self.faults.append(fault)

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def configure(self, max_page_size: int) -> None:
        with self.lock:
            self.max_page_size = max_page_size

    def config(self) -> dict[str, Any]:
        with self.lock:
            return {"max_page_size": self.max_page_size}

    def take_fault(self, pages_before: int = 0) -> _Fault | None:
        """The first fault that applies to a request for page ``pages_before + 1`` of a listing."""
        with self.lock:
            fault = next((f for f in self.faults if f.after_pages <= pages_before), None)
            if fault is None:
                return None
            fault.remaining -= 1
            if fault.remaining <= 0:
                self.faults.remove(fault)
            return fault

    def record(self, entry: dict[str, Any]) -> None:
        with self.lock:
            self.log.append(entry)

    def requests(self) -> list[dict[str, Any]]:
        with self.lock:
            return [dict(e) for e in self.log]

    # --- the list method --------------------------------------------------------------------

    def list_activities(self, user_key: str, application: str, q: Mapping[str, str]) -> Any:
        if application not in APPLICATIONS:
            raise _invalid(f"Invalid value '{application}'. Values must match the pattern.")
        max_results = MAX_RESULTS
        if "maxResults" in q:
            try:
                max_results = int(q["maxResults"])
            except ValueError:
                raise _invalid(f"Invalid value '{q['maxResults']}' for maxResults") from None
            if not 1 <= max_results <= MAX_RESULTS:
                raise _invalid(
                    f"Invalid value '{max_results}'. Values must be within the range: [1, 1000]"
                )
        now = dt.datetime.now(dt.UTC)
        start = self._time(q, "startTime")
        end = self._time(q, "endTime")
        if start is not None:
            if start > now:
                raise _invalid("Start time must be less than or equal to the current time.")
            if start < now - RETENTION:
                raise _invalid("Start time is beyond the 180 days data retention period.")
        if start is not None and end is not None and end < start:
            raise _invalid("Start time must be less than or equal to end time.")
        event_name = q.get("eventName") or None
        filters = self._filters(q.get("filters", ""))
        tree = None
        if "fields" in q:
            try:
                tree = parse_fields(q["fields"])
            except ValueError as exc:
                raise _invalid(f"Invalid field selection: {exc}") from None
        query_id = self._query_id(user_key, application, q)
        cursor, pages_before = (
            self._cursor(q["pageToken"], query_id) if "pageToken" in q else (None, 0)
        )
        max_results = min(max_results, self.max_page_size)

        items: list[dict[str, Any]] = []
        keys: list[tuple[int, int]] = []
        next_token = None
        empty = application != "meet" or self._excluded(event_name, filters)
        if not empty:
            candidates = self.ordered
            for f in filters:
                if f.name == "meeting_code" and f.op == "==":
                    candidates = self.by_code.get(f.value, [])
                    break
            lo = (
                0
                if end is None
                else bisect.bisect_left(candidates, (-_epoch_us(end), -1), key=_sort_key)
            )
            if cursor is not None:
                lo = max(lo, bisect.bisect_right(candidates, cursor, key=_sort_key))
            hi = len(candidates)
            if start is not None:
                hi = bisect.bisect_right(
                    candidates, (-_epoch_us(start), sys.maxsize), key=_sort_key
                )
            matched = self._matching(candidates, lo, hi, user_key, event_name, filters)
            last_key = (0, 0)
            for entry in matched:
                if len(items) == max_results:
                    next_token = self._token(last_key, query_id, pages_before + 1)
                    break
                items.append(entry.item)
                keys.append(entry.key)
                last_key = entry.key
        body: dict[str, Any] = {"kind": "admin#reports#activities"}
        if items:
            body["items"] = items
        if next_token:
            body["nextPageToken"] = next_token
        # The page's identity: its activities (stored once, never changed, each key its own)
        # and its token. Hashing their keys names the same page as hashing the whole body,
        # without encoding a page of 1,000 activities a third time.
        digest = hashlib.sha256(repr((keys, next_token)).encode()).hexdigest()[:16]
        body = {"kind": body["kind"], "etag": f'"{digest}"', **body}
        return apply_fields(body, tree)

    def _matching(
        self,
        candidates: list[_Stored],
        lo: int,
        hi: int,
        user_key: str,
        event_name: str | None,
        filters: list[_Filter],
    ) -> Iterator[_Stored]:
        now = time.monotonic()
        user = user_key.lower()
        for i in range(lo, hi):
            entry = candidates[i]
            if entry.visible_at > now:
                continue
            if user != "all" and user not in (entry.actor_email, entry.profile_id):
                continue
            if event_name is not None and event_name not in entry.event_names:
                continue
            if filters and not self._passes(entry, event_name, filters):
                continue
            yield entry

    @staticmethod
    def _passes(entry: _Stored, event_name: str | None, filters: list[_Filter]) -> bool:
        for event in entry.item.get("events") or []:
            if event_name is not None and event.get("name") != event_name:
                continue
            params = event.get("parameters") or []
            if all(f.matches(params) for f in filters):
                return True
        return False

    def _excluded(self, event_name: str | None, filters: list[_Filter]) -> bool:
        """A known parameter that does not belong to the requested event empties the result."""
        if event_name is None:
            return False
        own = KNOWN_EVENT_PARAMETERS.get(event_name, frozenset()) | self.seen_parameters.get(
            event_name, frozenset()
        )
        return any(f.name not in own for f in filters)

    def _filters(self, text: str) -> list[_Filter]:
        if not text.strip():
            return []
        known = set(OTHER_MEET_PARAMETERS)
        for names in (*KNOWN_EVENT_PARAMETERS.values(), *self.seen_parameters.values()):
            known |= names
        out = []
        for part in text.split(","):
            m = FILTER.match(part)
            if not m:
                raise _invalid(f"Invalid value '{text}' for filters.")
            name, op, value = m.group(1), m.group(2), m.group(3).strip()
            # Unknown to every Meet event: the real API ignores it rather than failing.
            if name in known:
                out.append(_Filter(name, op, value))
        return out

    @staticmethod
    def _time(q: Mapping[str, str], name: str) -> dt.datetime | None:
        if name not in q:
            return None
        try:
            return parse_rfc3339(q[name])
        except ValueError:
            raise _invalid(f"Invalid value '{q[name]}' for {name}.") from None

    def _query_id(self, user_key: str, application: str, q: Mapping[str, str]) -> str:
        parts = [user_key, application] + [
            q.get(k, "") for k in ("eventName", "filters", "startTime", "endTime")
        ]
        return hashlib.sha256("\x00".join(parts).encode()).hexdigest()[:16]

    def _token(self, key: tuple[int, int], query_id: str, pages: int) -> str:
        # The cursor is the key of the last item served: the next page starts strictly after it.
        # ``p`` counts the pages of the listing served so far (what ``after_pages`` faults need).
        payload = json.dumps(
            {"k": list(key), "q": query_id, "p": pages}, separators=(",", ":")
        ).encode()
        mac = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        return base64.urlsafe_b64encode(payload + mac).decode().rstrip("=")

    def _token_data(self, token: str) -> dict[str, Any]:
        bad = _invalid("Invalid value for pageToken.")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        except ValueError:
            raise bad from None
        payload, mac = raw[:-16], raw[-16:]
        expected = hmac.new(self.secret, payload, hashlib.sha256).digest()[:16]
        if len(raw) <= 16 or not hmac.compare_digest(mac, expected):
            raise bad
        data = json.loads(payload)
        if not isinstance(data, dict):
            raise bad
        return data

    def _cursor(self, token: str, query_id: str) -> tuple[tuple[int, int], int]:
        """The key of the last item served and the number of pages served before this one."""
        data = self._token_data(token)
        if data.get("q") != query_id:
            raise _invalid("Invalid value for pageToken.")
        return (int(data["k"][0]), int(data["k"][1])), int(data.get("p", 1))

    def pages_before(self, q: Mapping[str, str]) -> int:
        """How many pages of its listing were served before this request (0: the first page, or
        a token that is not ours, which the listing itself refuses)."""
        if "pageToken" not in q:
            return 0
        try:
            return int(self._token_data(q["pageToken"]).get("p", 1))
        except (ApiError, ValueError, TypeError):
            return 0


# --- faults --------------------------------------------------------------------------------------


def _retry_after(fault: _Fault, default: float | None) -> dict[str, str]:
    seconds = fault.retry_after_s if fault.retry_after_s is not None else default
    if seconds is None:
        return {}
    # Retry-After carries whole seconds; rounding up never invites a retry too early.
    return {"Retry-After": str(max(0, math.ceil(seconds)))}


def fault_error(fault: _Fault) -> ApiError | None:
    """The error a fault answers with, or None for `slow`, which answers normally."""
    kind = fault.kind
    if kind == "quota":
        return ApiError(
            503,
            "Quota exceeded for quota metric 'Queries' and limit 'Queries per minute per user' "
            "of service 'admin.googleapis.com'.",
            reason="quotaExceeded",
            domain="usageLimits",
            status="UNAVAILABLE",
            headers=_retry_after(fault, 1),
        )
    if kind == "rate_limit_403":
        return ApiError(
            403,
            "User Rate Limit Exceeded",
            reason="userRateLimitExceeded",
            domain="usageLimits",
            status="PERMISSION_DENIED",
            headers=_retry_after(fault, None),
        )
    if kind == "rate_limit_429":
        return ApiError(
            429,
            "Rate Limit Exceeded",
            reason="rateLimitExceeded",
            domain="usageLimits",
            status="RESOURCE_EXHAUSTED",
            headers=_retry_after(fault, 1),
        )
    if kind == "server_error":
        return ApiError(
            500,
            "Backend Error",
            reason="backendError",
            status="INTERNAL",
            headers=_retry_after(fault, None),
        )
    if kind == "not_admin":
        return ApiError(
            401,
            "Access denied. You are not authorized to read activity records.",
            reason="authError",
            status="UNAUTHENTICATED",
            extra={"location": "Authorization", "locationType": "header"},
        )
    if kind == "not_authorized":
        return ApiError(
            403,
            "Not Authorized to access this resource/api",
            reason="forbidden",
            status="PERMISSION_DENIED",
        )
    if kind == "api_disabled":
        return _api_disabled()
    if kind == "insufficient_scopes":
        return ApiError(
            403,
            "Request had insufficient authentication scopes.",
            reason="insufficientPermissions",
            status="PERMISSION_DENIED",
            extra={"message": "Insufficient Permission"},
            details=[
                {
                    "@type": ERROR_INFO,
                    "reason": "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
                    "domain": "googleapis.com",
                    "metadata": {
                        "service": "admin.googleapis.com",
                        "method": "ccc.hosted.frontend.reports.v1.ActivityService.List",
                    },
                }
            ],
        )
    return None


def _api_disabled() -> ApiError:
    """The 403 of a project where the Admin SDK API is not enabled."""
    project = FAKE_PROJECT_NUMBER
    return ApiError(
        403,
        f"Admin SDK API has not been used in project {project} before or it is disabled. Enable "
        f"it by visiting https://console.developers.google.com/apis/api/admin.googleapis.com/"
        f"overview?project={project} then retry. If you enabled this API recently, wait a few "
        "minutes for the action to propagate to our systems and retry.",
        reason="accessNotConfigured",
        domain="usageLimits",
        status="PERMISSION_DENIED",
        extra={"extendedHelp": "https://console.developers.google.com"},
        details=[
            {
                "@type": ERROR_INFO,
                "reason": "SERVICE_DISABLED",
                "domain": "googleapis.com",
                "metadata": {
                    "service": "admin.googleapis.com",
                    "consumer": f"projects/{project}",
                    "serviceTitle": "Admin SDK API",
                },
            }
        ],
    )


# --- HTTP ----------------------------------------------------------------------------------------


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"
    # Keep-alive responses are small writes: without TCP_NODELAY each waits for the client's
    # delayed ACK (about 40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        del format, args  # the request log lives in /_fake/requests, stderr stays quiet

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def _dispatch(self, method: str) -> None:
        split = urlsplit(self.path)
        body = self._read_body()
        if split.path.startswith("/_fake/"):
            self._control(method, split.path, body)
            return
        query = dict(parse_qsl(split.query, keep_blank_values=True))
        status, payload, headers = self._reports(method, split.path, query)
        # Logged before answering, so a client that has its response always finds it in the log.
        self.server.state.record(
            {"method": method, "path": split.path, "query": query, "status": status}
        )
        self._send(status, payload, headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

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
            # The client gave up (its timeout passed, as a slow fault intends): nothing to answer.
            self.close_connection = True

    def _reports(
        self, method: str, path: str, query: dict[str, str]
    ) -> tuple[int, Any, Mapping[str, str]]:
        try:
            return 200, self._list(method, path, query), {}
        except ApiError as err:
            return err.code, err.body(), err.headers

    def _list(self, method: str, path: str, query: dict[str, str]) -> Any:
        server = self.server
        m = REPORTS_PATH.match(path)
        if not m or method != "GET":
            raise ApiError(404, "Not Found", reason="notFound", status="NOT_FOUND")
        if server.require_token is not None:
            expected = f"Bearer {server.require_token}"
            if not hmac.compare_digest(self.headers.get("Authorization", ""), expected):
                raise ApiError(
                    401,
                    "Request had invalid authentication credentials. Expected OAuth 2 access "
                    "token, login cookie or other valid authentication credential.",
                    reason="authError",
                    status="UNAUTHENTICATED",
                    headers={"WWW-Authenticate": 'Bearer realm="https://accounts.google.com/"'},
                    extra={"location": "Authorization", "locationType": "header"},
                )
        fault = server.state.take_fault(server.state.pages_before(query))
        if fault is not None:
            err = fault_error(fault)
            if err is not None:
                raise err
            server.stopping.wait(fault.delay_s)
        return server.state.list_activities(unquote(m.group(1)), unquote(m.group(2)), query)

    def _control(self, method: str, path: str, body: bytes) -> None:
        state = self.server.state
        try:
            payload = json.loads(body) if body else {}
        except ValueError:
            self._send(400, {"error": "body is not JSON"})
            return
        try:
            if (method, path) == ("POST", "/_fake/activities"):
                if not isinstance(payload, dict) or not isinstance(payload.get("activities"), list):
                    raise ValueError('body must be {"activities": [...]}')
                state.add(payload["activities"], float(payload.get("visible_after_s") or 0))
                self._send(200, {"added": len(payload["activities"])})
            elif (method, path) == ("POST", "/_fake/reset"):
                state.clear()
                self._send(200, {"ok": True})
            elif (method, path) == ("GET", "/_fake/requests"):
                self._send(200, state.requests())
            elif (method, path) == ("POST", "/_fake/faults"):
                state.add_fault(_fault_from(payload))
                self._send(200, {"ok": True})
            elif (method, path) == ("DELETE", "/_fake/faults"):
                state.clear_faults()
                self._send(200, {"ok": True})
            elif (method, path) == ("POST", "/_fake/config"):
                state.configure(_config_from(payload))
                self._send(200, state.config())
            elif (method, path) == ("GET", "/_fake/config"):
                self._send(200, state.config())
            elif (method, path) == ("GET", "/_fake/health"):
                self._send(200, {"ok": True})
            else:
                self._send(404, {"error": f"no control endpoint {method} {path}"})
        except (ValueError, TypeError) as exc:
            self._send(400, {"error": str(exc)})


def _fault_from(payload: Any) -> _Fault:
    if not isinstance(payload, dict):
        raise ValueError("fault must be a JSON object")
    kind = payload.get("kind")
    if kind not in FAULT_KINDS:
        raise ValueError(f"unknown fault kind {kind!r}; one of {sorted(FAULT_KINDS)}")
    count = int(payload.get("count", 1))
    if count < 1:
        raise ValueError("count must be at least 1")
    retry_after = payload.get("retry_after_s")
    after_pages = int(payload.get("after_pages") or 0)
    if after_pages < 0:
        raise ValueError("after_pages must not be negative")
    return _Fault(
        kind=kind,
        remaining=count,
        retry_after_s=None if retry_after is None else float(retry_after),
        delay_s=float(payload.get("delay_s") or 0),
        after_pages=after_pages,
    )


def _config_from(payload: Any) -> int:
    """The ``max_page_size`` of a ``POST /_fake/config`` body."""
    if not isinstance(payload, dict) or set(payload) - {"max_page_size"}:
        raise ValueError('config must be {"max_page_size": N | null}')
    size = payload.get("max_page_size")
    if size is None:
        return MAX_RESULTS
    if isinstance(size, bool) or not isinstance(size, int) or not 1 <= size <= MAX_RESULTS:
        raise ValueError(f"max_page_size must be an integer in [1, {MAX_RESULTS}] or null")
    return size


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], state: _State, require_token: str | None) -> None:
        super().__init__(address, _Handler)
        self.state = state
        self.require_token = require_token
        self.stopping = threading.Event()


class FakeReportsServer:
    """The fake Reports API on a background thread; see the module docstring for the protocol."""

    def __init__(
        self, *, host: str = "127.0.0.1", port: int = 0, require_token: str | None = None
    ) -> None:
        self._address = (host, port)
        self._state = _State()
        self._require_token = require_token
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._server is not None:
            return
        self._server = _Server(self._address, self._state, self._require_token)
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="fake-reports", daemon=True
        )
        self._thread.start()

    def stop(self) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.stopping.set()
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> FakeReportsServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("server not started")
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    @property
    def require_token(self) -> str | None:
        return self._require_token

    @require_token.setter
    def require_token(self, token: str | None) -> None:
        self._require_token = token
        if self._server is not None:
            self._server.require_token = token

    def add_activities(self, items: list[dict[str, Any]], *, visible_after_s: float = 0) -> None:
        self._state.add(items, visible_after_s)

    def add_fault(
        self,
        kind: str,
        *,
        count: int = 1,
        retry_after_s: float | None = None,
        delay_s: float = 0,
        after_pages: int = 0,
    ) -> None:
        self._state.add_fault(
            _fault_from(
                {
                    "kind": kind,
                    "count": count,
                    "retry_after_s": retry_after_s,
                    "delay_s": delay_s,
                    "after_pages": after_pages,
                }
            )
        )

    def clear_faults(self) -> None:
        self._state.clear_faults()

    def configure(self, *, max_page_size: int | None = None) -> None:
        """See ``POST /_fake/config``; None restores the full 1,000 items a page."""
        self._state.configure(_config_from({"max_page_size": max_page_size}))

    def requests(self) -> list[dict[str, Any]]:
        return self._state.requests()

    def reset(self) -> None:
        self._state.clear()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m local.fake_reports", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--require-token", default=None)
    args = parser.parse_args(argv)
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        del signum, frame
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    server = FakeReportsServer(host=args.host, port=args.port, require_token=args.require_token)
    server.start()
    print(f"fake-reports ready url={server.url}", flush=True)
    try:
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
