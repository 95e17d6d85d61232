"""The Reports API's wire format → sessions: parameter decoding, ``call_ended`` events, and the
streaming collector that de-duplicates them (docs/firestore.md "Session").

Activities come in as the plain dicts the API returns (int64 as strings and all); what comes out
is :class:`~functions.attendance.Session`. This runs for every event of a dump or a poll, so the
event decoder is written for speed (see :class:`_SessionBuilder`); the plain version of the same
rules is tests/unit/test_attendance_properties.py's reference, and the two are compared there.

Bad events are contained (docs/firestore.md): an unusable ``call_ended`` yields one skip reason, the
first rule it fails in this order: no ``id``; an ``id.time`` unparseable or outside the years
2000 to 2100 (UTC); no ``conference_id``; a ``conference_id``, ``meeting_code``, ``identifier`` or
``endpoint_id`` that is not valid Unicode (a lone surrogate, what ``json.loads`` makes of
``"\\ud800"``); no integer ``duration_seconds``, a negative one or one over 30 days; a join time
before 2000. Any other exception while one event is decoded skips that event alone, named by the
exception's type. The other string parameters (display name, device, location, identifier type,
calendar event, organizer, IP address) are repaired instead: each lone surrogate becomes U+FFFD,
and each text so repaired in an event that yields a session is counted (:class:`TextRepairs`).

Decisions the contract leaves open: ``event_id`` is ``<id.time as RFC 3339 UTC with
milliseconds>/<id.uniqueQualifier>``, a lone surrogate in it written ``\\udXXX`` (so that it is
valid text and still tells qualifiers apart); an empty ``identifier`` counts as none; repairs are
counted per event read, duplicates included (like ``events_read``); ``extra`` values are decoded
as they are (nothing stores them).
"""

from __future__ import annotations

import operator
import re
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, Final

from functions.attendance import ParamValue, Session, session_order
from functions.duplicates import dedupe_key, preferred
from functions.meeting_codes import canonical_meeting_code
from functions.timestamps import parse_timestamp_and_text

__all__ = [
    "MAX_DURATION_SECONDS",
    "SessionCollector",
    "TextRepairs",
    "decode_parameter",
    "decode_parameters",
    "parse_activity",
]

_SECOND: Final = timedelta(seconds=1)
#: The longest usable ``duration_seconds`` (30 days: Meet calls last at most 24 hours).
MAX_DURATION_SECONDS: Final = 30 * 24 * 3600
#: Usable leave and join times: the years 2000 to 2100, in UTC.
_EARLIEST: Final = datetime(2000, 1, 1, tzinfo=UTC)
_AFTER_LATEST: Final = datetime(2101, 1, 1, tzinfo=UTC)
_SURROGATE: Final = re.compile("[\ud800-\udfff]")

# ------------------------------------------------------------------------------
# Parameter values


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
# call_ended events

#: The string parameters a session keeps (:func:`_session_from_parameters`, :func:`_set_texts`).
_STRING_PARAMETERS: Final = (
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
    "endpoint_id",
    "ip_address",
)
_KNOWN: Final = frozenset((*_STRING_PARAMETERS, "duration_seconds", "is_external"))
_NAME: Final = operator.itemgetter("name")

_NO_ID: Final = "call_ended without id"
_BAD_TIME: Final = "call_ended with an unparseable or offset-less id.time"
_TIME_OUT_OF_RANGE: Final = "call_ended with an id.time outside 2000-2100"
_NO_CONFERENCE: Final = "call_ended without conference_id"
_BAD_CONFERENCE: Final = "call_ended with a conference_id that is not valid Unicode"
_BAD_CODE: Final = "call_ended with a meeting_code that is not valid Unicode"
_BAD_IDENTIFIER: Final = "call_ended with an identifier that is not valid Unicode"
_BAD_ENDPOINT: Final = "call_ended with an endpoint_id that is not valid Unicode"
_NO_DURATION: Final = "call_ended without an integer duration_seconds"
_NEGATIVE_DURATION: Final = "call_ended with a negative duration_seconds"
_LONG_DURATION: Final = f"call_ended with duration_seconds outside 0…{MAX_DURATION_SECONDS}"
_EARLY_JOIN: Final = "call_ended with a join time (id.time - duration_seconds) before 2000"


