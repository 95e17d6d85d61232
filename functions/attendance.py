"""The attendance rules of docs/firestore.md: sessions → participants → meetings, and their JSON.

Pure: no I/O, no settings, no Google type. Sessions come from ``functions.reports_events`` (the
Reports wire decoder); the rules they are grouped and summed by live here and in the modules named
for them: ``participant_keys``, ``duplicates``, ``intervals``.

Decisions the contract leaves open (the README repeats them):

- ``identifier``, ``identifier_type``, ``display_name``: the latest non-empty value by leave time.
  ``calendar_event_id`` and ``organizer_email`` of a meeting: likewise, over all of its sessions.
- ``attended_seconds`` rounds the union's milliseconds half up (``1.5 s → 2 s``).
"""

from __future__ import annotations

import operator
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, TypeAlias

from functions.intervals import Span, attended_seconds, clipped, round_ms_to_seconds
from functions.participant_keys import session_key
from functions.timestamps import EPOCH, format_optional, format_timestamp, to_ms

__all__ = [
    "Meeting",
    "ParamValue",
    "Participant",
    "Session",
    "build_meeting",
    "build_participants",
    "meeting_fields_to_json",
    "meeting_to_json",
    "meetings_by_conference",
    "participant_to_json",
    "session_order",
    "session_to_json",
]

ParamValue: TypeAlias = (
    "str | int | bool | tuple[str, ...] | tuple[int, ...] | dict[str, ParamValue]"
    " | tuple[dict[str, ParamValue], ...] | None"
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Session:
    """One endpoint's stay in one conference, from one ``call_ended`` event (docs/firestore.md)."""

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
    def leave_ms(self) -> int:
        """The leave time in milliseconds (what the duplicate preference compares)."""
        return to_ms(self.leave_time)


@dataclass(frozen=True, slots=True, kw_only=True)
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


@dataclass(frozen=True, slots=True, kw_only=True)
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


def session_order(session: Session) -> tuple[datetime, str, str]:
    """§1's order of a participant's sessions: by join time, then endpoint id."""
    return (session.join_time, session.endpoint_id or "", session.event_id)


def _latest_non_empty(ordered: Sequence[Session], attribute: str) -> str | None:
    for session in reversed(ordered):
        value = getattr(session, attribute)
        if value:
            return str(value)
    return None


_MS: Final = timedelta(milliseconds=1)
_LEAVE_ORDER: Final = operator.attrgetter("leave_time", "event_id")
_IS_EXTERNAL: Final = operator.attrgetter("is_external")
_DURATION: Final = operator.attrgetter("duration_seconds")
_PARTICIPANT_ORDER: Final = operator.attrgetter("first_join", "participant_key")
_START: Final = operator.itemgetter(0)
_END: Final = operator.itemgetter(1)


def _intervals(sessions: Iterable[Session], clip: Span | None) -> list[tuple[datetime, datetime]]:
    return clipped(((s.join_time, s.leave_time) for s in sessions), clip)


def _participant(
    key: str, email_rule: bool, sessions: Sequence[Session], clip: Span | None
) -> Participant:
    """The participant rules of docs/firestore.md over any number of sessions."""
    by_leave = sorted(sessions, key=_LEAVE_ORDER)
    intervals = _intervals(sessions, clip)
    return Participant(
        participant_key=key,
        email=key if email_rule else None,
        identifier=_latest_non_empty(by_leave, "identifier"),
        identifier_type=_latest_non_empty(by_leave, "identifier_type"),
        display_name=_latest_non_empty(by_leave, "display_name"),
        is_external=any(map(_IS_EXTERNAL, sessions)),
        first_join=min(map(_START, intervals)),
        last_leave=max(map(_END, intervals)),
        session_count=len(sessions),
        total_session_seconds=sum(map(_DURATION, sessions)),
        attended_seconds=attended_seconds(intervals),
        sessions=tuple(sorted(sessions, key=session_order)),
    )


class _ParticipantBuilder:
    """The slot layout of :class:`Participant` without its frozen ``__setattr__``: filled with
    plain attribute stores, then turned into a ``Participant`` (``__class__`` assignment: same
    slots, same memory layout). The generated ``__init__`` sets each field through
    ``object.__setattr__``, several times slower, and this runs for most participants of a dump."""

    __slots__ = Participant.__slots__


def _one_session_participant(
    key: str, email_rule: bool, session: Session, clip: Span | None
) -> Participant:
    """``_participant`` for one session (most participants of a large dump have one): the same
    rules with their one-element sorts, unions and sums written out. The equality is checked over
    generated sessions and clips in tests/unit/test_attendance_properties.py."""
    if clip is None:
        join, leave = session.join_time, session.leave_time
    else:
        ((join, leave),) = _intervals((session,), clip)
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


def build_participants(
    sessions: Iterable[Session], *, clip: Span | None = None
) -> list[Participant]:
    """Group sessions by participant key; with ``clip``, times and attendance count only
    inside it (each session still keeps its real join and leave). Sorted by first join, then key."""
    groups: dict[tuple[str, bool], list[Session]] = {}
    for session in sessions:
        groups.setdefault(session_key(session), []).append(session)
    participants = [
        _one_session_participant(key, email_rule, group[0], clip)
        if len(group) == 1
        else _participant(key, email_rule, group, clip)
        for (key, email_rule), group in groups.items()
    ]
    participants.sort(key=_PARTICIPANT_ORDER)
    return participants


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
# JSON (docs/firestore.md and §2)


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
        "actual_start": format_optional(meeting.actual_start),
        "actual_end": format_optional(meeting.actual_end),
        "participant_count": meeting.participant_count,
        "total_attended_seconds": meeting.total_attended_seconds,
    }


def meeting_to_json(meeting: Meeting) -> dict[str, Any]:
    rendered = meeting_fields_to_json(meeting)
    rendered["participants"] = [participant_to_json(p) for p in meeting.participants]
    return rendered
