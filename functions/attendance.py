"""Pure attendance rules: Reports ``call_ended`` activities → sessions → participants → meetings.

Nothing here does I/O, reads the environment or knows a Google type: activities come in as the plain
dicts the Reports API returns, results go out as frozen dataclasses and JSON-ready dicts.

Time is kept with millisecond precision (the precision of ``id.time``) in aware UTC datetimes;
interval arithmetic is done on integer milliseconds since the epoch, so no float decides a second.

Decisions the contract leaves open (and the README repeats):

- A duplicate pair keeps the session with the latest ``leave_time``, then the longest
  ``duration_seconds``, then the greatest ``event_id``; the result does not depend on input order.
- ``attended_seconds`` rounds the union's milliseconds half up (``1.5 s → 2 s``, ``0.499 s → 0 s``).
- ``identifier``, ``identifier_type``, ``display_name``: the latest non-empty value by leave time.
  ``calendar_event_id`` and ``organizer_email`` of a meeting: likewise, over all of its sessions.
- An empty ``identifier`` counts as none; keys trim whitespace in every rule.
- A non-email identifier without ``identifier_type`` is keyed ``identifier:<identifier>``; a
  session with neither identifier, display name nor endpoint id is keyed ``event:<event_id>``.
- ``event_id`` is ``<id.time as RFC 3339 UTC with milliseconds>/<id.uniqueQualifier>``.
"""

from __future__ import annotations

import functools
import hashlib
import json
import operator
import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Final, TypeAlias

__all__ = [
    "EPOCH",
    "Meeting",
    "ParamValue",
    "Participant",
    "Session",
    "SessionCollector",
    "Span",
    "attended_seconds",
    "build_meeting",
    "build_participants",
    "canonical_meeting_code",
    "decode_parameter",
    "decode_parameters",
    "dedupe_key",
    "format_timestamp",
    "meeting_fields_to_json",
    "meeting_fingerprint",
    "meeting_to_json",
    "meetings_by_conference",
    "parse_activity",
    "parse_timestamp",
    "participant_doc_id",
    "participant_fingerprint",
    "participant_key",
    "participant_to_json",
    "preferred",
    "reports_meeting_code",
    "round_ms_to_seconds",
    "session_to_json",
    "union_duration",
]

EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MS: Final = timedelta(milliseconds=1)
_SECOND: Final = timedelta(seconds=1)

ParamValue: TypeAlias = (
    "str | int | bool | tuple[str, ...] | tuple[int, ...] | dict[str, ParamValue]"
    " | tuple[dict[str, ParamValue], ...] | None"
)

# ------------------------------------------------------------------------------
# Reports parameter encoding


def _int64(raw: object) -> int | str | None:
    # The API sends int64 as a string; a value that is not an integer is kept as the raw string so
    # the rule that needs an integer can reject it by name instead of crashing here.
    if isinstance(raw, bool):
        return str(raw)
    if isinstance(raw, int):
        return raw
    if isinstance(raw, str):
        try:
            return int(raw.strip())
        except ValueError:
            return raw
    return None if raw is None else str(raw)


def _bool(raw: object) -> bool | None:
    if isinstance(raw, bool):
        return raw
    if isinstance(raw, str):
        lowered = raw.strip().lower()
        if lowered in ("true", "false"):
            return lowered == "true"
    return None


def _message(raw: object) -> dict[str, ParamValue]:
    if isinstance(raw, Mapping):
        nested = raw.get("parameter")
        if isinstance(nested, list):
            return decode_parameters(nested)
    return {}


def decode_parameter(param: Mapping[str, Any]) -> ParamValue:
    """The Python value of one Reports parameter (exactly one of its value keys is set)."""
    if "value" in param:
        raw = param["value"]
        return raw if isinstance(raw, str) or raw is None else str(raw)
    if "intValue" in param:
        return _int64(param["intValue"])
    if "boolValue" in param:
        return _bool(param["boolValue"])
    if "multiValue" in param:
        values = param["multiValue"]
        return tuple(str(v) for v in values) if isinstance(values, list) else ()
    if "multiIntValue" in param:
        values = param["multiIntValue"]
        if not isinstance(values, list):
            return ()
        decoded = [_int64(v) for v in values]
        return tuple(v for v in decoded if isinstance(v, int))
    if "messageValue" in param:
        return _message(param["messageValue"])
    if "multiMessageValue" in param:
        values = param["multiMessageValue"]
        return tuple(_message(v) for v in values) if isinstance(values, list) else ()
    return None