class TextRepairs:
    """Counts the descriptive texts repaired (not valid Unicode) in the events that yielded a
    session: ``count``; ``pending`` holds those of the event being decoded until it does."""

    __slots__ = ("count", "pending")

    def __init__(self) -> None:
        self.count = 0
        self.pending = 0


#: For callers that do not count (one shared instance: its numbers are never read).
_UNCOUNTED: Final = TextRepairs()


def _is_text(value: str) -> bool:
    """False when ``value`` holds a lone surrogate: not valid Unicode, it cannot be encoded."""
    return _SURROGATE.search(value) is None


def _repaired(value: str, repairs: TextRepairs) -> str:
    """A non-ASCII descriptive text, each lone surrogate replaced by U+FFFD (and counted)."""
    if _SURROGATE.search(value) is None:
        return value
    repairs.pending += 1
    return _SURROGATE.sub("\ufffd", value)


def _undecodable(error: Exception) -> str:
    return f"call_ended that could not be decoded ({type(error).__name__})"


def parse_activity(
    item: object,
    *,
    keep_extra: bool = False,
    share_strings: bool = False,
    repairs: TextRepairs | None = None,
) -> tuple[list[Session], list[str], int]:
    """One Reports activity → (its usable ``call_ended`` sessions, skip reasons, events seen).

    Other event names are ignored silently; an unusable ``call_ended`` yields one reason string,
    never an exception, whatever the activity holds. ``events`` may be a list or one event object.
    ``share_strings`` interns repeated values, for callers that hold many sessions at once;
    ``repairs`` counts the descriptive texts repaired in the sessions returned.
    """
    if not isinstance(item, dict):
        return [], [], 0
    events = item.get("events")
    if not isinstance(events, list):
        if not isinstance(events, dict):
            return [], [], 0
        events = [events]  # log pipelines store a single event so
    if repairs is None:
        repairs = _UNCOUNTED
    sessions: list[Session] = []
    reasons: list[str] = []
    id_block = item.get("id")
    for event in events:
        if not isinstance(event, dict) or event.get("name") != "call_ended":
            continue
        try:
            result = _session_from_event(id_block, event, keep_extra, share_strings, repairs)
        except Exception as error:  # one bad event never stops the others (docs/firestore.md)
            result = _undecodable(error)
        if isinstance(result, str):
            reasons.append(result)
            repairs.pending = 0
        else:
            sessions.append(result)
            if repairs.pending:
                repairs.count += repairs.pending
                repairs.pending = 0
    return sessions, reasons, len(events)


class _SessionBuilder:
    """The slot layout of :class:`Session` without its frozen ``__setattr__``.

    ``_session_from_parameters`` fills one of these with plain attribute stores, then turns it
    into a ``Session`` (``__class__`` assignment: same slots, so the same memory layout). The
    generated ``Session.__init__`` sets its 18 fields one by one through ``object.__setattr__``,
    about ten times slower, and it runs for every event of a dump. The result is an ordinary
    ``Session``: tests/unit/test_attendance_properties.py checks it equals the constructor's.
    """

    __slots__ = Session.__slots__


