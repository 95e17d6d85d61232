"""Tables for docs/rules.md "Which sessions belong to a meeting": windows, partition, clipping."""

from __future__ import annotations

import itertools
from datetime import timedelta

import pytest

from functions.attendance import Session
from functions.intervals import Span, attended_seconds
from functions.selection import MeetingSpec, credited_spans, reports_query_start, select_meetings
from tests.unit.factories import at, session

H = 60  # minutes per hour, for readable offsets


def spec(
    meeting_id: str,
    started: float | None,
    ended: float,
    *,
    code: str = "abc-defg-hij",
    merged: bool = False,
    before: int = 900,
    after: int = 3600,
) -> MeetingSpec:
    """A meeting declared from ``started`` to ``ended`` minutes after T0."""
    return MeetingSpec(
        meeting_id=meeting_id,
        meeting_code=code,
        started_at=None if started is None else at(started),
        ended_at=at(ended),
        merged=merged,
        window_before_s=before,
        window_after_s=after,
    )


def attended_by(selection_sessions: tuple[Session, ...], key: str) -> list[Session]:
    return [s for s in selection_sessions if s.identifier == key]


# --- windows -------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meeting", "window"),
    [
        (spec("m", 0, 60), Span(at(-15), at(120))),
        (spec("m", None, 60), Span(at(60 - 4 * H - 15), at(120))),
        (spec("m", 0, 60, before=0, after=0), Span(at(0), at(60))),
    ],
)
def test_window(meeting: MeetingSpec, window: Span) -> None:
    assert meeting.window == window


# --- the partition -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("meetings", "expected"),
    [
        pytest.param([spec("a", 0, 60)], {"a": Span(None, None)}, id="alone-open"),
        pytest.param(
            [spec("a", 0, 60), spec("b", 70, 130)],
            {"a": Span(None, at(65)), "b": Span(at(65), None)},
            id="overlapping-windows-midpoint",
        ),
        pytest.param(
            [spec("b", 70, 130), spec("a", 0, 60)],
            {"a": Span(None, at(65)), "b": Span(at(65), None)},
            id="input-order-irrelevant",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("b", None, 130)],
            {"a": Span(None, at(60)), "b": Span(at(60), None)},
            id="later-without-start-boundary-at-earlier-end",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("b", 60, 120), spec("c", 120, 180)],
            {"a": Span(None, at(60)), "b": Span(at(60), at(120)), "c": Span(at(120), None)},
            id="three-back-to-back",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("b", 10 * H, 11 * H)],
            {"a": Span(None, at(120)), "b": Span(at(10 * H - 15), None)},
            id="windows-apart-limited-by-own-window",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("m", 30, 90, merged=True), spec("b", 70, 130)],
            {"a": Span(None, at(65)), "b": Span(at(65), None)},
            id="merged-takes-no-part",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("x", 0, 60, code="xyz-wxyz-xyz")],
            {"a": Span(None, None), "x": Span(None, None)},
            id="other-codes-do-not-interact",
        ),
        pytest.param(
            [spec("b", 0, 60), spec("a", 0, 60)],
            {"a": Span(None, at(30)), "b": Span(at(30), None)},
            id="identical-times-tie-broken-by-meeting-id",
        ),
        pytest.param(
            [spec("a", 0, 60), spec("b", 20, 120), spec("c", 10, 121)],
            {"a": Span(None, at(40)), "b": Span(at(40), at(65)), "c": Span(at(65), None)},
            id="inconsistent-declarations-stay-ordered",
        ),
    ],
)
def test_credited_spans(meetings: list[MeetingSpec], expected: dict[str, Span]) -> None:
    assert credited_spans(meetings) == expected


def test_midpoint_is_floored_to_the_millisecond() -> None:
    spans = credited_spans([spec("a", 0, 60), spec("b", 60 + 1 / 60_000, 120)])
    assert spans["a"].end == at(60, seconds=0.0005) - timedelta(microseconds=500)


# --- which sessions belong -----------------------------------------------------------------------


def test_single_meeting_keeps_overtime_and_early_arrival_unclipped() -> None:
    early_and_late = session(at(-10), at(3 * H), key="t@s.example")
    outside = session(at(5 * H), at(6 * H), key="late@s.example", endpoint_id="x")
    (selection,) = select_meetings([spec("a", 0, 60)], [early_and_late, outside]).values()
    assert selection.sessions == (early_and_late,)
    (participant,) = selection.meeting.participants
    assert (participant.first_join, participant.last_leave) == (at(-10), at(3 * H))
    assert participant.attended_seconds == (3 * H + 10) * 60
    assert selection.clip is None


def test_session_ending_exactly_at_the_window_start_does_not_belong() -> None:
    before = session(at(-30), at(-15))
    (selection,) = select_meetings([spec("a", 0, 60)], [before]).values()
    assert selection.sessions == ()


def test_tutor_staying_across_two_classes_is_split_at_the_boundary() -> None:
    tutor = session(at(-5), at(125), key="tutor@s.example")
    meetings = [spec("a", 0, 60), spec("b", 70, 130)]
    result = select_meetings(meetings, [tutor])
    first, second = result["a"].meeting.participants[0], result["b"].meeting.participants[0]
    assert (first.first_join, first.last_leave) == (at(-5), at(65))
    assert (second.first_join, second.last_leave) == (at(65), at(125))
    assert first.attended_seconds + second.attended_seconds == attended_seconds(
        [(tutor.join_time, tutor.leave_time)]
    )
    # Each meeting lists the real session, with its real times.
    assert result["a"].sessions == result["b"].sessions == (tutor,)
    assert result["a"].meeting.actual_end == result["b"].meeting.actual_start == at(65)