def decode_parameters(params: Iterable[Any]) -> dict[str, ParamValue]:
    """All parameters of an event by name; malformed entries (no name) are dropped."""
    decoded: dict[str, ParamValue] = {}
    for param in params:
        if isinstance(param, Mapping):
            name = param.get("name")
            if isinstance(name, str):
                decoded[name] = decode_parameter(param)
    return decoded


# ------------------------------------------------------------------------------
# Time


def parse_timestamp(raw: object) -> datetime | None:
    """RFC 3339 with an offset → aware UTC datetime truncated to milliseconds; else None."""
    if not isinstance(raw, str) or "T" not in raw:
        return None
    try:
        parsed = datetime.fromisoformat(raw)
    except ValueError:
        return None
    if parsed.tzinfo is None or parsed.utcoffset() is None:
        return None
    micros = parsed.microsecond
    if micros % 1000:
        parsed = parsed.replace(microsecond=micros - micros % 1000)
    return parsed.astimezone(UTC)


def format_timestamp(moment: datetime) -> str:
    """RFC 3339 UTC with exactly three fraction digits and ``Z``: ``2026-01-15T10:05:00.000Z``."""
    if moment.tzinfo is not UTC:
        moment = moment.astimezone(UTC)
    # isoformat is C code and always writes "+00:00" for UTC: swap it for "Z".
    return moment.isoformat(timespec="milliseconds")[:-6] + "Z"


def to_ms(moment: datetime) -> int:
    """Milliseconds since the epoch (floored)."""
    return (moment - EPOCH) // _MS


def from_ms(ms: int) -> datetime:
    return EPOCH + timedelta(milliseconds=ms)


def round_ms_to_seconds(ms: int) -> int:
    """Whole seconds, half up: 1500 ms → 2 s, 1499 ms → 1 s."""
    return (ms + 500) // 1000


# ------------------------------------------------------------------------------
# Meeting codes

_CODE_SEPARATORS: Final = re.compile(r"[\s\-]+")
_TEN_LETTERS: Final = re.compile(r"[a-z]{10}")


@functools.lru_cache(maxsize=4096)
def canonical_meeting_code(raw: str) -> str:
    """``ABCDEFGHIJ``, `` Abc defg-HIJ`` → ``abc-defg-hij``.

    Codes that are not ten letters are lower-cased with dashes and spaces removed.
    """
    compact = _CODE_SEPARATORS.sub("", raw).lower()
    if _TEN_LETTERS.fullmatch(compact):
        return f"{compact[:3]}-{compact[3:7]}-{compact[7:]}"
    return compact


def reports_meeting_code(code: str) -> str:
    """The form the Reports API stores and filters on: ``ABCDEFGHIJ``."""
    return _CODE_SEPARATORS.sub("", code).upper()


# ------------------------------------------------------------------------------
# Sessions


@dataclass(frozen=True, slots=True)
class Span:
    """A half-open interval ``[start, end)``; ``None`` is open on that side.

    Half-open spans make partitions exact: a boundary second belongs to the later span only.
    """

    start: datetime | None = None
    end: datetime | None = None

    def intersection(self, other: Span) -> Span:
        start = _later(self.start, other.start)
        end = _earlier(self.end, other.end)
        return Span(start, end)

    def is_empty(self) -> bool:
        return self.start is not None and self.end is not None and self.end <= self.start

    def overlaps(self, join: datetime, leave: datetime) -> bool:
        """Whether ``[join, leave)`` shares time with the span.

        A zero-length session at instant t overlaps when ``start <= t < end``, so it lands in
        exactly one of two adjacent spans.
        """
        if self.is_empty():
            return False
        if join == leave:
            return (self.start is None or self.start <= join) and (
                self.end is None or join < self.end
            )
        return (self.start is None or leave > self.start) and (self.end is None or join < self.end)