def _session_from_event(
    id_block: object,
    event: dict[str, Any],
    keep_extra: bool,
    share_strings: bool,
    repairs: TextRepairs,
) -> Session | str:
    if not isinstance(id_block, dict):
        return _NO_ID
    parsed = parse_timestamp_and_text(id_block.get("time"))
    if parsed is None:
        return _BAD_TIME
    leave_time, time_text = parsed
    if not _EARLIEST <= leave_time < _AFTER_LATEST:
        return _TIME_OUT_OF_RANGE
    qualifier = id_block.get("uniqueQualifier")
    event_id = f"{time_text}/{'' if qualifier is None else qualifier}"
    if not event_id.isascii() and not _is_text(event_id):
        event_id = event_id.encode("utf-8", "backslashreplace").decode("utf-8")

    params = event.get("parameters")
    if not isinstance(params, list):
        params = []
    # The parameters by name, built in C (a name given twice counts with its last value); entries
    # that are not {"name": ..., ...} mappings are dropped.
    try:
        by_name = dict(zip(map(_NAME, params), params, strict=True))
    except (TypeError, KeyError, AttributeError):  # not a dict, no name, an unhashable name
        well_formed = [p for p in params if isinstance(p, dict) and isinstance(p.get("name"), str)]
        by_name = {p["name"]: p for p in well_formed}
    return _session_from_parameters(
        by_name, event_id, leave_time, keep_extra, share_strings, repairs
    )