def test_student_of_the_second_class_is_not_credited_to_the_first() -> None:
    student = session(at(68), at(130), key="s@s.example", endpoint_id="s")
    result = select_meetings([spec("a", 0, 60), spec("b", 70, 130)], [student])
    assert result["a"].sessions == ()
    assert result["b"].sessions == (student,)
    assert result["b"].meeting.participants[0].attended_seconds == 62 * 60


@pytest.mark.parametrize(
    ("join", "leave", "owners"),
    [
        (55, 65, {"a"}),  # ends exactly at the boundary: only the first
        (65, 75, {"b"}),  # starts exactly at the boundary: only the second
        (65, 65, {"b"}),  # zero length at the boundary: exactly one
        (64, 64, {"a"}),
        (64, 66, {"a", "b"}),
    ],
)
def test_exactly_touching_intervals_belong_once(
    join: float, leave: float, owners: set[str]
) -> None:
    item = session(at(join), at(leave))
    result = select_meetings([spec("a", 0, 60), spec("b", 70, 130)], [item])
    assert {meeting_id for meeting_id, r in result.items() if r.sessions} == owners


def test_three_back_to_back_classes_partition_a_whole_day_session() -> None:
    stayer = session(at(-15), at(200), key="stay@s.example")
    meetings = [spec("a", 0, 60), spec("b", 60, 120), spec("c", 120, 180)]
    result = select_meetings(meetings, [stayer])
    credits = [result[m].meeting.participants[0].attended_seconds for m in ("a", "b", "c")]
    assert credits == [75 * 60, 60 * 60, 80 * 60]
    assert sum(credits) == stayer.duration_seconds


def test_neighbours_with_windows_apart_credit_neither_the_gap() -> None:
    # Windows: a [-15, 120), b [585, 720). A session from 30 to 620 overlaps both.
    long_stay = session(at(30), at(620))
    result = select_meetings([spec("a", 0, 60), spec("b", 10 * H, 11 * H)], [long_stay])
    first, second = result["a"].meeting.participants[0], result["b"].meeting.participants[0]
    assert (first.first_join, first.last_leave) == (at(30), at(120))
    assert (second.first_join, second.last_leave) == (at(585), at(620))
    assert first.attended_seconds + second.attended_seconds <= long_stay.duration_seconds


def test_merged_meeting_gets_nothing_and_its_neighbours_share_time_as_if_absent() -> None:
    item = session(at(50), at(80))
    meetings = [spec("a", 0, 60), spec("m", 55, 75, merged=True), spec("b", 70, 130)]
    result = select_meetings(meetings, [item])
    assert "m" not in result
    assert result["a"].meeting.total_attended_seconds == 15 * 60
    assert result["b"].meeting.total_attended_seconds == 15 * 60


def test_class_that_dropped_and_restarted_is_one_meeting_with_two_conferences() -> None:
    first = session(at(0), at(25), conference_id="conf-1", endpoint_id="a")
    second = session(at(27), at(60), conference_id="conf-2", endpoint_id="b")
    (selection,) = select_meetings([spec("m", 0, 60)], [second, first]).values()
    meeting = selection.meeting
    assert meeting.conference_ids == ("conf-1", "conf-2")
    assert meeting.participant_count == 1
    assert meeting.total_attended_seconds == 58 * 60
    assert (meeting.actual_start, meeting.actual_end) == (at(0), at(60))


def test_sessions_of_other_codes_are_not_taken() -> None:
    other = session(at(0), at(60), meeting_code="xyz-wxyz-xyz")
    (selection,) = select_meetings([spec("m", 0, 60)], [other]).values()
    assert selection.sessions == ()
    assert selection.meeting.meeting_code == "abc-defg-hij"  # from the spec


def test_meeting_code_forms_match() -> None:
    item = session(at(0), at(60), meeting_code="abc-defg-hij")
    (selection,) = select_meetings([spec("m", 0, 60, code="ABCDEFGHIJ")], [item]).values()
    assert selection.sessions == (item,)


def test_reports_query_starts_at_the_selection_span_and_has_no_end() -> None:
    result = select_meetings([spec("a", 0, 60), spec("b", 70, 130)], [])
    later = at(24 * 60)
    assert reports_query_start(result["a"].selection_span, now=later) == at(-15)
    assert reports_query_start(result["b"].selection_span, now=later) == at(65)


def test_no_second_is_credited_twice_across_many_meetings() -> None:
    meetings = [spec(str(i), i * 50, i * 50 + 45) for i in range(6)]
    sessions = [
        session(at(start), at(start + length), endpoint_id=f"e{start}")
        for start, length in [(-20, 400), (10, 30), (90, 5), (140, 200), (260, 3)]
    ]
    result = select_meetings(meetings, sessions)
    spans = [result[str(i)].credited for i in range(6)]
    assert spans[0].start is None
    assert spans[-1].end is None
    for earlier, later in itertools.pairwise(spans):
        assert earlier.end is not None
        assert earlier.end == later.start
    credited = sum(r.meeting.total_attended_seconds for r in result.values())
    union = attended_seconds([(s.join_time, s.leave_time) for s in sessions])
    assert credited <= union + len(meetings)
