"""A Google Calendar event → what it declares (docs/rules.md "Declarations, sources and identity",
"Calendar changes"; §4.1). Pure: events are Google's ``Event`` JSON.

An event declares a meeting when it has a Meet conference
(``conferenceData.conferenceSolution.key.type == "hangoutsMeet"``, the code in
``conferenceData.conferenceId``), is not all-day, and ends at most 29 days ahead. Its identity is
``calendar:<calendarId>:<instance id>`` (single instances: a recurring event's instances have
ids of their own). A cancelled or deleted event (Google then guarantees only its ``id``), or one
that no longer qualifies, cancels the meeting it declared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final, Literal

from functions.meeting_codes import declared_meeting_code
from functions.model import Declared
from functions.participant_keys import declared_key
from functions.timestamps import parse_timestamp

__all__ = [
    "CALENDAR_HORIZON",
    "RSVPS",
    "EventAction",
    "calendar_external_id",
    "read_event",
]

#: Events ending further ahead are declared later, by the daily run (Cloud Tasks schedules at
#: most 30 days ahead; the first poll is after the end).
CALENDAR_HORIZON: Final = timedelta(days=29)
#: Calendar's ``responseStatus`` values, kept as the participant's ``rsvp``.
RSVPS: Final = frozenset({"accepted", "declined", "tentative", "needsAction"})
_MEET_SOLUTION: Final = "hangoutsMeet"

Why = Literal["cancelled", "no_meet", "all_day", "too_far", "unreadable"]


@dataclass(frozen=True, slots=True, kw_only=True)
class EventAction:
    """What one event says: ``declared`` when it declares a meeting, else ``why`` it does not
    (then a meeting it declared before is cancelled; ``too_far`` ones are picked up later)."""

    event_id: str
    external_id: str
    declared: Declared | None = None
    why: Why | None = None
    rsvps: Mapping[str, str] = field(default_factory=dict)


def calendar_external_id(calendar_id: str, event_id: str, code: str | None = None) -> str:
    """``calendar:<calendarId>:<instance id>``, and ``…:<new code>`` for an event whose Meet code
    changed after it was declared (docs/rules.md "Calendar changes")."""
    base = f"calendar:{calendar_id}:{event_id}"
    return base if code is None else f"{base}:{code}"


def read_event(event: Mapping[str, Any], *, calendar_id: str, now: datetime) -> EventAction | None:
    """The action of one event, None when it has no usable ``id``."""
    event_id = event.get("id")
    if not isinstance(event_id, str) or not event_id or len(event_id) > 1024:
        return None
    external_id = calendar_external_id(calendar_id, event_id)
    if event.get("status") == "cancelled":
        return EventAction(event_id=event_id, external_id=external_id, why="cancelled")
    code = _meet_code(event)
    if code is None:
        return EventAction(event_id=event_id, external_id=external_id, why="no_meet")
    start, end = _times(event.get("start")), _times(event.get("end"))
    if start is None or end is None or event.get("endTimeUnspecified") is True:
        all_day = _is_all_day(event)
        why: Why = "all_day" if all_day else "unreadable"
        return EventAction(event_id=event_id, external_id=external_id, why=why)
    if end > now + CALENDAR_HORIZON:
        return EventAction(event_id=event_id, external_id=external_id, why="too_far")
    if end <= start:
        return EventAction(event_id=event_id, external_id=external_id, why="unreadable")
    organizer = _email(event.get("organizer"))
    rsvps = _attendees(event, organizer)
    declared = Declared(
        meeting_code=code,
        started_at=start,
        ended_at=end,
        external_id=external_id,
        calendar_event_id=event_id,
        organizer_email=organizer,
        expected_participants=tuple(rsvps),
        rsvps=rsvps,
    )
    return EventAction(event_id=event_id, external_id=external_id, declared=declared, rsvps=rsvps)


def _meet_code(event: Mapping[str, Any]) -> str | None:
    data = event.get("conferenceData")
    if not isinstance(data, Mapping):
        return None
    solution = data.get("conferenceSolution")
    key = solution.get("key") if isinstance(solution, Mapping) else None
    kind = key.get("type") if isinstance(key, Mapping) else None
    conference_id = data.get("conferenceId")
    if kind != _MEET_SOLUTION or not isinstance(conference_id, str):
        return None
    try:
        return declared_meeting_code(conference_id)
    except ValueError:
        return None


def _times(value: Any) -> datetime | None:
    """``start``/``end`` with a ``dateTime`` (an offset or ``Z``); None for an all-day ``date``."""
    if not isinstance(value, Mapping):
        return None
    return parse_timestamp(value.get("dateTime"))


def _is_all_day(event: Mapping[str, Any]) -> bool:
    start = event.get("start")
    return isinstance(start, Mapping) and isinstance(start.get("date"), str)


def _email(value: Any) -> str | None:
    if not isinstance(value, Mapping) or not isinstance(value.get("email"), str):
        return None
    try:
        return declared_key(value["email"])
    except ValueError:
        return None


def _attendees(event: Mapping[str, Any], organizer: str | None) -> dict[str, str]:
    """The attendees that are people (no ``resource: true``), the organizer included, declined
    ones too, each with its answer (``needsAction`` when Calendar gives none)."""
    answers: dict[str, str] = {}
    attendees = event.get("attendees")
    for attendee in attendees if isinstance(attendees, list) else ():
        if not isinstance(attendee, Mapping) or attendee.get("resource") is True:
            continue
        key = _email(attendee)
        if key is None:
            continue
        status = attendee.get("responseStatus")
        answers[key] = status if isinstance(status, str) and status in RSVPS else "needsAction"
    if organizer is not None and organizer not in answers:
        answers[organizer] = "accepted"
    return answers