def _later(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return max(a, b)


def _earlier(a: datetime | None, b: datetime | None) -> datetime | None:
    if a is None:
        return b
    if b is None:
        return a
    return min(a, b)


@dataclass(frozen=True, slots=True)
class Session:
    """One endpoint's stay in one conference, from one ``call_ended`` event (CONTRACT §1)."""

    event_id: str
    conference_id: str
    endpoint_id: str | None
    join_time: datetime
    leave_time: datetime
    duration_seconds: int
    meeting_code: str | None = None
    identifier: str | None = None
    identifier_type: str | None = None
    display_name: str | None = None
    is_external: bool = False
    device_type: str | None = None
    ip_address: str | None = None
    location_country: str | None = None
    location_region: str | None = None
    calendar_event_id: str | None = None
    organizer_email: str | None = None
    # Parameters no rule uses; filled only on request (parse_activity(keep_extra=True)) to keep the
    # hundred thousand sessions of a summarize run small.
    extra: Mapping[str, ParamValue] | None = field(default=None, compare=False, repr=False)

    @property
    def participant_key(self) -> str:
        return participant_key(self)


# Values that repeat across many sessions: shared (sys.intern) when a caller holds many sessions.
_SHARED_STRINGS: Final = (
    "conference_id",
    "meeting_code",
    "identifier",
    "identifier_type",
    "display_name",
    "device_type",
    "location_country",
    "location_region",
    "calendar_event_id",
    "organizer_email",
)
_OWN_STRINGS: Final = ("endpoint_id", "ip_address")
_STRING_NAMES: Final = (*_SHARED_STRINGS, *_OWN_STRINGS)


def _is_canonical_time(raw: object) -> bool:
    """Already ``YYYY-MM-DDTHH:MM:SS.mmmZ`` (what the API sends): no need to format it again."""
    return isinstance(raw, str) and len(raw) == 24 and raw[19] == "." and raw[23] == "Z"


_KNOWN: Final = frozenset((*_SHARED_STRINGS, *_OWN_STRINGS, "duration_seconds", "is_external"))


def parse_activity(
    item: object,
    *,
    keep_extra: bool = False,
    share_strings: bool = False,
) -> tuple[list[Session], list[str], int]:
    """One Reports activity → (its usable ``call_ended`` sessions, skip reasons, events seen).

    Other event names are ignored silently; an unusable ``call_ended`` yields one reason string.
    ``share_strings`` interns repeated values, for callers that hold many sessions at once.
    """
    if not isinstance(item, dict):
        return [], [], 0
    events = item.get("events")
    if not isinstance(events, list):
        return [], [], 0
    sessions: list[Session] = []
    reasons: list[str] = []
    id_block = item.get("id")
    for event in events:
        if not isinstance(event, dict) or event.get("name") != "call_ended":
            continue
        result = _session_from_event(id_block, event, keep_extra, share_strings)
        if isinstance(result, str):
            reasons.append(result)
        else:
            sessions.append(result)
    return sessions, reasons, len(events)


class _SessionBuilder:
    """The slot layout of :class:`Session` without its frozen ``__setattr__``.

    ``_session_from_event`` fills one of these with plain attribute stores, then turns it into a
    ``Session`` (``__class__`` assignment: same slots, so the same memory layout). The generated
    ``Session.__init__`` sets its 18 fields one by one through ``object.__setattr__``, about ten
    times slower, and it runs for every event of a dump. The result is an ordinary ``Session``:
    tests/unit/test_attendance_properties.py checks it equals the one the constructor builds.
    """

    __slots__ = Session.__slots__


_NAME: Final = operator.itemgetter("name")


def _session_from_event(
    id_block: object,
    event: dict[str, Any],
    keep_extra: bool,
    share_strings: bool,
) -> Session | str:
    if not isinstance(id_block, dict):
        return "call_ended without id"
    raw_time = id_block.get("time")
    leave_time = parse_timestamp(raw_time)
    if leave_time is None:
        return "call_ended with an unparseable or offset-less id.time"
    qualifier = id_block.get("uniqueQualifier")
    time_text = raw_time if _is_canonical_time(raw_time) else format_timestamp(leave_time)

    params = event.get("parameters")
    if not isinstance(params, list):
        params = []
    # The parameters by name, built in C (a name given twice counts with its last value); entries
    # that are not {"name": ..., ...} mappings are dropped.
    try:
        by_name = dict(zip(map(_NAME, params), params, strict=True))
        return _session_from_parameters(
            by_name, time_text, qualifier, leave_time, keep_extra, share_strings
        )
    except (TypeError, KeyError, AttributeError):  # not a dict, no name, an unhashable name
        well_formed = [p for p in params if isinstance(p, dict) and isinstance(p.get("name"), str)]
        by_name = {p["name"]: p for p in well_formed}
        return _session_from_parameters(
            by_name, time_text, qualifier, leave_time, keep_extra, share_strings
        )


def _session_from_parameters(
    by_name: dict[Any, Any],
    time_text: object,
    qualifier: object,
    leave_time: datetime,
    keep_extra: bool,
    share_strings: bool,
) -> Session | str:
    get = by_name.get
    # The string parameters: None unless a non-empty string; shared values interned. Unrolled:
    # this runs for every event of a dump.
    intern = sys.intern if share_strings else str
    param = get("conference_id")
    value = None if param is None else param.get("value")
    conference_id = intern(value) if type(value) is str and value else None
    param = get("meeting_code")
    value = None if param is None else param.get("value")
    raw_code = intern(value) if type(value) is str and value else None
    param = get("identifier")
    value = None if param is None else param.get("value")
    identifier = intern(value) if type(value) is str and value else None
    param = get("identifier_type")
    value = None if param is None else param.get("value")
    identifier_type = intern(value) if type(value) is str and value else None
    param = get("display_name")
    value = None if param is None else param.get("value")
    display_name = intern(value) if type(value) is str and value else None
    param = get("device_type")
    value = None if param is None else param.get("value")
    device_type = intern(value) if type(value) is str and value else None
    param = get("location_country")
    value = None if param is None else param.get("value")
    location_country = intern(value) if type(value) is str and value else None
    param = get("location_region")
    value = None if param is None else param.get("value")
    location_region = intern(value) if type(value) is str and value else None
    param = get("calendar_event_id")
    value = None if param is None else param.get("value")
    calendar_event_id = intern(value) if type(value) is str and value else None
    param = get("organizer_email")
    value = None if param is None else param.get("value")
    organizer_email = intern(value) if type(value) is str and value else None
    param = get("endpoint_id")
    value = None if param is None else param.get("value")
    endpoint_id = value if type(value) is str and value else None
    param = get("ip_address")
    value = None if param is None else param.get("value")
    ip_address = value if type(value) is str and value else None
    if conference_id is None:
        return "call_ended without conference_id"
    duration_param = get("duration_seconds")
    duration = None if duration_param is None else decode_parameter(duration_param)
    if type(duration) is not int:
        return "call_ended without an integer duration_seconds"
    if duration < 0:
        return "call_ended with a negative duration_seconds"
    external = get("is_external")
    extra = None
    if keep_extra:
        extra = {
            name: decode_parameter(param)
            for name, param in by_name.items()
            if isinstance(name, str) and isinstance(param, dict) and name not in _KNOWN
        }
    session: Any = _SessionBuilder()
    session.event_id = f"{time_text}/{'' if qualifier is None else qualifier}"
    session.conference_id = conference_id
    session.endpoint_id = endpoint_id
    session.join_time = leave_time - _SECOND * duration
    session.leave_time = leave_time
    session.duration_seconds = duration
    session.meeting_code = None if raw_code is None else canonical_meeting_code(raw_code) or None
    session.identifier = identifier
    session.identifier_type = identifier_type
    session.display_name = display_name
    session.is_external = external is not None and decode_parameter(external) is True
    session.device_type = device_type
    session.ip_address = ip_address
    session.location_country = location_country
    session.location_region = location_region
    session.calendar_event_id = calendar_event_id
    session.organizer_email = organizer_email
    session.extra = extra
    session.__class__ = Session
    return session  # type: ignore[no-any-return]


# ------------------------------------------------------------------------------
# De-duplication


def dedupe_key(session: Session) -> tuple[str, str]:
    """Equal keys are one session: ``(conference_id, endpoint_id)``, else the event id."""
    if session.endpoint_id is not None:
        return (session.conference_id, session.endpoint_id)
    return ("", session.event_id)


def _preference(session: Session) -> tuple[datetime, int, str, str]:
    # repr() settles the (corrupt-data) case of two different payloads under one event id, so that
    # the winner never depends on which copy came first.
    return (session.leave_time, session.duration_seconds, session.event_id, repr(session))


def preferred(a: Session, b: Session) -> Session:
    """The duplicate that wins: latest leave, then longest, then greatest event id."""
    return a if _preference(a) >= _preference(b) else b


class SessionCollector:
    """Accumulates de-duplicated sessions from activities, one at a time (streaming).

    Holds only sessions (small, strings shared through a pool), never the raw activities.
    """

    def __init__(self) -> None:
        self._sessions: dict[tuple[str, str], Session] = {}
        self.events_read = 0
        self.events_skipped = 0
        self.skip_reasons: dict[str, int] = {}
        self.items_ignored = 0

    def add_activity(self, item: object) -> None:
        if not isinstance(item, dict):
            self.items_ignored += 1
            return
        sessions, reasons, events_seen = parse_activity(item, share_strings=True)
        self.events_read += events_seen
        for reason in reasons:
            self.events_skipped += 1
            self.skip_reasons[reason] = self.skip_reasons.get(reason, 0) + 1
        for session in sessions:
            self.add_session(session)

    def add_activities(self, items: Iterable[object]) -> None:
        for item in items:
            self.add_activity(item)

    def add_session(self, session: Session) -> None:
        key = dedupe_key(session)
        known = self._sessions.get(key)
        self._sessions[key] = session if known is None else preferred(known, session)

    @property
    def events_used(self) -> int:
        """Distinct sessions: duplicates of one session count once."""
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        return sorted(self._sessions.values(), key=_session_order)

    def warnings(self) -> list[str]:
        warnings = [
            f"{count} event{'s' if count != 1 else ''} skipped: {reason}"
            for reason, count in sorted(self.skip_reasons.items())
        ]
        if self.items_ignored:
            warnings.append(f"{self.items_ignored} activity item(s) ignored: not a JSON object")
        return warnings


# ------------------------------------------------------------------------------
# Participants


def participant_key(session: Session) -> str:
    """CONTRACT §1 rules 1 to 4, in order."""
    return _key_and_rule(session)[0]


def _key_and_rule(session: Session) -> tuple[str, bool]:
    """The participant key and whether the email rule (1) made it."""
    identifier = (session.identifier or "").strip()
    kind = (session.identifier_type or "").strip()
    if identifier:
        if kind == "email_address" or "@" in identifier:
            return identifier.lower(), True
        if kind == "phone_number":
            return f"phone:{identifier}", False
        if kind == "device_id":
            return f"device:{identifier}", False
        return f"{kind or 'identifier'}:{identifier}", False
    display_name = (session.display_name or "").strip()
    if display_name:
        return f"anon:{display_name}", False
    if session.endpoint_id:
        return f"endpoint:{session.endpoint_id}", False
    return f"event:{session.event_id}", False


_SLUG_UNSAFE: Final = re.compile(r"[^a-z0-9@._+\-]+")


def participant_doc_id(key: str) -> str:
    """A Firestore-safe id: readable slug + 16 hex digits of sha256(key).

    The hash keeps distinct keys apart (keys are case-sensitive, the slug is not); the id never
    holds ``/``, is never ``.``/``..``, never ends in ``__`` and stays far below 1,500 bytes.
    """
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    slug = _SLUG_UNSAFE.sub("_", key.lower()).strip("._")[:80]
    return f"{slug}-{digest}" if slug else f"p-{digest}"


@dataclass(frozen=True, slots=True)
class Participant:
    participant_key: str
    email: str | None
    identifier: str | None
    identifier_type: str | None
    display_name: str | None
    is_external: bool
    first_join: datetime
    last_leave: datetime
    session_count: int
    total_session_seconds: int
    attended_seconds: int
    sessions: tuple[Session, ...]

    @property
    def doc_id(self) -> str:
        return participant_doc_id(self.participant_key)


def _session_order(session: Session) -> tuple[datetime, str, str]:
    return (session.join_time, session.endpoint_id or "", session.event_id)


def _clipped(sessions: Sequence[Session], clip: Span | None) -> list[tuple[datetime, datetime]]:
    """Session intervals cut to ``clip`` (an interval outside it shrinks to zero length)."""
    if clip is None or (clip.start is None and clip.end is None):
        return [(s.join_time, s.leave_time) for s in sessions]
    lo, hi = clip.start, clip.end
    intervals = []
    for session in sessions:
        join, leave = session.join_time, session.leave_time
        if lo is not None:
            join, leave = max(join, lo), max(leave, lo)
        if hi is not None:
            join, leave = min(join, hi), min(leave, hi)
        intervals.append((join, leave))
    return intervals


def union_duration(intervals: Iterable[tuple[datetime, datetime]]) -> timedelta:
    """Length of the union of ``[start, end)`` intervals: two devices at once count once."""
    total = timedelta(0)
    ordered = sorted(intervals)
    if not ordered:
        return total
    current_start, current_end = ordered[0]
    for start, end in ordered[1:]:
        if start > current_end:
            total += current_end - current_start
            current_start, current_end = start, end
        elif end > current_end:
            current_end = end
    return total + (current_end - current_start)


def attended_seconds(intervals: Iterable[tuple[datetime, datetime]]) -> int:
    """The union's length in whole seconds, rounded half up."""
    return round_ms_to_seconds(union_duration(intervals) // _MS)


def _latest_non_empty(ordered: Sequence[Session], attribute: str) -> str | None:
    for session in reversed(ordered):
        value = getattr(session, attribute)
        if value:
            return str(value)
    return None


_LEAVE_ORDER: Final = operator.attrgetter("leave_time", "event_id")


class _ParticipantBuilder:
    """The slot layout of :class:`Participant`, without its frozen ``__setattr__`` (see
    :class:`_SessionBuilder`)."""

    __slots__ = Participant.__slots__


def _build_participant(
    key: str, email_rule: bool, sessions: list[Session], clip: Span | None
) -> Participant:
    if len(sessions) == 1:
        return _one_session_participant(key, email_rule, sessions[0], clip)
    return _participant(key, email_rule, sessions, clip)


def _participant(
    key: str, email_rule: bool, sessions: Sequence[Session], clip: Span | None
) -> Participant:
    """The participant rules of CONTRACT §1 over any number of sessions."""
    by_leave = sorted(sessions, key=_LEAVE_ORDER)
    ordered = sorted(sessions, key=_session_order)
    intervals = _clipped(sessions, clip)
    return Participant(
        key,
        key if email_rule else None,
        _latest_non_empty(by_leave, "identifier"),
        _latest_non_empty(by_leave, "identifier_type"),
        _latest_non_empty(by_leave, "display_name"),
        any(map(_IS_EXTERNAL, sessions)),
        min(map(_START, intervals)),
        max(map(_END, intervals)),
        len(sessions),
        sum(map(_DURATION, sessions)),
        attended_seconds(intervals),
        tuple(ordered),
    )


def _one_session_participant(
    key: str, email_rule: bool, session: Session, clip: Span | None
) -> Participant:
    """``_participant`` for one session (most participants of a large dump have one): the same
    rules with their one-element sorts, unions and sums written out. The equality is checked over
    generated sessions and clips in tests/unit/test_attendance_properties.py."""
    if clip is None:
        join, leave = session.join_time, session.leave_time
    else:
        ((join, leave),) = _clipped((session,), clip)
    participant: Any = _ParticipantBuilder()
    participant.participant_key = key
    participant.email = key if email_rule else None
    value = session.identifier
    participant.identifier = str(value) if value else None
    value = session.identifier_type
    participant.identifier_type = str(value) if value else None
    value = session.display_name
    participant.display_name = str(value) if value else None
    participant.is_external = bool(session.is_external)
    participant.first_join = join
    participant.last_leave = leave
    participant.session_count = 1
    participant.total_session_seconds = session.duration_seconds
    participant.attended_seconds = round_ms_to_seconds((leave - join) // _MS)
    participant.sessions = (session,)
    participant.__class__ = Participant
    return participant  # type: ignore[no-any-return]


_IS_EXTERNAL: Final = operator.attrgetter("is_external")
_DURATION: Final = operator.attrgetter("duration_seconds")
_PARTICIPANT_ORDER: Final = operator.attrgetter("first_join", "participant_key")
_START: Final = operator.itemgetter(0)
_END: Final = operator.itemgetter(1)


def build_participants(
    sessions: Iterable[Session], *, clip: Span | None = None
) -> list[Participant]:
    """Group sessions by participant key; with ``clip``, times and attendance count only inside it
    (each session still keeps its real join and leave). Sorted by first join, then key."""
    groups: dict[tuple[str, bool], list[Session]] = {}
    for session in sessions:
        groups.setdefault(_key_and_rule(session), []).append(session)
    participants = [
        _build_participant(key, email_rule, group, clip)
        for (key, email_rule), group in groups.items()
    ]
    participants.sort(key=_PARTICIPANT_ORDER)
    return participants


@dataclass(frozen=True, slots=True)
class Meeting:
    meeting_code: str | None
    conference_ids: tuple[str, ...]
    calendar_event_id: str | None
    organizer_email: str | None
    actual_start: datetime | None
    actual_end: datetime | None
    participant_count: int
    total_attended_seconds: int
    participants: tuple[Participant, ...]


def build_meeting(
    sessions: Iterable[Session],
    *,
    clip: Span | None = None,
    meeting_code: str | None = None,
    calendar_event_id: str | None = None,
    organizer_email: str | None = None,
) -> Meeting:
    """Meeting aggregates over (already selected, de-duplicated) sessions. The keyword values are
    fallbacks (e.g. from the webhook) for when the events lack them."""
    selected = list(sessions)
    participants = build_participants(selected, clip=clip)
    by_leave = sorted(selected, key=_LEAVE_ORDER)
    return Meeting(
        meeting_code=_latest_non_empty(by_leave, "meeting_code") or meeting_code,
        conference_ids=tuple(sorted({s.conference_id for s in selected})),
        calendar_event_id=_latest_non_empty(by_leave, "calendar_event_id") or calendar_event_id,
        organizer_email=_latest_non_empty(by_leave, "organizer_email") or organizer_email,
        actual_start=min((p.first_join for p in participants), default=None),
        actual_end=max((p.last_leave for p in participants), default=None),
        participant_count=len(participants),
        total_attended_seconds=sum(p.attended_seconds for p in participants),
        participants=tuple(participants),
    )


def meetings_by_conference(sessions: Iterable[Session]) -> list[Meeting]:
    """One meeting per conference id (the summarize view), sorted by actual start."""
    groups: dict[str, list[Session]] = {}
    for session in sessions:
        groups.setdefault(session.conference_id, []).append(session)
    meetings = [build_meeting(group) for group in groups.values()]
    meetings.sort(key=lambda m: (m.actual_start or EPOCH, m.conference_ids))
    return meetings


# ------------------------------------------------------------------------------
# JSON


def _timestamp_or_none(moment: datetime | None) -> str | None:
    return None if moment is None else format_timestamp(moment)


def session_to_json(session: Session) -> dict[str, Any]:
    return {
        "conference_id": session.conference_id,
        "endpoint_id": session.endpoint_id,
        "join_time": format_timestamp(session.join_time),
        "leave_time": format_timestamp(session.leave_time),
        "duration_seconds": session.duration_seconds,
        "device_type": session.device_type,
        "ip_address": session.ip_address,
        "location_country": session.location_country,
        "location_region": session.location_region,
        "event_id": session.event_id,
    }


def participant_to_json(participant: Participant) -> dict[str, Any]:
    return {
        "participant_key": participant.participant_key,
        "email": participant.email,
        "identifier": participant.identifier,
        "identifier_type": participant.identifier_type,
        "display_name": participant.display_name,
        "is_external": participant.is_external,
        "first_join": format_timestamp(participant.first_join),
        "last_leave": format_timestamp(participant.last_leave),
        "session_count": participant.session_count,
        "total_session_seconds": participant.total_session_seconds,
        "attended_seconds": participant.attended_seconds,
        "sessions": [session_to_json(s) for s in participant.sessions],
    }


def meeting_fields_to_json(meeting: Meeting) -> dict[str, Any]:
    return {
        "meeting_code": meeting.meeting_code,
        "conference_ids": list(meeting.conference_ids),
        "calendar_event_id": meeting.calendar_event_id,
        "organizer_email": meeting.organizer_email,
        "actual_start": _timestamp_or_none(meeting.actual_start),
        "actual_end": _timestamp_or_none(meeting.actual_end),
        "participant_count": meeting.participant_count,
        "total_attended_seconds": meeting.total_attended_seconds,
    }


def meeting_to_json(meeting: Meeting) -> dict[str, Any]:
    rendered = meeting_fields_to_json(meeting)
    rendered["participants"] = [participant_to_json(p) for p in meeting.participants]
    return rendered


# ------------------------------------------------------------------------------
# Change fingerprints: stable across processes (sha256 of canonical JSON, never hash()).


def _digest(value: object) -> str:
    canonical = json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(canonical.encode("ascii")).hexdigest()


def participant_fingerprint(participant: Participant) -> str:
    """Changes exactly when a stored participant field or one of its sessions changes."""
    return _digest(participant_to_json(participant))


def meeting_fingerprint(meeting: Meeting) -> str:
    """Changes when a meeting aggregate or any participant's fingerprint changes."""
    return _digest(
        {
            "meeting": meeting_fields_to_json(meeting),
            "participants": [participant_fingerprint(p) for p in meeting.participants],
        }
    )
