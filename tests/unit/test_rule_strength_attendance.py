"""Orders of docs/firestore.md and §2 where two candidate orders disagree.

- ``summarize`` meetings are sorted by ``actual_start``, not by conference id;
- a participant's sessions are sorted by join time, then endpoint id (a session without one, as
  an empty id, first);
- "the latest non-empty value" is the latest by leave time, also when the sessions' join order
  says otherwise.
"""

from __future__ import annotations

from dataclasses import replace

from functions.attendance import build_meeting, build_participants, meetings_by_conference
from tests.unit.factories import at, session


def test_summarize_meetings_are_sorted_by_actual_start_not_by_conference_id() -> None:
    later = session(at(60), at(90), conference_id="conf-A", endpoint_id="ep-1")
    earlier = session(at(0), at(30), conference_id="conf-B", endpoint_id="ep-2", qualifier="2")
    meetings = meetings_by_conference([later, earlier])
    assert [m.conference_ids for m in meetings] == [("conf-B",), ("conf-A",)]
    assert [m.actual_start for m in meetings] == [at(0), at(60)]


def test_sessions_with_one_join_time_are_sorted_by_endpoint_none_first() -> None:
    sessions = [
        session(at(0), at(10), endpoint_id="ep-2", qualifier="1"),
        session(at(0), at(20), endpoint_id="A-1", qualifier="2"),
        replace(session(at(0), at(30), qualifier="3"), endpoint_id=None),
        session(at(0), at(40), endpoint_id="ep-1", qualifier="4"),
    ]
    (participant,) = build_participants(sessions)
    assert [s.endpoint_id for s in participant.sessions] == [None, "A-1", "ep-1", "ep-2"]


def test_the_latest_value_is_the_latest_by_leave_time_when_join_order_differs() -> None:
    # The long session joined first and left last; the short one joined later and left earlier.
    long = replace(
        session(at(0), at(60), endpoint_id="ep-1", display_name="Ann Long", qualifier="1"),
        calendar_event_id="event-long",
        organizer_email="long@school.example",
    )
    short = replace(
        session(at(10), at(20), endpoint_id="ep-2", display_name="Ann Short", qualifier="2"),
        calendar_event_id="event-short",
        organizer_email="short@school.example",
    )
    for order in ([long, short], [short, long]):
        (participant,) = build_participants(order)
        assert participant.display_name == "Ann Long"
        meeting = build_meeting(order)
        assert meeting.calendar_event_id == "event-long"
        assert meeting.organizer_email == "long@school.example"
