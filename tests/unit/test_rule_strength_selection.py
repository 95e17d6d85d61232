"""Selection at its corners (docs/rules.md "Which sessions belong to a meeting").

- Windows that exactly touch do not overlap: there is no midpoint boundary, each meeting is
  credited up to its own window edge, and the instant they share is the boundary.
- Contradictory declarations (a later class declared to start before an earlier one) make the
  middle meeting's credited span empty, never open: it takes nothing, and no second is credited
  twice.
- A meeting's ``calendar_event_id`` and ``organizer_email`` come from the events, else from the
  declaration.
- A selection names its meeting and its clip; the Reports query of an open selection starts now.
"""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import timedelta

from functions.intervals import Span
from functions.limits import REPORTS_RETENTION
from functions.selection import (
    MeetingSpec,
    Partition,
    credited_spans,
    reports_query_start,
    select_meetings,
)
from tests.unit.factories import at, session

CODE = "abc-defg-hij"


def spec(
    meeting_id: str,
    started: float | None,
    ended: float,
    *,
    calendar_event_id: str | None = None,
    organizer_email: str | None = None,
) -> MeetingSpec:
    """A meeting declared from ``started`` to ``ended`` minutes after T0 (windows 15 min, 1 h)."""
    return MeetingSpec(
        meeting_id=meeting_id,
        meeting_code=CODE,
        started_at=None if started is None else at(started),
        ended_at=at(ended),
        calendar_event_id=calendar_event_id,
        organizer_email=organizer_email,
    )


def test_windows_that_exactly_touch_meet_at_the_shared_instant() -> None:
    # E's window is [-15, 120]; L's starts at 135 - 15 = 120: they touch, they do not overlap.
    early, late = spec("E", 0, 60), spec("L", 135, 195)
    assert early.window.end == late.window.start == at(120)
    assert credited_spans([early, late]) == {"E": Span(None, at(120)), "L": Span(at(120), None)}
    overtime = session(at(100), at(120), key="over@s.example")
    arrival = session(at(120), at(130), key="early@s.example", endpoint_id="ep-2")
    result = select_meetings([early, late], [overtime, arrival])
    assert result["E"].sessions == (overtime,)
    assert result["L"].sessions == (arrival,)
    assert result["E"].meeting.participants[0].attended_seconds == 20 * 60


def test_meetings_ending_together_are_ordered_by_their_start() -> None:
    # Windows of 0: a zero-length declaration at the end of a 30-minute class. Ordered by id
    # ("A" first), its window [30, 30] touched the class's [0, 30] only at 30, and the class was
    # credited from 30 on: nothing. Ordered by start, the class comes first and keeps its time.
    def zero(meeting_id: str, started: float, ended: float) -> MeetingSpec:
        return replace(spec(meeting_id, started, ended), window_before_s=0, window_after_s=0)

    blip, lesson = zero("A", 30, 30), zero("B", 0, 30)
    assert credited_spans([blip, lesson]) == {"B": Span(None, at(30)), "A": Span(at(30), None)}
    student = session(at(0), at(30), key="student@s.example")
    result = select_meetings([blip, lesson], [student])
    assert result["B"].meeting.participants[0].attended_seconds == 30 * 60
    assert result["A"].sessions == ()
    # Ending together with normal windows: the later start cuts at the midpoint of the other's
    # end and its start (10:00 and 9:30), whatever their ids.
    early, late = spec("Z", 0, 60), spec("Y", 30, 60)
    assert credited_spans([early, late]) == {"Z": Span(None, at(45)), "Y": Span(at(45), None)}


def test_contradictory_declarations_leave_the_middle_meeting_an_empty_span() -> None:
    # A ends at 60; B is declared 50 to 70; C, ending later, is declared to start at 20.
    # Boundary A|B = mid(60, 50) = 55; boundary B|C = mid(70, 20) = 45, before it.
    meetings = [spec("A", 0, 60), spec("B", 50, 70), spec("C", 20, 130)]
    spans = credited_spans(meetings)
    assert spans == {"A": Span(None, at(55)), "B": Span(at(55), at(55)), "C": Span(at(55), None)}
    partition = Partition(meetings)
    for join, leave in [(56, 58), (40, 70), (55, 55), (0, 200)]:
        assert "B" not in partition.takers(CODE, at(join), at(leave))
    stayer = session(at(0), at(200), key="stay@s.example")
    result = select_meetings(meetings, [stayer])
    assert result["B"].sessions == ()
    assert result["B"].meeting.total_attended_seconds == 0
    credited = [result[m].meeting.total_attended_seconds for m in ("A", "C")]
    assert credited == [55 * 60, (200 - 55) * 60]  # clipped to the credited spans
    for (a, span_a), (b, span_b) in itertools.combinations(spans.items(), 2):
        overlap = span_a.intersection(span_b)
        assert overlap.is_empty(), (a, b)


def test_calendar_event_and_organizer_fall_back_to_the_declaration() -> None:
    declared = spec("M", 0, 60, calendar_event_id="evt-42", organizer_email="t@s.example")
    plain = session(at(0), at(30))
    result = select_meetings([declared], [plain])["M"].meeting
    assert (result.calendar_event_id, result.organizer_email) == ("evt-42", "t@s.example")
    empty = select_meetings([declared], [])["M"].meeting
    assert (empty.calendar_event_id, empty.organizer_email) == ("evt-42", "t@s.example")
    from_events = replace(
        session(at(0), at(30)), calendar_event_id="evt-reports", organizer_email="o@s.example"
    )
    result = select_meetings([declared], [from_events])["M"].meeting
    assert (result.calendar_event_id, result.organizer_email) == ("evt-reports", "o@s.example")


def test_a_selection_names_its_meeting_window_and_clip() -> None:
    alone = select_meetings([spec("M", 0, 60)], [session(at(0), at(30))])["M"]
    assert (alone.meeting_id, alone.window, alone.clip) == ("M", Span(at(-15), at(120)), None)
    pair = select_meetings([spec("E", 0, 60), spec("L", 70, 130)], [])
    assert pair["E"].meeting_id == "E"
    assert pair["E"].clip == pair["E"].credited == Span(None, at(65))
    assert pair["L"].clip == pair["L"].credited == Span(at(65), None)


def test_the_query_of_an_open_selection_starts_now() -> None:
    now = at(600)
    assert reports_query_start(Span(None, None), now=now) == now
    assert reports_query_start(Span(None, at(60)), now=now) == now
    assert reports_query_start(Span(at(-15), None), now=now) == at(-15)
    old = now - REPORTS_RETENTION - timedelta(days=1)
    assert reports_query_start(Span(old, None), now=now) == now - REPORTS_RETENTION + timedelta(
        hours=1
    )