def _set_texts(
    session: Any, get: Callable[[str], Any], intern: Callable[[str], str], repairs: TextRepairs
) -> None:
    """Store the descriptive string parameters on ``session``: None unless a non-empty string,
    repeated values interned, texts that are not valid Unicode repaired (``repairs.pending``).

    Unrolled because it runs for every event of a dump: the same rules as a loop over
    ``_STRING_PARAMETERS`` with ``setattr`` made parsing 4 % slower (100,000 events). The plain
    version is the reference in tests/unit/test_attendance_properties.py. ``isascii`` reads a
    flag: only non-ASCII texts are searched for lone surrogates.
    """
    param = get("identifier_type")
    value = None if param is None else param.get("value")
    session.identifier_type = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("display_name")
    value = None if param is None else param.get("value")
    session.display_name = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("device_type")
    value = None if param is None else param.get("value")
    session.device_type = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("location_country")
    value = None if param is None else param.get("value")
    session.location_country = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("location_region")
    value = None if param is None else param.get("value")
    session.location_region = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("calendar_event_id")
    value = None if param is None else param.get("value")
    session.calendar_event_id = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    param = get("organizer_email")
    value = None if param is None else param.get("value")
    session.organizer_email = (
        intern(value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )
    # Own to each session: not worth interning.
    param = get("ip_address")
    value = None if param is None else param.get("value")
    session.ip_address = (
        (value if value.isascii() else _repaired(value, repairs))
        if type(value) is str and value
        else None
    )


def _session_from_parameters(
    by_name: dict[Any, Any],
    event_id: str,
    leave_time: datetime,
    keep_extra: bool,
    share_strings: bool,
    repairs: TextRepairs,
) -> Session | str:
    """The session of one event's parameters, or the first rule it fails. The ids are stored
    here, refused when not valid Unicode; the descriptive texts by :func:`_set_texts`."""
    get: Callable[[Any], Any] = by_name.get
    intern = sys.intern if share_strings else str
    session: Any = _SessionBuilder()
    param = get("conference_id")
    value = None if param is None else param.get("value")
    if type(value) is not str or not value:
        return _NO_CONFERENCE
    if not value.isascii() and not _is_text(value):
        return _BAD_CONFERENCE
    session.conference_id = intern(value)
    param = get("meeting_code")
    value = None if param is None else param.get("value")
    if type(value) is str and value:
        if not value.isascii() and not _is_text(value):
            return _BAD_CODE
        code = canonical_meeting_code(value)
        session.meeting_code = intern(code) if code else None
    else:
        session.meeting_code = None
    param = get("identifier")
    value = None if param is None else param.get("value")
    if type(value) is str and value:
        if not value.isascii() and not _is_text(value):
            return _BAD_IDENTIFIER
        session.identifier = intern(value)
    else:
        session.identifier = None
    param = get("endpoint_id")
    value = None if param is None else param.get("value")
    if type(value) is str and value:
        if not value.isascii() and not _is_text(value):
            return _BAD_ENDPOINT
        session.endpoint_id = value  # own to each session: not worth interning
    else:
        session.endpoint_id = None
    _set_texts(session, get, intern, repairs)
    param = get("duration_seconds")
    raw = None if param is None else param.get("intValue")
    # ASCII digits, the API's own form, decoded here; anything else as decode_parameter says.
    if (
        type(raw) is str
        and len(raw) < 10
        and raw.isdigit()
        and raw.isascii()
        and "value" not in param
    ):
        duration: Any = int(raw)
    else:
        duration = None if param is None else decode_parameter(param)
    if type(duration) is not int:
        return _NO_DURATION
    if duration < 0:
        return _NEGATIVE_DURATION
    if duration > MAX_DURATION_SECONDS:
        return _LONG_DURATION
    join_time = leave_time - _SECOND * duration
    if join_time < _EARLIEST:
        return _EARLY_JOIN
    param = get("is_external")
    raw = None if param is None else param.get("boolValue")
    session.is_external = (raw is True or type(raw) is str) and decode_parameter(param) is True
    session.event_id = event_id
    session.join_time = join_time
    session.leave_time = leave_time
    session.duration_seconds = duration
    session.extra = _extra(by_name) if keep_extra else None
    session.__class__ = Session
    return session  # type: ignore[no-any-return]


def _extra(by_name: Mapping[Any, Any]) -> dict[str, ParamValue]:
    """The parameters no rule uses, decoded (kept only on request)."""
    return {
        name: decode_parameter(param)
        for name, param in by_name.items()
        if isinstance(name, str) and isinstance(param, dict) and name not in _KNOWN
    }


# ------------------------------------------------------------------------------
# Collecting


class SessionCollector:
    """Accumulates de-duplicated sessions from activities, one at a time (streaming).

    Holds only sessions (small, strings shared through a pool), never the raw activities.
    ``stored_form`` turns each session into what will be stored (a poll passes the privacy
    modes, ``functions.model.in_stored_form``) before duplicates are resolved: the copy kept of
    a duplicate never depends on a value the modes remove.
    """

    def __init__(self, *, stored_form: Callable[[Session], Session] | None = None) -> None:
        self._stored_form = stored_form
        self._sessions: dict[tuple[str, str], Session] = {}
        self.events_read = 0
        self.events_skipped = 0
        self.skip_reasons: dict[str, int] = {}
        self.items_ignored = 0
        self.repairs = TextRepairs()

    def add_activity(self, item: object) -> None:
        if not isinstance(item, dict):
            self.items_ignored += 1
            return
        sessions, reasons, events_seen = parse_activity(
            item, share_strings=True, repairs=self.repairs
        )
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
        if self._stored_form is not None:
            session = self._stored_form(session)
        key = dedupe_key(session)
        known = self._sessions.get(key)
        self._sessions[key] = session if known is None else preferred(known, session)

    @property
    def texts_repaired(self) -> int:
        """Descriptive texts repaired because they were not valid Unicode (docs/firestore.md)."""
        return self.repairs.count

    @property
    def events_used(self) -> int:
        """Distinct sessions: duplicates of one session count once."""
        return len(self._sessions)

    def sessions(self) -> list[Session]:
        return sorted(self._sessions.values(), key=session_order)

    def warnings(self) -> list[str]:
        warnings = [
            f"{count} event{'s' if count != 1 else ''} skipped: {reason}"
            for reason, count in sorted(self.skip_reasons.items())
        ]
        if self.items_ignored:
            warnings.append(f"{self.items_ignored} activity item(s) ignored: not a JSON object")
        if self.repairs.count:
            warnings.append(f"{self.repairs.count} descriptive text(s) repaired: not valid Unicode")
        return warnings
