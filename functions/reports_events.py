"""The Reports API's wire format → sessions: parameter decoding, ``call_ended`` events, and the
streaming collector that de-duplicates them (CONTRACT §1 "Session").

Activities come in as the plain dicts the API returns (int64 as strings and all); what comes out
is :class:`~functions.attendance.Session`. This runs for every event of a dump or a poll, so the
event decoder is written for speed (see :class:`_SessionBuilder`); the plain version of the same
rules is tests/unit/test_attendance_properties.py's reference, and the two are compared there.

Decisions the contract leaves open: ``event_id`` is ``<id.time as RFC 3339 UTC with
milliseconds>/<id.uniqueQualifier>``; an empty ``identifier`` counts as none.
"""

from __future__ import annotations

import operator
import sys
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from functions.attendance import ParamValue, Session, session_order
from functions.duplicates import dedupe_key, preferred
from functions.meeting_codes import canonical_meeting_code
from functions.timestamps import parse_timestamp_and_text

__all__ = [
    "SessionCollector",
    "decode_parameter",
    "decode_parameters",
    "parse_activity",
]

_SECOND: Final = timedelta(seconds=1)

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

#: The string parameters a session keeps (:func:`_set_strings`).
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
) -> Session | str:
    if not isinstance(id_block, dict):
        return "call_ended without id"
    parsed = parse_timestamp_and_text(id_block.get("time"))
    if parsed is None:
        return "call_ended with an unparseable or offset-less id.time"
    leave_time, time_text = parsed
    qualifier = id_block.get("uniqueQualifier")
    event_id = f"{time_text}/{'' if qualifier is None else qualifier}"

    params = event.get("parameters")
    if not isinstance(params, list):
        params = []
    # The parameters by name, built in C (a name given twice counts with its last value); entries
    # that are not {"name": ..., ...} mappings are dropped.
    try:
        by_name = dict(zip(map(_NAME, params), params, strict=True))
        return _session_from_parameters(by_name, event_id, leave_time, keep_extra, share_strings)
    except (TypeError, KeyError, AttributeError):  # not a dict, no name, an unhashable name
        well_formed = [p for p in params if isinstance(p, dict) and isinstance(p.get("name"), str)]
        by_name = {p["name"]: p for p in well_formed}
        return _session_from_parameters(by_name, event_id, leave_time, keep_extra, share_strings)


def _set_strings(session: Any, get: Callable[[str], Any], intern: Callable[[str], str]) -> bool:
    """Store the string parameters on ``session`` (None unless a non-empty string; repeated
    values interned); False when there is no ``conference_id``.

    Unrolled because it runs for every event of a dump: the same rules as a loop over
    ``_STRING_PARAMETERS`` with ``setattr`` made parsing 4 % slower (100,000 events). The plain
    version is the reference in tests/unit/test_attendance_properties.py.
    """
    param = get("conference_id")
    value = None if param is None else param.get("value")
    if type(value) is not str or not value:
        return False
    session.conference_id = intern(value)
    param = get("meeting_code")
    value = None if param is None else param.get("value")
    code = canonical_meeting_code(value) if type(value) is str and value else None
    session.meeting_code = intern(code) if code else None
    param = get("identifier")
    value = None if param is None else param.get("value")
    session.identifier = intern(value) if type(value) is str and value else None
    param = get("identifier_type")
    value = None if param is None else param.get("value")
    session.identifier_type = intern(value) if type(value) is str and value else None
    param = get("display_name")
    value = None if param is None else param.get("value")
    session.display_name = intern(value) if type(value) is str and value else None
    param = get("device_type")
    value = None if param is None else param.get("value")
    session.device_type = intern(value) if type(value) is str and value else None
    param = get("location_country")
    value = None if param is None else param.get("value")
    session.location_country = intern(value) if type(value) is str and value else None
    param = get("location_region")
    value = None if param is None else param.get("value")
    session.location_region = intern(value) if type(value) is str and value else None
    param = get("calendar_event_id")
    value = None if param is None else param.get("value")
    session.calendar_event_id = intern(value) if type(value) is str and value else None
    param = get("organizer_email")
    value = None if param is None else param.get("value")
    session.organizer_email = intern(value) if type(value) is str and value else None
    # Own to each session: not worth interning.
    param = get("endpoint_id")
    value = None if param is None else param.get("value")
    session.endpoint_id = value if type(value) is str and value else None
    param = get("ip_address")
    value = None if param is None else param.get("value")
    session.ip_address = value if type(value) is str and value else None
    return True


def _session_from_parameters(
    by_name: dict[Any, Any],
    event_id: str,
    leave_time: datetime,
    keep_extra: bool,
    share_strings: bool,
) -> Session | str:
    get = by_name.get
    session: Any = _SessionBuilder()
    if not _set_strings(session, get, sys.intern if share_strings else str):
        return "call_ended without conference_id"
    duration_param = get("duration_seconds")
    duration = None if duration_param is None else decode_parameter(duration_param)
    if type(duration) is not int:
        return "call_ended without an integer duration_seconds"
    if duration < 0:
        return "call_ended with a negative duration_seconds"
    external = get("is_external")
    session.event_id = event_id
    session.join_time = leave_time - _SECOND * duration
    session.leave_time = leave_time
    session.duration_seconds = duration
    session.is_external = external is not None and decode_parameter(external) is True
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
        return sorted(self._sessions.values(), key=session_order)

    def warnings(self) -> list[str]:
        warnings = [
            f"{count} event{'s' if count != 1 else ''} skipped: {reason}"
            for reason, count in sorted(self.skip_reasons.items())
        ]
        if self.items_ignored:
            warnings.append(f"{self.items_ignored} activity item(s) ignored: not a JSON object")
        return warnings
